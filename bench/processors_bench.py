"""Compressor and limiter forward+backward: ours against torchcomp 0.2.1, side by side, ratios printed.

    ./dev bench processors_bench.py [--repeats 5] [--seconds 10 60] [--items 1 2] [--threads N] [--no-cuda]

Settings: 44.1 kHz stereo, stereo-linked peak detection on both sides; compressor hard knee (knee_db = 0),
threshold -20 dB, ratio 4, attack 5 ms, release 100 ms (torchcomp: compexp_gain with the same times through its
ms2coef, its expander parked out of the way); limiter ceiling -1 dB, release 50 ms (torchcomp: limiter_gain,
attack 1 ms; ours: lookahead 5 ms). Both sides get the same float32 audio, the same linked peak detector
input and the same loss; the CPU cases run on batches of 1 and of 2 items (--items). Each timed call is
forward + backward of a mean-square loss to the audio and every parameter. After one warm-up call of each
(numba compile excluded), ours and torchcomp alternate for --repeats rounds; the table shows the fastest call
of each, their ratio, and the median of the per-round ratios (the alternation makes load from other processes
hit both sides alike). When CUDA is present, a batch of
64 x 2 x 10 s runs on the GPU as well.
"""

from __future__ import annotations

import argparse
import time

import torch

from processors import Compressor, Limiter

SR = 44100


def music_like(batch: int, seconds: float, device: str) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    t = torch.arange(int(seconds * SR)) / SR
    beat = (t % 0.5) / 0.5
    kick = torch.sin(2 * torch.pi * 55 * t) * torch.exp(-beat * 8)
    noise = torch.randn(batch, 2, t.numel(), generator=g) * torch.exp(-((t % 0.25) / 0.25) * 30) * 0.3
    x = kick + noise + 0.1 * torch.sin(2 * torch.pi * 330 * t)
    return (x / x.abs().amax() * 0.9).float().to(device)


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def once(fn, device: str) -> float:
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def timed_pair(ours, theirs, device: str, repeats: int) -> tuple[float, float, float]:
    """(best ours, best theirs, median of the per-round ratios theirs/ours) in seconds. The two alternate
    round by round, so that a burst of load from other processes hits both sides alike."""
    ours()  # warm-up: numba compilation / cache load, allocator, torchcomp's own numba kernels
    theirs()
    sync(device)
    t_ours, t_theirs = [], []
    for _ in range(repeats):
        t_ours.append(once(ours, device))
        t_theirs.append(once(theirs, device))
    ratios = sorted(b / a for a, b in zip(t_ours, t_theirs))
    return min(t_ours), min(t_theirs), ratios[len(ratios) // 2]  # min: other processes only ever add time


def ours(processor: torch.nn.Module, x: torch.Tensor):
    """Forward and backward of one of our processors on ``x``, as a closure."""
    processor = processor.to(x.device)

    def run():
        xi = x.detach().requires_grad_()
        processor.zero_grad()
        processor(xi).square().mean().backward()

    return run


def ours_compressor(x):
    return ours(Compressor(SR, threshold_db=-20, ratio=4, knee_db=0, attack_ms=5, release_ms=100), x)


def ours_limiter(x):
    return ours(Limiter(SR, ceiling_db=-1, release_ms=50, lookahead_ms=5), x)


def torchcomp_compressor(x):
    from torchcomp import compexp_gain, ms2coef

    b = x.shape[0]
    params = {
        "comp_thresh": torch.full((b,), -20.0, device=x.device),
        "comp_ratio": torch.full((b,), 4.0, device=x.device),
        "at": ms2coef(torch.full((b,), 5.0, device=x.device), SR),
        "rt": ms2coef(torch.full((b,), 100.0, device=x.device), SR),
    }

    def run():
        xi = x.detach().requires_grad_()
        p = {k: v.detach().requires_grad_() for k, v in params.items()}
        level = xi.abs().amax(dim=1).clamp_min(1e-7)
        gain = compexp_gain(level, p["comp_thresh"], p["comp_ratio"], -120.0, 0.5, p["at"], p["rt"])
        (xi * gain[:, None]).square().mean().backward()

    return run


def torchcomp_limiter(x):
    from torchcomp import limiter_gain, ms2coef

    b = x.shape[0]
    params = {
        "threshold": torch.full((b,), -1.0, device=x.device),
        "at": ms2coef(torch.full((b,), 1.0, device=x.device), SR),
        "rt": ms2coef(torch.full((b,), 50.0, device=x.device), SR),
    }

    def run():
        xi = x.detach().requires_grad_()
        p = {k: v.detach().requires_grad_() for k, v in params.items()}
        gain = limiter_gain(xi.abs().amax(dim=1), p["threshold"], p["at"], p["rt"])
        (xi * gain[:, None]).square().mean().backward()

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seconds", type=float, nargs="+", default=[10.0, 60.0])
    parser.add_argument("--items", type=int, nargs="+", default=[1, 2], help="batch items of the CPU cases")
    parser.add_argument("--no-cuda", action="store_true")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    cases = [("cpu", b, s) for b in args.items for s in args.seconds]
    if torch.cuda.is_available() and not args.no_cuda:
        cases.append(("cuda", 64, 10.0))
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU thread(s); forward + backward, best of "
        f"{args.repeats} alternating rounds (numba compilation excluded)"
    )
    print("speed-up = torchcomp time / ours (> 1: ours faster): of the best times, and the median of the rounds")
    print(f"{'processor':<12}{'case':<20}{'ours (ms)':>11}{'torchcomp (ms)':>16}{'speed-up':>10}{'median':>8}")
    for device, batch, seconds in cases:
        x = music_like(batch, seconds, device)
        label = f"{device} {batch}x2x{seconds:g} s"
        for name, ours, theirs in (
            ("compressor", ours_compressor, torchcomp_compressor),
            ("limiter", ours_limiter, torchcomp_limiter),
        ):
            t_ours, t_theirs, median = timed_pair(ours(x), theirs(x), device, args.repeats)
            print(
                f"{name:<12}{label:<20}{t_ours * 1e3:>11.1f}{t_theirs * 1e3:>16.1f}{t_theirs / t_ours:>9.1f}x"
                f"{median:>7.1f}x"
            )


if __name__ == "__main__":
    main()
