"""Population search against one start, side by side: what P candidates gain and what they cost.

    python bench/population_bench.py [--tracks drascula5,wz-original1,hr-desert] [--lufs -9] [--sizes 8 16]
        [--haaqi] [overrides ...]

On each track (the perceptual study's 30 s inputs, fetched at run time into the git-ignored bench/_study/) the
default job (`python train.py data=file data.path=...`, one start) and the same job with
`search=population search.size=P` for each P, each a fresh process as a user would start it, timed wall clock.
Prints the objective on target (the NMR with the default loss), plain DRL, on-target, seconds and the ratio of
seconds to the one-start run; with --haaqi also HAAQI (bench/haaqi.py) of both outputs. Runs go to
bench/_study/population/<track>/<run>/ (removed first).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import perceptual_study  # noqa: E402

RUNS = perceptual_study.STUDY / "population"


def tune(path: Path, run_dir: Path, overrides: list[str]) -> tuple[dict, float]:
    """One train.py process on ``path``: its metrics.json and its wall-clock seconds."""
    shutil.rmtree(run_dir, ignore_errors=True)
    command = [
        sys.executable,
        "train.py",
        "data=file",
        f"data.path={path}",
        f"hydra.run.dir={run_dir}",
        "subsonic.mode=off",
        "logger=csv",
        "~callbacks.media",
        *overrides,
    ]
    began = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"train.py {' '.join(overrides)} failed on {path}:\n{done.stderr[-2000:]}")
    return json.loads((run_dir / "metrics.json").read_text()), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracks", default="drascula5,wz-original1,hr-desert")
    parser.add_argument("--lufs", type=float, default=-9.0)
    parser.add_argument("--sizes", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--haaqi", action="store_true", help="score the outputs with HAAQI too")
    args, overrides = parser.parse_known_args()
    labels = [t for t in args.tracks.split(",") if t]
    unknown = [t for t in labels if t not in perceptual_study.TRACKS]
    if unknown:
        parser.exit(2, f"unknown track(s) {', '.join(unknown)}; choose from {', '.join(perceptual_study.TRACKS)}\n")
    if args.haaqi:
        import haaqi

    print(f"target {args.lufs:g} LUFS; objective and DRL in dB at the target (lower is better)")
    print(
        f"{'track':<16}{'search':<12}{'objective':>10}{'DRL':>8}{'HAAQI':>7}{'on target':>10}{'seconds':>9}"
        f"{'x one start':>12}"
    )
    for label in labels:
        path = perceptual_study.excerpt_path(label)
        runs = [("one start", [])] + [(f"P = {p}", ["search=population", f"search.size={p}"]) for p in args.sizes]
        single_s = None
        for name, extra in runs:
            run_dir = RUNS / label / name.replace(" ", "").replace("=", "")
            metrics, seconds = tune(path, run_dir, [f"target.lufs={args.lufs}", *extra, *overrides])
            single_s = single_s or seconds
            score = "-"
            if args.haaqi:
                reference = perceptual_study.read(path)
                output = perceptual_study.read(run_dir / "processed" / f"{path.stem}.wav")
                score = f"{haaqi.score(reference, output, perceptual_study.RATE):.3f}"
            out = metrics["output"]
            print(
                f"{label:<16}{name:<12}{out['objective_drl_db']:10.2f}{out['drl_db']:8.2f}{score:>7}"
                f"{str(metrics['on_target']):>10}{seconds:9.1f}{seconds / single_s:11.1f}x",
                flush=True,
            )


if __name__ == "__main__":
    main()
