"""Integrated loudness and true peak against pyloudnorm (forward), 10 s and 180 s of stereo 44.1 kHz.

Prints, per length: pyloudnorm's forward (float64, its exact "DeMan" filter), ours forward, ours
forward + backward, our true peak (forward), and the ratios. Times are the median of ``--repeat`` runs after
one warm-up. ``python bench/loudness_bench.py [--repeat N] [--threads N] [--device cpu|cuda]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import pyloudnorm
import torch

from drl import integrated_loudness, true_peak

SAMPLE_RATE = 44100


def median_seconds(function, repeat: int, synchronize) -> float:
    function()
    synchronize()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    synchronize = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    rng = np.random.default_rng(0)
    meter = pyloudnorm.Meter(SAMPLE_RATE, filter_class="DeMan")
    print(f"stereo {SAMPLE_RATE} Hz float32 audio on {device}, {args.threads} threads, median of {args.repeat}")
    print(
        f"{'length':>7} {'pyloudnorm':>11} {'ours fwd':>9} {'fwd+bwd':>9} {'true peak':>10} "
        f"{'pyln/ours':>10} {'fwd+bwd/fwd':>12}"
    )
    for seconds in (10, 180):
        numpy_audio = (0.1 * rng.standard_normal((seconds * SAMPLE_RATE, 2))).astype(np.float32)
        audio = torch.from_numpy(numpy_audio.T.copy()).to(device)
        theirs = median_seconds(
            lambda: meter.integrated_loudness(numpy_audio.astype(np.float64)), args.repeat, lambda: None
        )
        ours = median_seconds(lambda: integrated_loudness(audio, SAMPLE_RATE), args.repeat, synchronize)

        def forward_backward():
            leaf = audio.clone().requires_grad_()
            integrated_loudness(leaf, SAMPLE_RATE).backward()

        both = median_seconds(forward_backward, args.repeat, synchronize)
        peak = median_seconds(lambda: true_peak(audio, SAMPLE_RATE), args.repeat, synchronize)
        print(
            f"{seconds:>6}s {theirs * 1e3:>9.1f}ms {ours * 1e3:>7.1f}ms {both * 1e3:>7.1f}ms "
            f"{peak * 1e3:>8.1f}ms {theirs / ours:>10.2f} {both / ours:>12.2f}"
        )


if __name__ == "__main__":
    main()
