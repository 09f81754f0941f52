"""`./dev`: what each command installs (one stamp per extras set) and train's paths from the caller's folder.

The venv here is a stand-in: its `python` runs this interpreter and records, instead of running, any
`-m pip` call, so nothing is installed anywhere.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def venv(tmp_path):
    """A stand-in venv: (its folder, the file its pip calls are written to)."""
    folder, calls = tmp_path / "venv", tmp_path / "pip-calls"
    (folder / "bin").mkdir(parents=True)
    python = folder / "bin" / "python"
    python.write_text(
        "#!/usr/bin/env bash\n"
        f'if [ "${{1:-}} ${{2:-}}" = "-m pip" ]; then echo "$*" >> "{calls}"; exit 97; fi\n'
        f'exec "{sys.executable}" "$@"\n'
    )
    python.chmod(0o755)
    return folder, calls


def checksum() -> str:
    return subprocess.run(["cksum", "pyproject.toml"], cwd=ROOT, capture_output=True, text=True).stdout.split()[0]


def dev(venv_dir: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DRL_VENV": str(venv_dir)}
    env.pop("DRL_CALLER_DIR", None)
    return subprocess.run([str(ROOT / "dev"), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_each_command_installs_its_extras_once(venv, tmp_path):
    folder, calls = venv
    for command, extras in (("train", ".\n"), ("test", ".[dev]\n"), ("bench", ".[bench]\n")):
        result = dev(folder, tmp_path, command, "x.py")
        assert result.returncode == 97, result.stderr  # the stand-in pip refused
        assert calls.read_text().endswith(f"--no-compile -e {extras}"), calls.read_text()
    sum_ = checksum()
    (folder / f".installed-{sum_}-dev").touch()
    (folder / f".installed-{sum_}-base").touch()
    (folder / ".installed-123-base").touch()  # an older pyproject.toml's: removed at the next install
    calls.unlink()
    result = dev(folder, tmp_path, "python", "-c", "print('ran')")  # runtime only: installed with dev
    assert result.returncode == 0 and result.stdout == "ran\n" and not calls.exists()
    assert dev(folder, tmp_path, "bench", "x.py").returncode == 97 and "[bench]" in calls.read_text()
    assert not (folder / ".installed-123-base").exists()
    assert (folder / f".installed-{sum_}-dev").exists()


def test_train_takes_relative_paths_from_the_callers_folder(venv, tmp_path):
    folder, _ = venv
    (folder / f".installed-{checksum()}-base").touch()
    music = tmp_path / "my music"
    music.mkdir()
    (music / "song.wav").write_text("not audio")
    result = dev(folder, music, "train", "data.path=song.wav")
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith(f"error: cannot read audio file {music / 'song.wav'}: ")
    result = dev(folder, music, "train", "data.path=missing.flac")
    assert result.returncode == 2 and result.stderr.strip() == f"error: audio file not found: {music / 'missing.flac'}"
