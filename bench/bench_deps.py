"""Bench-only tools, installed on first use and never runtime dependencies of the package.

``ensure_python("clarity", "pyclarity==0.9.0", no_deps=True)`` imports a module, installing it into the running
interpreter with pip when it is missing (``no_deps`` for packages whose declared dependencies are far heavier
than the part the bench imports). ``ensure_debian("ffmpeg", "lsp-plugins-lv2")`` installs Debian packages with
apt-get when ``dpkg`` does not list them (as root; otherwise it says which command to run).
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from types import ModuleType


def ensure_python(module: str, requirement: str, *, no_deps: bool = False) -> ModuleType:
    """Import ``module``; on ImportError pip-install ``requirement`` (``--no-deps`` when asked) and retry."""
    try:
        return importlib.import_module(module)
    except ImportError:
        pass
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    command += ["--no-deps"] if no_deps else []
    print(f"bench set-up: pip install {'--no-deps ' if no_deps else ''}{requirement}", file=sys.stderr)
    subprocess.run([*command, requirement], check=True)
    importlib.invalidate_caches()
    return importlib.import_module(module)


def _installed(package: str) -> bool:
    done = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True)
    return done.returncode == 0 and "install ok installed" in done.stdout


def ensure_debian(*packages: str) -> None:
    """Install the Debian ``packages`` that are missing (apt-get, as root), or exit naming the command."""
    if shutil.which("dpkg-query") is None:
        raise SystemExit(f"this bench needs the Debian packages {' '.join(packages)} (no dpkg on this machine)")
    missing = [p for p in packages if not _installed(p)]
    if not missing:
        return
    if os.geteuid() != 0:
        raise SystemExit(f"this bench needs: sudo apt-get install {' '.join(missing)}")
    print(f"bench set-up: apt-get install {' '.join(missing)}", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "install", "-y", "-q", *missing], check=True, env=env, stdout=subprocess.DEVNULL)
