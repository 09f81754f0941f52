"""Scale: N tracks tuned per track in ONE job (one batch, parameters of shape (B,)) against N separate jobs.

`python bench/scale_bench.py [--tracks 8] [--seconds 30] [--steps 20] [hydra overrides]` synthesises N
demo-like tracks (the demo generator with different seeds and levels, so each needs its own gain), then times,
in one run, `python train.py data=folder data.dir=<them>` (per_track mode) and N runs of
`python train.py data=file data.path=<track>`, each a fresh process as a user would start them, with the same
steps, crops and baseline grid, and prints both wall times and their ratio. Overrides go to every run
(`trainer=gpu` to measure on a CUDA GPU). Results go to a temporary folder, deleted afterwards.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_tracks(folder: Path, count: int, seconds: float, rate: int = 44100) -> list[Path]:
    import soundfile as sf

    from tuning.audio import demo_track

    paths = []
    for index in range(count):
        audio = demo_track(rate, seconds, seed=index).audio * (0.4 + 0.6 * index / max(count - 1, 1))
        path = folder / f"track{index}.wav"
        sf.write(str(path), audio.T.numpy(), rate, subtype="FLOAT")
        paths.append(path)
    return paths


def timed(args: list[str]) -> float:
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "train.py", *args], cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"train.py {' '.join(args)} failed:\n{result.stderr[-2000:]}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracks", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--steps", type=int, default=20, help="training steps of every job")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every run (e.g. trainer=gpu)")
    args = parser.parse_args()
    common = [
        f"trainer.max_steps={args.steps}",
        f"data.batches_per_epoch={args.steps}",
        "logger=csv",
        "~callbacks.media",
        "baseline.release_ms=[1.0,10.0]",
        "baseline.lookahead_ms=[5.0]",
        *args.overrides,
    ]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "tracks").mkdir()
        paths = make_tracks(tmp / "tracks", args.tracks, args.seconds)
        print(
            f"{args.tracks} tracks of {args.seconds:g} s stereo 44.1 kHz, {args.steps} steps per job, "
            f"overrides: {' '.join(args.overrides) or '-'}"
        )
        batched = timed(["data=folder", f"data.dir={tmp / 'tracks'}", *common, f"hydra.run.dir={tmp / 'batch'}"])
        print(f"per-track batch, one job : {batched:8.1f} s")
        separate = sum(
            timed(["data=file", f"data.path={path}", *common, f"hydra.run.dir={tmp / path.stem}"]) for path in paths
        )
        print(f"{args.tracks} separate jobs        : {separate:8.1f} s")
        print(f"ratio separate / batched : {separate / batched:8.2f}x")


if __name__ == "__main__":
    main()
