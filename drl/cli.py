"""Command-line conventions shared by `python -m drl` and `python -m tuning.report`: bad input is one line on
stderr, ``<program>: error: <what is wrong>``, and exit code 2."""

from __future__ import annotations

import argparse
import sys


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line and exit code 2."""

    def error(self, message: str) -> None:
        self.exit(2, f"{self.prog}: error: {message}\n")


def fail(prog: str, error: BaseException) -> int:
    """Print ``error`` as one line on stderr under ``prog``; return exit code 2."""
    print(f"{prog}: error: " + " ".join(str(error).split()), file=sys.stderr)
    return 2
