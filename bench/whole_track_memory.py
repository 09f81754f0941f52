"""Peak memory of each whole-track step of a job, in copies of the audio: where a long mix's memory goes.

    python bench/whole_track_memory.py [--minutes 5] [--rate 48000]

Synthesises ``--minutes`` of stereo float32 audio (the demo track repeated) and its render through the gain +
limiter baseline (and through a sample-peak limiter, the tuned chain's kind), then runs each step a tuning job
takes on the whole track, without a gradient as the job does, one after another in this process: before each
the peak resident memory is reset (Linux: ``/proc/self/clear_refs``) and after it the rise of the peak over the
memory held before is printed, divided by the audio's size (one copy: 2 x T float32 samples), with the step's
seconds. Memory freed by an earlier step and kept by the allocator is reused, so a step can read below what it
allocates; the figures show which steps grow with the length.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import drl  # noqa: E402
from drl.loudness import loudness_summary  # noqa: E402
from drl.nmr import MaskedReference  # noqa: E402
from processors import Limiter  # noqa: E402
from processors import functional as Fn  # noqa: E402
from tuning.audio import Track, condition_track, demo_track  # noqa: E402
from tuning.baseline import baseline_chain  # noqa: E402
from tuning.clips import listening_clips  # noqa: E402
from tuning.objective import LossWeights  # noqa: E402
from tuning.pcm import write_audio  # noqa: E402
from tuning.results import track_metrics  # noqa: E402
from tuning.run_report import render_report  # noqa: E402


def status_bytes(key: str) -> int:
    """A ``/proc/self/status`` field (VmRSS, VmHWM) in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise OSError(f"no {key} in /proc/self/status")


def measure(name: str, copy_bytes: int, fn):
    """Run ``fn()``; print the rise of the peak resident memory in copies of the audio and the seconds."""
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # the peak (VmHWM) starts again from the present
    before, clock = status_bytes("VmRSS"), time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - clock
    print(f"{name:<38}{(status_bytes('VmHWM') - before) / copy_bytes:>8.1f}{seconds:>9.2f}", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="length of the audio in minutes")
    parser.add_argument("--rate", type=int, default=48000, help="sample rate in Hz")
    args = parser.parse_args()
    if not args.minutes > 0:
        parser.exit(2, f"whole_track_memory.py: --minutes must be > 0, got {args.minutes}\n")
    rate, length = args.rate, int(round(args.minutes * 60 * args.rate))
    song = demo_track(rate, 60.0, seed=1).audio
    audio = (song.repeat(1, -(-length // song.shape[-1]))[:, :length] * 0.9).contiguous()
    copy = audio.numel() * audio.element_size()
    weights = LossWeights()
    chain = baseline_chain(rate, 6.0, -1.0, 10.0, 5.0, True, 1000.0)
    print(f"{args.minutes:g} min of stereo at {rate} Hz: one copy {copy / 2**20:.0f} MiB; torch {torch.__version__}")
    print(f"{'step (whole track, no gradient)':<38}{'copies':>8}{'seconds':>9}")
    with torch.no_grad():
        measure("subsonic high-pass (condition_track)", copy, lambda: condition_track(Track(audio, rate, "x"), "on"))
        measure("integrated loudness", copy, lambda: drl.integrated_loudness(audio, rate))
        measure("true peak", copy, lambda: drl.true_peak(audio, rate))
        measure("loudness summary (+ LRA, peaks)", copy, lambda: loudness_summary(audio, rate))
        measure("limiter's true-peak envelope", copy, lambda: Fn.peak_envelope(audio[None], rate, True))
        output = measure("render: gain + limiter", copy, lambda: chain(audio))
        sample_peak = Limiter(rate, ceiling_db=-1.0, release_ms=10.0, lookahead_ms=5.0)  # the tuned chain's kind
        measure("render: sample-peak limiter (fused)", copy, lambda: sample_peak(audio[None]))
        measure("DRL", copy, lambda: drl.drl_db(audio, output))
        measure("band DRL (3 bands)", copy, lambda: drl.band_drl_db(audio, output, rate, drl.default_bands(rate)))
        measure("frame-wise DRL", copy, lambda: drl.frame_drl_db(audio, output, rate, 50.0))
        measure("NMR", copy, lambda: drl.nmr_db(audio, output, rate))
        masked = measure("NMR's masked reference (kept)", copy, lambda: MaskedReference(audio, rate))
        del masked
        metrics = measure(
            "track_metrics (every output measure)", copy, lambda: track_metrics(audio, output, rate, weights)
        )
        with tempfile.TemporaryDirectory() as folder:
            measure("write float32 WAV", copy, lambda: write_audio(Path(folder) / "a.wav", output, rate, "float32"))
            measure(
                "write 24-bit WAV (dither)", copy, lambda: write_audio(Path(folder) / "b.wav", output, rate, "pcm24")
            )
        listening = {"input": metrics, "output": metrics}
        measure("listening clips", copy, lambda: listening_clips(audio, output, rate))
        measure("report.html", copy, lambda: render_report("x", audio, output, rate, listening, chain))


if __name__ == "__main__":
    main()
