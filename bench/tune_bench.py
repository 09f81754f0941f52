"""Speed of a tuning job: the default chain on a 3-minute stereo 44.1 kHz track to the streaming target.

`python bench/tune_bench.py [hydra overrides]` (e.g. `trainer=gpu`) runs train.py on a 3-minute excerpt of
real music (bench/music.py fetches it; `--demo` uses the demo track at 180 s instead) and prints the fit's
wall time and steps against the 60 s goal. Side by side, one training step of the project's chain
(gain -> compressor -> saturator -> limiter, forward + backward, with the objective) is timed against the
anchor, torchcomp 0.2.1's compressor + limiter forward + backward on the same crops.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

GOAL_S = 60.0


def best_of(fn, repeats: int = 3) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def step_ratio(rate: int = 44100, crops: int = 4, crop_s: float = 2.0) -> None:
    from processors import Chain, Compressor, Gain, Limiter, Saturator
    from tuning.objective import LossWeights, Objective, Target

    gen = torch.Generator().manual_seed(0)
    x = 0.3 * torch.randn(crops, 2, int(crop_s * rate), generator=gen)
    chain = Chain(
        {
            "gain": Gain(rate, gain_db=6.0),
            "compressor": Compressor(rate, threshold_db=-12.0, ratio=2.0),
            "saturator": Saturator(rate, drive_db=0.0, mix=0.3, unity_gain=True),
            "limiter": Limiter(rate, ceiling_db=-1.0, release_ms=10.0, lookahead_ms=1.0, true_peak=True),
        }
    )
    objective = Objective(rate, Target(-14.0, -1.0), LossWeights(), input_lufs=-20.0)

    def ours():
        chain.zero_grad()
        objective(x, chain(x))["loss"].backward()

    ours_s = best_of(ours)
    try:
        from torchcomp import compexp_gain, limiter_gain, ms2coef
    except ImportError:
        print(f"one step ({crops} x {crop_s:g} s stereo): ours {ours_s * 1e3:.0f} ms; torchcomp not installed")
        return
    attack, release = (float(ms2coef(torch.tensor(ms), rate)) for ms in (5.0, 100.0))
    start = dict(ct=-12.0, cr=2.0, at=attack, rt=release, lt=-1.0)
    params = {k: torch.tensor(v, requires_grad=True) for k, v in start.items()}
    flat = x.reshape(-1, x.shape[-1])

    def anchor():
        for p in params.values():
            p.grad = None
        rms = flat.square().clamp_min(1e-10)
        g = compexp_gain(
            rms, params["ct"], params["cr"], torch.tensor(-1000.0), torch.tensor(0.5), params["at"], params["rt"]
        )
        y = flat * g
        lg = limiter_gain(y, params["lt"], params["at"], params["rt"])
        (y * lg).square().mean().backward()

    anchor_s = best_of(anchor)
    print(
        f"one step ({crops} x {crop_s:g} s stereo, forward + backward): ours {ours_s * 1e3:.0f} ms "
        f"(chain of 4 + DRL/loudness/true-peak objective), torchcomp compressor + limiter "
        f"{anchor_s * 1e3:.0f} ms, ratio {ours_s / anchor_s:.2f}"
    )


def main() -> None:
    import argparse
    import json
    import subprocess

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--demo", action="store_true", help="tune the demo track at 180 s instead of real music")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides passed on to train.py (e.g. trainer=gpu)")
    args = parser.parse_args()
    demo, overrides = args.demo, args.overrides
    root = Path(__file__).resolve().parents[1]
    run_dir = root / "bench" / "_music" / "runs" / f"tune_bench_{time.strftime('%Y%m%d-%H%M%S')}"
    if demo:
        data = ["data.track.duration_s=180"]
        label = "demo track, 180 s"
    else:
        from music import excerpt, fetch

        clip = excerpt(fetch()[0], 180.0)
        data = ["data=file", f"data.path={clip}"]
        label = clip.name
    command = [sys.executable, "train.py", *data, f"hydra.run.dir={run_dir}", *overrides]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=root, capture_output=True, text=True)
    total = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    timing = metrics["timing_s"]
    print(f"track: {label}; torch threads {torch.get_num_threads()}")
    print(
        f"fit: {timing['fit']:.1f} s for {metrics['steps']} steps ({timing['fit'] / max(metrics['steps'], 1):.2f} s"
        f"/step, incl. validations and the final solve {timing['final_solve']:.1f} s); goal {GOAL_S:.0f} s, "
        f"ratio {timing['fit'] / GOAL_S:.2f}"
    )
    print(f"baseline grid + start: {timing['baseline_and_start']:.1f} s; whole train.py: {total:.1f} s")
    out = metrics["output"]
    print(
        f"result: {out['integrated_lufs']:.2f} LUFS, {out['true_peak_dbtp']:.2f} dBTP, DRL {out['drl_db']:.2f} dB "
        f"(baseline {metrics['baseline_drl_db']:.2f} dB)"
    )
    step_ratio()


if __name__ == "__main__":
    main()
