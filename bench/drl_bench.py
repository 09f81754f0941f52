"""Time this project's DRL against distortion-residual 0.1.0, side by side, and print the speed-up.

Stereo 44.1 kHz float32 noise against its tanh-saturated copy; broadband and the three default bands; forward
and forward+backward; on the CPU, and on CUDA when one is present. Each figure is the median of --repeats runs
after one warm-up run (see :func:`timed`). The original's band filters are very slow on the CPU (seconds per
call), so it runs --original-repeats times, and is skipped (with its estimate printed) where one call would
exceed --original-budget-s judging from the shorter duration.

A second table times the other measures against plain broadband DRL, this project's own: frame-wise DRL
(``frame_ms=50``, goal: within 2x of plain), linear-response removal (``linear_taps=512``, goal: within 10x of
plain) and the noise-to-mask ratio (``drl.nmr_db``, goal: within 5x of plain; "cached": one more candidate
scored against a ``MaskedReference``, whose reference half is computed once). They are timed round by round
(see :func:`alternating_samples`), so load from other processes weighs on all of them alike, and each ratio is
the median of the ratios within a round; use ``--threads 1`` on a shared machine. The table ends with the
linear fit's fixed cost: its ``512 x 512`` Cholesky factorisations, which do not shrink with the signal.

    python bench/drl_bench.py                      # 10 s and 60 s, CPU (+ CUDA)
    python bench/drl_bench.py --durations 10 --repeats 3
    python bench/drl_bench.py --skip-original      # the second table only
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from drl import DEFAULT_BANDS, DRL, nmr_db
from drl.linear import _cholesky, _gram, _Segments
from drl.nmr import MaskedReference

SR = 44100


def timed(function, device: torch.device, repeats: int, warm: bool = True) -> float:
    """Median wall time of ``function()`` in seconds. The first call warms up (unless ``warm`` is False); one
    slower than a second counts as a measurement (the original's band filters take seconds per call and gain
    nothing from warming up)."""

    def once() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        function()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    first = once() if warm else None
    times = [] if first is None or first <= 1.0 else [first]
    times += [once() for _ in range(repeats - len(times))]
    return statistics.median(times)


def alternating_samples(functions, device: torch.device, rounds: int) -> list[list[float]]:
    """Wall times of ``functions``, timed one after the other round by round (after one warm-up call each), so
    that load from other processes weighs on all of them alike: one list of ``rounds`` times per function."""
    for function in functions:
        function()
    samples = [[] for _ in functions]
    for _ in range(rounds):
        for function, times in zip(functions, samples):
            times.append(timed(function, device, 1, warm=False))
    return samples


def alternating(functions, device: torch.device, rounds: int) -> list[float]:
    """Median wall times of ``functions`` timed round by round (see :func:`alternating_samples`)."""
    return [statistics.median(times) for times in alternating_samples(functions, device, rounds)]


def side_by_side(ours, original, device: torch.device, repeats: int, original_repeats: int) -> tuple[float, float]:
    """Median wall times of ``ours`` and ``original``: alternated round by round (as :func:`alternating`) when
    the original takes under a second, else ``ours`` over ``repeats`` runs and the original over
    ``original_repeats`` (its first call counted, see :func:`timed`)."""
    first = timed(original, device, 1, warm=False)
    if first <= 1.0:
        return tuple(alternating([ours, original], device, repeats))
    rest = [timed(original, device, 1, warm=False) for _ in range(original_repeats - 1)]
    return timed(ours, device, repeats), statistics.median([first, *rest])


def job(metric, reference: torch.Tensor, processed: torch.Tensor, backward: bool, key: str = "total_drl_db"):
    """One evaluation of ``metric(reference, processed)[key]`` (and its backward pass) as a closure."""

    def run():
        if backward:
            leaf = processed.detach().requires_grad_(True)
            metric(reference, leaf)[key].backward()
        else:
            with torch.no_grad():
                metric(reference, processed)

    return run


def nmr_metric(reference: torch.Tensor, processed: torch.Tensor) -> dict:
    """The noise-to-mask ratio alone, as a dict like DRL's (mean over channels)."""
    return {"nmr_db": nmr_db(reference, processed, SR).mean()}


def masked_reference_job(reference: torch.Tensor, processed: torch.Tensor, backward: bool):
    """The NMR against a :class:`drl.nmr.MaskedReference` built once, outside the timing: the cost of scoring
    one more candidate against the same track (the tuning jobs' baseline grid, starts and validations)."""
    masked = MaskedReference(reference, SR)
    return job(
        lambda _, candidate: {"nmr_db": masked.nmr_db(candidate).mean()}, reference, processed, backward, "nmr_db"
    )


