"""Long inputs: the default job on continuous mixes of 3, 10 and 60 minutes, its time and memory against length.

    python bench/long_mix_bench.py [--minutes 3,10,60] [--rate 48000] [--timeout-s S] [--keep] [--stages]
                                   [overrides ...]

For each length the bench synthesises a continuous mix (48 kHz stereo float WAV in a temporary folder): demo
songs of 3 minutes (bench: tuning.audio.demo_track, a new seed and a level between -6 and 0 dB for each, so
loud and quiet songs and their quiet / groove / loud sections alternate and the limiter has work), joined by
2 s crossfades, written song by song so that the mix never sits whole in this process. Then it runs
``python train.py data=file data.path=<mix> [overrides]`` as a child process (bench/train_run.py) and prints its
wall clock, the job's own seconds (metrics.json's timing_s), its peak resident memory (the child's own, from
``os.wait4``) and, under trainer=gpu, its peak CUDA memory. The closing table divides each by the length and
gives the slope between consecutive lengths and a straight-line fit, so that linear growth (and the fixed
start-up cost) can be read off. With ``--stages`` each run's peak resident memory after each of its progress
lines follows its row, to trace where memory grows. Overrides go to every run (e.g. ``trainer.max_steps=2`` for
a smoke test).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH.parent), str(BENCH)]

import train_run  # noqa: E402

SONG_S = 180.0
CROSSFADE_S = 2.0


def song_gain(index: int) -> float:
    """The level of song ``index``: spread between -6 and 0 dB (golden-ratio steps, no repeating pattern)."""
    return 10 ** (-6.0 * ((index * 0.618034) % 1.0) / 20)


def write_mix(path: Path, minutes: float, rate: int) -> None:
    """A continuous stereo mix of ``minutes`` at ``rate`` Hz into ``path`` (float WAV), one song at a time."""
    import soundfile as sf

    from tuning.audio import demo_track

    total = int(round(minutes * 60 * rate))
    song, fade = int(round(SONG_S * rate)), int(round(CROSSFADE_S * rate))
    ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
    with sf.SoundFile(str(path), "w", rate, 2, subtype="FLOAT") as out:
        pending, tail, index = total, None, 0  # pending: samples still to write, the held-back tail among them
        while pending > 0:
            length = min(song, pending)
            audio = demo_track(rate, length / rate, seed=index).audio.numpy() * song_gain(index)
            if tail is not None:  # crossfade with the end of the previous song
                audio[:, :fade] = audio[:, :fade] * ramp + tail * ramp[::-1]
            if length == pending:
                out.write(audio.T)
                pending = 0
            else:
                out.write(audio[:, :-fade].T)
                tail = audio[:, -fade:]
                pending -= length - fade
            index += 1


def machine_memory_bytes() -> int | None:
    """MemTotal of /proc/meminfo, None where there is none."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def gib(count: int | None) -> str:
    return "-" if count is None else f"{count / 2**30:.2f}"


def print_stages(stage_peaks: list[tuple[str, int]], audio_bytes: int) -> None:
    """Peak resident memory after each progress line, in GiB and in copies of the input file's audio."""
    for stage, peak in stage_peaks:
        if peak:
            print(f"{'':>8}{gib(peak):>7} GiB{peak / audio_bytes:>6.1f}x  {stage[:90]}")
        else:  # over before the next sample
            print(f"{'':>8}{'-':>7}{'':>11}  {stage[:90]}")


