"""Whole jobs, wall clock from the command to the files, against an earlier commit in the same run.

    ./dev bench job_bench.py [--against REV] [--cases 3min gain loud 3min-odd gain-odd] [--repeats 1]

Cases, on real music (bench/music.py fetches it; 44.1 kHz stereo excerpts of the loudest part):
- ``3min``: `python train.py data=file data.path=<3-minute track>` (the streaming target); goal <= 30 s.
- ``gain``: the same track to a target it meets with a gain alone (3 dB quieter than it is, its ceiling 0.5 dB
  above its true peak after that gain); goal <= 5 s.
- ``loud``: `experiment=loud_master` on a 60 s track; goal <= 120 s.
- ``3min-odd``, ``gain-odd``: ``3min`` and ``gain`` on the same track cut a few samples short, to a length
  with a prime factor above 100 000 as most real files have (a round 180 s is 2^4 3^4 5^3 7^2 samples): an FFT
  of such a length costs several times one of a round length unless it is padded.

Each case runs on this working tree and on ``--against`` (default: the commit before this bench's changes,
checked out into a temporary worktree), alternating, each in a fresh process with its own run folder. Printed:
wall clock, the objective and the target check from metrics.json, and the ratio earlier / now.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from music import excerpt, fetch  # noqa: E402

import drl  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
GOALS_S = {"3min": 30.0, "gain": 5.0, "loud": 120.0, "3min-odd": 30.0, "gain-odd": 5.0}


def largest_prime_factor(n: int) -> int:
    factor, largest = 2, 1
    while factor * factor <= n:
        while n % factor == 0:
            n, largest = n // factor, factor
        factor += 1
    return max(largest, n)


def odd_length(path: Path) -> Path:
    """``path`` cut to the longest length whose largest prime factor exceeds 100 000 (a few samples shorter)."""
    out = path.with_name(f"{path.stem}_odd.wav")
    if not out.exists():
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
        length = audio.shape[0]
        while largest_prime_factor(length) <= 100_000:
            length -= 1
        sf.write(str(out), audio[:length], rate, subtype="FLOAT")
    return out


def cases(selected: list[str]) -> dict[str, list[str]]:
    tracks = fetch()
    out = {}
    if {"3min", "gain", "3min-odd", "gain-odd"} & set(selected):
        long = excerpt(tracks[0], 180.0)
        odd = odd_length(long)
        if "3min" in selected:
            out["3min"] = ["data=file", f"data.path={long}"]
        if "3min-odd" in selected:
            out["3min-odd"] = ["data=file", f"data.path={odd}"]
        if {"gain", "gain-odd"} & set(selected):
            audio, rate = sf.read(str(long), dtype="float32", always_2d=True)
            audio = torch.from_numpy(audio.T.copy())
            lufs = float(drl.integrated_loudness(audio, rate))
            peak = float(drl.true_peak(audio, rate).amax())
            ceiling = min(0.0, round(peak - 3.0 + 0.5, 2))
            target = [f"target.lufs={lufs - 3.0:.3f}", f"target.ceiling_dbtp={ceiling}"]
            for case, path in (("gain", long), ("gain-odd", odd)):
                if case in selected:
                    out[case] = ["data=file", f"data.path={path}", *target]
    if "loud" in selected:
        out["loud"] = ["data=file", f"data.path={excerpt(tracks[1], 60.0)}", "experiment=loud_master"]
    return out


def worktree(rev: str) -> Path:
    path = Path(tempfile.gettempdir()) / f"job_bench_{rev}"
    if not path.exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(path), rev], cwd=ROOT, check=True)
    return path


def run(tree: Path, overrides: list[str], run_dir: Path) -> tuple[float, dict]:
    command = [sys.executable, "train.py", *overrides, f"hydra.run.dir={run_dir}"]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=tree, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{tree}: {' '.join(command)}\n{done.stderr[-2000:]}")
    return wall, json.loads((run_dir / "metrics.json").read_text())


def describe(metrics: dict) -> str:
    out = metrics["output"]
    return (
        f"objective {out['objective_drl_db']:7.2f} dB, {out['integrated_lufs']:6.2f} LUFS, "
        f"{out['true_peak_dbtp']:5.2f} dBTP, on target {metrics['on_target']}, selected {metrics['selected']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", default=None, help="git revision to compare with (omit: this tree only)")
    parser.add_argument("--cases", nargs="+", default=["3min", "gain", "loud"], choices=sorted(GOALS_S))
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    trees = {"now": ROOT}
    if args.against:
        trees[args.against] = worktree(args.against)
    runs = Path(tempfile.mkdtemp(prefix="job_bench_runs_"))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; run folders under {runs}")
    for case, overrides in cases(args.cases).items():
        walls: dict[str, list[float]] = {name: [] for name in trees}
        for repeat in range(args.repeats):
            for name, tree in trees.items():
                wall, metrics = run(tree, overrides, runs / f"{case}_{name}_{repeat}")
                walls[name].append(wall)
                print(f"{case:8s} {name:>10s}: {wall:7.1f} s  {describe(metrics)}", flush=True)
        best = {name: min(w) for name, w in walls.items()}
        line = f"{case:8s} best of {args.repeats}: now {best['now']:.1f} s (goal {GOALS_S[case]:.0f} s)"
        if args.against:
            line += f"; {args.against} {best[args.against]:.1f} s; {best[args.against] / best['now']:.2f}x faster"
        print(line, flush=True)


if __name__ == "__main__":
    main()
