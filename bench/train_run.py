"""One `python train.py ...` as a child process, measured: wall clock, peak resident memory, peak CUDA memory.

``train(overrides, run_dir)`` runs the job with ``hydra.run.dir=run_dir``, its output into ``run_dir``.log, and
returns a :class:`TrainRun`. The peak resident memory is the child's own (``os.wait4``), so that runs one after
another each report theirs; the peak CUDA memory is ``torch.cuda.max_memory_allocated()`` read inside the child
as it exits (None when the job never used CUDA). While it runs, the child's resident memory is sampled every
50 ms and charged to the progress line it last printed (``TrainRun.stage_peaks``), so that a memory peak can be
traced to a stage. Used by bench/gpu_bench.py and bench/long_mix_bench.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARK = "train_run: peak CUDA bytes "
PROGRESS = re.compile(r"\[ *\d+\.\d s\] ([^\r\n\x1b]*)")  # a progress line: "[  12.3 s] what it does ..."
# train.py's own entry point, with the peak CUDA memory printed on the way out (exit code 2 included).
CHILD = f"""
import atexit, runpy, sys, torch

def peak():
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        print("{MARK}" + str(torch.cuda.max_memory_allocated()), flush=True)

atexit.register(peak)
sys.argv = ["train.py", *sys.argv[1:]]
runpy.run_path("train.py", run_name="__main__")
"""


@dataclass
class TrainRun:
    """What one job cost and left: exit code, seconds, peak bytes (resident; CUDA or None), log, metrics, and
    the peak resident bytes sampled after each progress line (``(line, bytes)`` in order; "start-up" first)."""

    returncode: int
    wall_s: float
    max_rss_bytes: int
    cuda_peak_bytes: int | None
    log: Path
    metrics: dict | None
    stage_peaks: list[tuple[str, int]]

    def tail(self, lines: int = 15) -> str:
        """The last ``lines`` lines of the job's output."""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stages(self) -> list[str]:
        """The job's progress lines ("[  12.3 s] what it does ...": one per stage as it starts and ends)."""
        text = self.log.read_text(errors="replace")
        return [match.group(0).rstrip() for match in PROGRESS.finditer(text)]

    def job_s(self) -> float | None:
        """The job's own seconds after start-up (metrics.json's timing_s summed), None without metrics."""
        timing = (self.metrics or {}).get("timing_s")
        return sum(timing.values()) if timing else None


def train(overrides: list[str], run_dir: Path, timeout_s: float | None = None) -> TrainRun:
    """Run train.py with ``overrides`` into ``run_dir`` (a fresh folder); kill it after ``timeout_s`` seconds
    (then the return code is negative)."""
    run_dir = Path(run_dir)
    log = run_dir.with_name(run_dir.name + ".log")
    command = [sys.executable, "-c", CHILD, *overrides, f"hydra.run.dir={run_dir}"]
    stage_peaks: list[list] = [["start-up", 0]]
    with open(log, "w") as out, open(log, errors="replace") as progress:
        began = time.perf_counter()
        child = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        pending = ""  # the log's last, unfinished line
        while True:
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            if timeout_s is not None and time.perf_counter() - began > timeout_s:
                child.kill()
                _, status, usage = os.wait4(child.pid, 0)
                break
            pending += progress.read()
            *lines, pending = pending.split("\n")
            stage_peaks += [[m.group(1).rstrip(), 0] for line in lines if (m := PROGRESS.search(line))]
            stage_peaks[-1][1] = max(stage_peaks[-1][1], resident_bytes(child.pid))
            time.sleep(0.05)
        wall_s = time.perf_counter() - began
    child.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    cuda_peak = None
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith(MARK):
            cuda_peak = int(line[len(MARK) :])
    metrics_path = run_dir / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else None
    peaks = [(stage, peak) for stage, peak in stage_peaks]
    return TrainRun(child.returncode, wall_s, usage.ru_maxrss * 1024, cuda_peak, log, metrics, peaks)


def resident_bytes(pid: int) -> int:
    """The resident memory of process ``pid`` now (VmRSS of /proc/<pid>/status), 0 where it cannot be read."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0
