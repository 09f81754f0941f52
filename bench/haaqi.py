"""HAAQI as a perceptual referee for the benchmarks (bench-only; never a dependency of the package).

HAAQI, the Hearing-Aid Audio Quality Index (Kates & Arehart 2016), compares a processed music signal with its
clean reference through an auditory model (24 kHz, 32 gammatone bands from 80 Hz to 8 kHz) and returns a
quality from 0 to 1. It comes from pyclarity 0.9.0 (``clarity.evaluator.haaqi.haaqi_v1``), installed on first
use without its heavy declared dependencies: the HAAQI import chain needs only numpy, scipy and numba.

How it is used here, and why:

- Excerpt: the loudest ``excerpt_s`` seconds of the reference (1 s grid, plain energy of all channels after a
  20 Hz high-pass), or the one at ``start``; the same samples of both signals; the whole signal if shorter.
  Identical signals score about 0.998 for 10 s and 0.997 for 2 s, and move by 0.001 when the length changes by
  a sample: compare processors on the same excerpt, and count differences below about 0.005 as ties.
- Alignment: the processed excerpt is shifted by its bulk delay (whole samples, cross-correlation peak) and both
  are cut to their overlap. HAAQI aligns on its 24 kHz grid only (an odd number of 48 kHz samples of latency
  costs 0.005), and a latency's leading zeros would ring in the high-pass.
- A zero-phase 20 Hz high-pass (2nd-order Butterworth) of both: HAAQI hears 80 Hz - 8 kHz, but DC and
  infrasound, which some real tracks are full of, would set the level and the gain below, and a strong
  DC + 5 Hz component that a processor removes costs 0.02 even after HAAQI's middle-ear filter.
- Gain: HAAQI does not level-match (an untouched copy 6 dB quieter scores 0.94), so the processed excerpt is
  divided by its least-squares gain ``<ref, proc> / <ref, ref>``, one for all channels: a loudness change is
  not damage, a balance change still is.
- Level: the reference (all channels together) is presented at 65 dB SPL RMS, ``level1 = 65 - 20
  log10(rms)``. A channel that would sit below 30 dB SPL is refused (near threshold identical signals score 0.16).
- Resampling: exactly to 24 kHz (``resample_poly``), as pyclarity's resampler rounds 44.1 kHz to 44 kHz.
- Normal hearing (0 dB HL at pyclarity's HAAQI audiogram frequencies), ``equalisation=2``: with 1, pyclarity
  runs the reference through the (flat) NAL-R filter and crops it 70 taps late, a 2.9 ms shift that costs
  identical signals 0.01 - 0.02.
- Channels: HAAQI is mono; channel c is compared with channel c, in up to 2 processes, and the score is the
  mean. A 10 s channel costs about 8 s of CPU.
- Cache: bench/_build/haaqi_cache.json, keyed by the excerpts' samples, the rate, the excerpt settings and
  :data:`VERSION` (bump it whenever a convention above changes).

    python bench/haaqi.py REFERENCE PROCESSED [PROCESSED ...] [--excerpt-s 10] [--json] [--no-cache]
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import multiprocessing
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from math import gcd
from pathlib import Path

import numpy as np
from scipy.signal import butter, correlate, correlation_lags, resample_poly, sosfilt, sosfiltfilt

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_deps import ensure_python  # noqa: E402

VERSION = "haaqi-3"
CACHE = Path(__file__).resolve().parent / "_build" / "haaqi_cache.json"
MODEL_RATE = 24_000  # Hz
LEVEL_DB_SPL = 65.0
MIN_CHANNEL_DB_SPL = 30.0
HIGHPASS_HZ = 20.0


@dataclass(frozen=True)
class Score:
    """Mean and per-channel HAAQI (0..1), the excerpt scored (s), the least-squares gain taken out of the
    processed signal (dB), its delay behind the reference (ms), the wall time of the call (s) and whether it came
    from the cache."""

    mean: float
    channels: tuple[float, ...]
    start_s: float
    length_s: float
    gain_db: float
    delay_ms: float
    wall_s: float
    cached: bool


def _channels(signal, name: str) -> np.ndarray:
    """``signal`` (a numpy array, or a torch tensor) as a finite float64 array of shape (C, T)."""
    signal = signal.detach().cpu().numpy() if hasattr(signal, "detach") else signal
    array = np.asarray(signal, dtype=np.float64)
    array = array[None] if array.ndim == 1 else array
    if array.ndim != 2 or array.shape[1] == 0:
        raise ValueError(f"{name} must have shape (C, T) or (T,) with T > 0, got {np.shape(signal)}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or Inf")
    return array


def _highpass(sample_rate: int) -> np.ndarray:
    return butter(2, HIGHPASS_HZ, "highpass", fs=sample_rate, output="sos")


def loudest_start(reference: np.ndarray, sample_rate: int, length: int) -> int:
    """Start (samples) of the ``length``-sample window of ``reference`` (C, T) with the most energy after the
    20 Hz high-pass, on a 1 s grid."""
    energy = np.square(sosfilt(_highpass(sample_rate), reference, axis=-1)).sum(axis=0)
    cumulative = np.concatenate([[0.0], np.cumsum(energy)])
    starts = np.arange(0, reference.shape[1] - length + 1, sample_rate)
    return int(starts[np.argmax(cumulative[starts + length] - cumulative[starts])])


def bulk_delay(reference: np.ndarray, processed: np.ndarray) -> int:
    """Delay (whole samples) of ``processed`` behind ``reference`` (both (C, T)): where their cross-correlation,
    summed over channels, peaks in magnitude."""
    n = reference.shape[1]
    correlation = sum(correlate(p, r, method="fft") for r, p in zip(reference, processed))
    return int(correlation_lags(n, n)[np.argmax(np.abs(correlation))])


def _model():
    """pyclarity's ``haaqi_v1`` and a normal-hearing audiogram (installed on first use)."""
    haaqi = ensure_python("clarity.evaluator.haaqi.haaqi", "pyclarity==0.9.0", no_deps=True)
    from clarity.utils.audiogram import Audiogram

    frequencies = haaqi.HAAQI_AUDIOGRAM_FREQUENCIES
    return haaqi.haaqi_v1, Audiogram(levels=np.zeros(len(frequencies)), frequencies=frequencies)


