"""What a running job says: one plain line per stage as it starts and as it ends, with the time taken.

Lines go to standard output and the run's record (:func:`tuning.console.say`), prefixed with the seconds since
the job started, in the words of the job (reading the input, the baseline search, tuning, the final solve, the
files written), not epochs and losses.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from tuning.console import say


class Progress:
    """Prints ``[  12.3 s] message`` lines; :meth:`stage` brackets a stage with a start and an end line."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.start = time.perf_counter()

    def say(self, message: str) -> None:
        if self.enabled:
            say(f"[{time.perf_counter() - self.start:6.1f} s] {message}")

    @contextmanager
    def stage(self, what: str) -> Iterator[dict]:
        """``with progress.stage("final solve") as end: ... end["result"] = "-14.00 LUFS"``: says ``what ...``,
        then ``what: done in 1.2 s (-14.00 LUFS)``, or that it failed."""
        self.say(f"{what} ...")
        clock, end = time.perf_counter(), {}
        try:
            yield end
        except BaseException:
            self.say(f"{what}: stopped after {time.perf_counter() - clock:.1f} s")
            raise
        result = end.get("result")
        self.say(f"{what}: done in {time.perf_counter() - clock:.1f} s" + (f" ({result})" if result else ""))


#: A job without a caller's Progress says nothing.
SILENT = Progress(enabled=False)