def report(rows: list[dict]) -> None:
    """Per-minute figures, slopes between consecutive lengths, and a straight-line fit of time and memory."""
    rows = [r for r in rows if r["ok"]]
    if not rows:
        return
    print("\nper minute of audio, and the slope from the previous length (what one more minute costs):")
    print(f"{'minutes':>8}{'wall s/min':>12}{'job s/min':>11}{'RSS GiB/min':>13}{'slope s/min':>13}"
          f"{'slope GiB/min':>15}")  # fmt: skip
    previous = None
    for r in rows:
        m = r["minutes"]
        slope_s = slope_gib = "-"
        if previous is not None:
            dm = m - previous["minutes"]
            slope_s = f"{(r['wall_s'] - previous['wall_s']) / dm:.2f}"
            slope_gib = f"{(r['rss'] - previous['rss']) / 2**30 / dm:.3f}"
        print(
            f"{m:>8g}{r['wall_s'] / m:>12.2f}{r['job_s'] / m:>11.2f}{r['rss'] / 2**30 / m:>13.3f}"
            f"{slope_s:>13}{slope_gib:>15}"
        )
        previous = r
    if len(rows) >= 2:
        minutes = np.array([r["minutes"] for r in rows])
        for name, values, unit in (
            ("wall clock", np.array([r["wall_s"] for r in rows]), "s"),
            ("job (timing_s)", np.array([r["job_s"] for r in rows]), "s"),
            ("peak resident memory", np.array([r["rss"] / 2**30 for r in rows]), "GiB"),
        ):
            slope, intercept = np.polyfit(minutes, values, 1)
            worst = np.max(np.abs(values - (intercept + slope * minutes)) / values)
            print(f"fit {name:<21}: {intercept:8.2f} {unit} + {slope:7.3f} {unit}/min; "
                  f"largest deviation from the line {100 * worst:.1f} %")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", default="3,10,60", help="mix lengths in minutes, comma-separated")
    parser.add_argument("--rate", type=int, default=48000, help="sample rate of the mixes, Hz")
    parser.add_argument("--timeout-s", type=float, default=None, help="stop a job after this many seconds")
    parser.add_argument("--keep", action="store_true", help="keep the mixes and run folders (path printed)")
    parser.add_argument("--stages", action="store_true", help="print each run's peak memory after each progress line")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every run (e.g. trainer=gpu)")
    args = parser.parse_args()
    try:
        lengths = sorted(float(m) for m in args.minutes.split(",") if m.strip())
    except ValueError:
        lengths = []
    if not lengths or any(not m > 0 for m in lengths):
        parser.exit(
            2, f"long_mix_bench.py: --minutes takes positive numbers separated by commas, got {args.minutes!r}\n"
        )
    memory = machine_memory_bytes()
    print(f"continuous mixes, {args.rate} Hz stereo float WAV; overrides: {' '.join(args.overrides) or '-'}; "
          f"machine memory {gib(memory)} GiB")  # fmt: skip
    print(f"{'minutes':>8}{'mix s':>7}{'file GiB':>9}{'wall s':>9}{'job s':>8}{'RSS GiB':>9}{'CUDA GiB':>9}  timing_s")
    workdir = Path(tempfile.mkdtemp(prefix="long_mix_"))
    rows = []
    try:
        for minutes in lengths:
            folder = workdir / f"{minutes:g}min"
            folder.mkdir()
            mix = folder / f"mix{minutes:g}min.wav"
            clock = time.perf_counter()
            write_mix(mix, minutes, args.rate)
            made_s = time.perf_counter() - clock
            done = train_run.train(["data=file", f"data.path={mix}", *args.overrides], folder / "run", args.timeout_s)
            ok = done.returncode == 0 and done.metrics is not None
            timing = (done.metrics or {}).get("timing_s", {})
            print(
                f"{minutes:>8g}{made_s:>7.1f}{gib(mix.stat().st_size):>9}{done.wall_s:>9.1f}"
                f"{(done.job_s() or float('nan')):>8.1f}{gib(done.max_rss_bytes):>9}{gib(done.cuda_peak_bytes):>9}  "
                + (", ".join(f"{k} {v:.1f}" for k, v in timing.items()) if ok else f"FAILED ({done.returncode})"),
                flush=True,
            )
            if not ok:
                print(done.tail(20))
            if args.stages:
                print_stages(done.stage_peaks, mix.stat().st_size)
            rows.append(
                {"minutes": minutes, "ok": ok, "wall_s": done.wall_s, "job_s": done.job_s(), "rss": done.max_rss_bytes}
            )
            if not args.keep:
                shutil.rmtree(folder)
        report(rows)
        if memory is not None and rows:
            peak = max(r["rss"] for r in rows)
            print(f"largest peak resident memory {gib(peak)} GiB of the machine's {gib(memory)} GiB")
    finally:
        if args.keep:
            print(f"kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