def _score_channel(reference: np.ndarray, processed: np.ndarray, level1: float) -> float:
    """HAAQI of two 24 kHz mono signals (T,), where an RMS of 1 is ``level1`` dB SPL."""
    haaqi_v1, audiogram = _model()
    return float(haaqi_v1(reference, MODEL_RATE, processed, MODEL_RATE, audiogram, 2, level1)[0])


def _cache_key(reference: np.ndarray, processed: np.ndarray, sample_rate: int, excerpt_s: float, start) -> str:
    digest = hashlib.sha1(f"{VERSION}|{sample_rate}|{excerpt_s}|{start}|{reference.shape}".encode())
    digest.update(np.ascontiguousarray(reference).tobytes())
    digest.update(np.ascontiguousarray(processed).tobytes())
    return digest.hexdigest()


def _read_cache(path: Path) -> dict:
    """The cache's entries ({} when it is missing or unreadable)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _write_cache(path: Path, key: str, entry: dict) -> None:
    """Add ``entry`` to the cache at ``path``: under a lock, merged with what is there, via a renamed temp file
    (so readers never see half a file and two writers lose nothing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        entries = {**_read_cache(path), key: entry}
        with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as temp:
            json.dump(entries, temp)
        os.chmod(temp.name, 0o644)  # a temp file starts private
        os.replace(temp.name, path)


def score_channels(
    reference,
    processed,
    sample_rate: int,
    *,
    excerpt_s: float = 10.0,
    start: int | None = None,
    cache: Path | None = CACHE,
) -> Score:
    """HAAQI of ``processed`` against ``reference`` (both (C, T) or (T,), same shape, at ``sample_rate`` Hz) on
    the conventions of the module docstring; ``cache=None`` neither reads nor writes the cache."""
    began = time.perf_counter()
    reference, processed = _channels(reference, "reference"), _channels(processed, "processed")
    if reference.shape != processed.shape:
        raise ValueError(f"reference and processed differ in shape: {reference.shape} vs {processed.shape}")
    if int(sample_rate) != sample_rate or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive whole number of Hz, got {sample_rate}")
    if not 0 < excerpt_s < np.inf:
        raise ValueError(f"excerpt_s must be a positive number of seconds, got {excerpt_s}")
    sample_rate, total = int(sample_rate), reference.shape[1]
    length = min(round(excerpt_s * sample_rate), total)
    if length < sample_rate / 2:  # HAAQI's slowest envelope-modulation band is 0-4 Hz
        raise ValueError(f"HAAQI needs at least 0.5 s, got {length / sample_rate:.3f} s")
    if start is None:
        first = loudest_start(reference, sample_rate, length)
    elif 0 <= start <= total - length:
        first = int(start)
    else:
        raise ValueError(f"start {start} leaves no {length}-sample excerpt in a {total}-sample signal")
    reference, processed = reference[:, first : first + length], processed[:, first : first + length]

    key = _cache_key(reference, processed, sample_rate, excerpt_s, start)
    entry = _read_cache(cache).get(key) if cache is not None else None
    cached = entry is not None
    if not cached:
        entry = _score_excerpt(reference, processed, sample_rate)
        if cache is not None:
            _write_cache(cache, key, entry)
    channels = tuple(entry["channels"])
    return Score(
        float(np.mean(channels)),
        channels,
        first / sample_rate,
        length / sample_rate,
        entry["gain_db"],
        entry["delay_ms"],
        time.perf_counter() - began,
        cached,
    )


def _condition(reference: np.ndarray, processed: np.ndarray, sample_rate: int):
    """What HAAQI scores, from two excerpts (C, T): both aligned, high-passed, the processed gain-normalised, both
    at 24 kHz; with ``level1`` (dB SPL of an RMS of 1), the gain taken out and the delay (samples)."""
    sos = _highpass(sample_rate)
    reference_hp, processed_hp = sosfiltfilt(sos, reference, axis=-1), sosfiltfilt(sos, processed, axis=-1)
    for name, signal in (("reference", reference_hp), ("processed", processed_hp)):
        if np.sqrt(np.mean(np.square(signal))) < 1e-7:
            raise ValueError(f"the {name} excerpt is silent (RMS below -140 dBFS after the 20 Hz high-pass)")
    lag = bulk_delay(reference_hp, processed_hp)
    n = reference.shape[1] - abs(lag)
    if n < sample_rate / 2:
        raise ValueError(
            f"at their best alignment (delay {lag / sample_rate:+.2f} s) reference and processed "
            f"overlap for under 0.5 s"
        )
    # the overlap, cut before the high-pass: a latency's leading zeros would make its edge ring
    reference, processed = reference[:, max(-lag, 0) :][:, :n], processed[:, max(lag, 0) :][:, :n]
    reference, processed = sosfiltfilt(sos, reference, axis=-1), sosfiltfilt(sos, processed, axis=-1)
    gain = float(np.sum(reference * processed) / np.sum(np.square(reference)))
    if abs(gain) < 1e-7:
        raise ValueError("the processed excerpt is uncorrelated with the reference (least-squares gain ~ 0)")
    processed = processed / gain  # a negative gain restores polarity too: inverting a signal is inaudible
    level1 = LEVEL_DB_SPL - 20 * np.log10(np.sqrt(np.mean(np.square(reference))))
    with np.errstate(divide="ignore"):
        channel_db = level1 + 10 * np.log10(np.mean(np.square(reference), axis=1))
    if channel_db.min() < MIN_CHANNEL_DB_SPL:
        c = int(np.argmin(channel_db))
        raise ValueError(
            f"reference channel {c} would sit at {channel_db[c]:.0f} dB SPL, below the "
            f"{MIN_CHANNEL_DB_SPL:.0f} dB SPL HAAQI needs; score it on its own"
        )
    step = gcd(sample_rate, MODEL_RATE)
    if sample_rate != MODEL_RATE:
        reference = resample_poly(reference, MODEL_RATE // step, sample_rate // step, axis=-1)
        processed = resample_poly(processed, MODEL_RATE // step, sample_rate // step, axis=-1)
    return reference, processed, level1, gain, lag


def _score_excerpt(reference: np.ndarray, processed: np.ndarray, sample_rate: int) -> dict:
    """Per-channel HAAQI, the gain taken out (dB) and the delay (ms) for two excerpts (C, T), channels in
    parallel."""
    reference, processed, level1, gain, lag = _condition(reference, processed, sample_rate)
    _model()  # install (if needed) here, not in two workers at once
    if len(reference) == 1:
        channels = [_score_channel(reference[0], processed[0], level1)]
    else:
        # fork, not spawn: spawn re-runs the caller's script unless it has a __main__ guard; the workers run no
        # torch or OpenMP code, so thread pools a caller has started do not matter to them
        with ProcessPoolExecutor(min(2, len(reference)), mp_context=multiprocessing.get_context("fork")) as pool:
            channels = list(pool.map(_score_channel, reference, processed, [level1] * len(reference)))
    return {"channels": channels, "gain_db": 20 * float(np.log10(abs(gain))), "delay_ms": 1000 * lag / sample_rate}


def score(reference, processed, sample_rate: int, *, excerpt_s: float = 10.0, start: int | None = None) -> float:
    """Mean HAAQI over channels (0..1) of ``processed`` against ``reference``; see :func:`score_channels`."""
    return score_channels(reference, processed, sample_rate, excerpt_s=excerpt_s, start=start).mean


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line on stderr, exit code 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def _read(path: str) -> tuple[np.ndarray, int]:
    """Audio file -> (C, T) float64 samples and the rate; ValueError naming the file if it cannot be read."""
    import soundfile as sf

    if not Path(path).is_file():
        raise ValueError(f"no such file: {path}")
    try:
        data, rate = sf.read(path, dtype="float64", always_2d=True)
    except (OSError, RuntimeError, sf.LibsndfileError) as error:
        raise ValueError(f"cannot read {path}: {error}") from None
    return data.T, rate


def _table(results: list[dict]) -> str:
    """One line per processed file: HAAQI, per channel, excerpt (start + length, s), gain, delay, wall time."""
    lines = [
        f"{'file':<36} {'HAAQI':>6}  {'channels':<14} {'excerpt s':>10} {'gain dB':>7} {'delay ms':>8} {'wall s':>6}"
    ]
    for r in results:
        channels = " ".join(f"{c:.4f}" for c in r["channels"])
        cached = " (cached)" if r["cached"] else ""
        lines.append(
            f"{r['file']:<36} {r['mean']:.4f}  {channels:<14} {r['start_s']:>4.0f}+{r['length_s']:<5.1f} "
            f"{r['gain_db']:7.2f} {r['delay_ms']:8.2f} {r['wall_s']:6.1f}{cached}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog="bench/haaqi.py", description="HAAQI of processed files against a reference file.")
    parser.add_argument("reference")
    parser.add_argument("processed", nargs="+")
    parser.add_argument("--excerpt-s", type=float, default=10.0, help="seconds scored (default 10, the loudest)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    args = parser.parse_args(argv)
    results = []
    try:
        reference, rate = _read(args.reference)
        for path in args.processed:
            processed, processed_rate = _read(path)
            if processed_rate != rate or processed.shape[0] != reference.shape[0]:
                raise ValueError(
                    f"{path} is {processed_rate} Hz x {processed.shape[0]} channels, the reference "
                    f"{rate} Hz x {reference.shape[0]}"
                )
            result = score_channels(
                reference, processed, rate, excerpt_s=args.excerpt_s, cache=None if args.no_cache else CACHE
            )
            results.append({"file": path, **asdict(result)})
    except ValueError as error:
        print(f"{parser.prog}: error: " + " ".join(str(error).split()), file=sys.stderr)
        return 2
    print(json.dumps(results, indent=1) if args.json else _table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