def signals(seconds: float, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    reference = torch.randn(2, int(seconds * SR), generator=generator) * 0.1
    return reference.to(device), (torch.tanh(3 * reference) / 3).to(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--durations", type=float, nargs="+", default=[10.0, 60.0], help="seconds of stereo audio")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of this project's DRL")
    parser.add_argument("--original-repeats", type=int, default=3, help="timed runs of the original")
    parser.add_argument("--original-budget-s", type=float, default=60.0, help="skip original calls longer than this")
    parser.add_argument("--devices", nargs="+", default=None, help="default: cpu, and cuda when available")
    parser.add_argument("--skip-original", action="store_true", help="only time the optional measures")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])

    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads; stereo {SR} Hz float32; median times")
    if not args.skip_original:
        against_original(args, devices)
    options(args, devices)


def options(args: argparse.Namespace, devices: list[str]) -> None:
    """Frame-wise DRL, linear-response removal and the NMR against plain broadband DRL. Each ratio is the median
    of the ratios within a round, which holds steadier than a ratio of medians when the machine's load changes."""
    measures = {
        "frame_ms=50": job_factory(DRL(SR, None, frame_ms=50.0)),
        "linear_taps=512": job_factory(DRL(SR, None, linear_taps=512)),
        "nmr_db": job_factory(nmr_metric, "nmr_db"),
        "nmr_db, cached": masked_reference_job,
    }
    print(
        f"\n{'device':6} {'audio':>6} {'pass':>16} {'plain (ms)':>11} "
        + " ".join(f"{name:>16} {'ratio':>6}" for name in measures)
    )
    for name in devices:
        device = torch.device(name)
        for seconds in args.durations:
            reference, processed = signals(seconds, device)
            for backward in (False, True):
                jobs = [job(DRL(SR, None), reference, processed, backward)]
                jobs += [make(reference, processed, backward) for make in measures.values()]
                plain, *others = alternating_samples(jobs, device, args.repeats)
                columns = " ".join(
                    f"{statistics.median(times) * 1e3:16.1f} "
                    f"{statistics.median(t / p for t, p in zip(times, plain)):5.1f}x"
                    for times in others
                )
                print(
                    f"{name:6} {seconds:5.0f}s {'forward+backward' if backward else 'forward':>16} "
                    f"{statistics.median(plain) * 1e3:11.1f} {columns}",
                    flush=True,
                )
        print(
            f"{name:6} the linear fit's fixed cost, two 512 x 512 float64 Cholesky factorisations (stereo): "
            f"{timed(cholesky_job(device), device, args.repeats) * 1e3:.1f} ms"
        )


def job_factory(metric, key: str = "total_drl_db"):
    """``make(reference, processed, backward)`` -> a :func:`job` of ``metric`` reading ``key``."""
    return lambda reference, processed, backward: job(metric, reference, processed, backward, key)


def cholesky_job(device: torch.device):
    """The factorisation of the Gram matrices of a stereo fit: the part of linear removal whose cost does not
    depend on the signal's length."""
    reference, processed = signals(1.0, device)
    segments = _Segments(reference, 512)
    gram = _gram(segments.lags(segments.correlate(reference), 0), reference, 512)
    return lambda: _cholesky(gram)


def against_original(args: argparse.Namespace, devices: list[str]) -> None:
    """This DRL against distortion-residual 0.1.0 (imported here: the other tables and bench/gpu_bench.py run
    without it)."""
    from distortion_residual import DRL as OriginalDRL

    print(f"{'device':6} {'audio':>6} {'bands':>6} {'pass':>16} {'this (ms)':>11} {'original (ms)':>14} "
          f"{'speed-up':>9}")  # fmt: skip
    for name in devices:
        device = torch.device(name)
        seconds_per_sample: dict[tuple, float] = {}
        for seconds in args.durations:
            reference, processed = signals(seconds, device)
            for bands in (None, DEFAULT_BANDS):
                ours = DRL(SR, bands)
                original = OriginalDRL(SR, bands, device=device)
                for backward in (False, True):
                    key = (bands is None, backward)
                    estimate = seconds_per_sample.get(key, 0.0) * reference.shape[-1]
                    if estimate > args.original_budget_s:
                        ours_s = timed(job(ours, reference, processed, backward), device, args.repeats)
                        original_text, ratio_text = f"~{estimate * 1e3:.0f} (est.)", f"~{estimate / ours_s:.0f}x"
                    else:
                        ours_s, original_s = side_by_side(
                            job(ours, reference, processed, backward),
                            job(original, reference, processed, backward),
                            device,
                            args.repeats,
                            args.original_repeats,
                        )
                        seconds_per_sample[key] = original_s / reference.shape[-1]
                        original_text, ratio_text = f"{original_s * 1e3:.1f}", f"{original_s / ours_s:.1f}x"
                    print(
                        f"{name:6} {seconds:5.0f}s {0 if bands is None else len(bands):>6} "
                        f"{'forward+backward' if backward else 'forward':>16} {ours_s * 1e3:11.1f} "
                        f"{original_text:>14} {ratio_text:>9}",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
