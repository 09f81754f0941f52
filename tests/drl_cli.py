"""Runs ``python -m drl`` in a fresh interpreter for the CLI tests."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_drl(*args):
    """``python -m drl ARGS`` from the repository root: the CompletedProcess with text stdout and stderr."""
    return subprocess.run(
        [sys.executable, "-m", "drl", *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
