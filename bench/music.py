"""Real music for the benchmarks, fetched at benchmark time (never committed), and the quality check on it.

`python bench/music.py [N] [SECONDS]` downloads a Debian package of freely licensed game music
(warzone2100-music, else hyperrogue-music) into the git-ignored bench/_music/, unpacks it, cuts N excerpts
of SECONDS (default 2 x 30 s) at 44.1 kHz from the loudest part of different tracks, tunes the default chain
on each with `train.py` to the streaming target, and prints loudness, true peak, the tuned DRL and the
gain + limiter baseline's DRL side by side.

`fetch()` and `excerpt()` are used by bench/tune_bench.py too.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
MUSIC = ROOT / "bench" / "_music"
PACKAGES = ("warzone2100-music", "hyperrogue-music")
EXTENSIONS = (".opus", ".ogg", ".flac", ".wav", ".mp3")


def fetch() -> list[Path]:
    """Audio files of the first package that downloads (cached in bench/_music/), longest first."""
    MUSIC.mkdir(parents=True, exist_ok=True)
    unpacked = MUSIC / "unpacked"
    if not unpacked.exists():
        for package in PACKAGES:
            done = subprocess.run(["apt-get", "download", package], cwd=MUSIC, capture_output=True, text=True)
            debs = sorted(MUSIC.glob(f"{package}_*.deb"))
            if done.returncode == 0 and debs:
                subprocess.run(["dpkg", "-x", str(debs[0]), str(unpacked)], check=True)
                break
        else:
            raise SystemExit(f"could not download any of {', '.join(PACKAGES)} with apt-get download")
    files = [p for p in unpacked.rglob("*") if p.suffix.lower() in EXTENSIONS]
    if not files:
        raise SystemExit(f"no audio files in {unpacked}")
    return sorted(files, key=lambda p: -sf.info(str(p)).duration)


def excerpt(path: Path, seconds: float, sample_rate: int = 44_100) -> Path:
    """The loudest ``seconds`` of ``path`` (1 s grid), resampled to ``sample_rate``, as a wav in bench/_music/."""
    out = MUSIC / f"{path.stem}_{int(seconds)}s_{sample_rate}.wav"
    if out.exists():
        return out
    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    length = int(seconds * rate)
    if data.shape[0] < length:
        raise SystemExit(f"{path.name} is shorter than {seconds} s")
    energy = np.concatenate([[0.0], np.cumsum(np.square(data, dtype=np.float64).sum(axis=1))])
    starts = np.arange(0, data.shape[0] - length + 1, rate)
    start = int(starts[np.argmax(energy[starts + length] - energy[starts])])
    part = data[start:start + length]
    if rate != sample_rate:
        from scipy.signal import resample_poly

        g = gcd(rate, sample_rate)
        part = resample_poly(part, sample_rate // g, rate // g, axis=0).astype(np.float32)
    sf.write(str(out), part, sample_rate, subtype="FLOAT")
    return out


def tune(path: Path, run_dir: Path, *overrides: str) -> dict:
    """Run train.py on ``path``; return its metrics.json."""
    command = [sys.executable, "train.py", "data=file", f"data.path={path}", f"hydra.run.dir={run_dir}",
               *overrides]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"train.py failed on {path.name}:\n{done.stderr[-2000:]}")
    return json.loads((run_dir / "metrics.json").read_text())


def juce_limiter_drl(path: Path, lufs: float, ceiling_dbtp: float,
                     release_ms=(1.0, 3.0, 10.0, 30.0, 100.0)) -> tuple[float, float] | None:
    """The yardstick: pedalboard's Limiter (JUCE's dsp::Limiter, open source) at the same loudness and
    true-peak ceiling. Its drive (minus its threshold; it normalises its output peak to 0 dBFS) is solved so
    the output's peak-to-loudness ratio fits the target, then a gain sets the loudness exactly (DRL does not
    see a gain). Returns (best DRL in dB, its release in ms), or None without pedalboard."""
    try:
        import pedalboard
    except ImportError:
        return None
    import torch

    import drl
    from tuning.solve import find_gain

    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    audio = np.ascontiguousarray(data.T)
    reference = torch.from_numpy(audio)
    best = None
    for release in release_ms:
        rendered = {}

        def density(drive_db: float) -> float:
            out = torch.from_numpy(pedalboard.Limiter(threshold_db=-drive_db, release_ms=release)(audio, rate))
            level = float(drl.integrated_loudness(out, rate))
            peak = float(drl.true_peak(out, rate).amax())
            rendered[drive_db] = (out, level, peak)
            return level - peak  # minus the peak-to-loudness ratio: grows with the drive

        try:
            drive, _, _ = find_gain(density, lufs - ceiling_dbtp, 0.0, 0.0, 40.0, tol_lu=0.001)
        except ValueError:
            drive = 0.0  # already dense enough without limiting
            density(drive)
        out, level, peak = rendered[drive]
        out = out * 10 ** ((lufs - level) / 20)
        value = float(drl.drl_db(reference, out).mean())
        if best is None or value < best[0]:
            best = (value, release)
    return best


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 30.0
    overrides = sys.argv[3:]
    files = fetch()[:count]
    print(f"{'track':<28}{'LUFS':>8}{'dBTP':>8}{'DRL':>9}{'baseline':>10}{'gain':>7}{'JUCE lim.':>11}  on target")
    for path in files:
        clip = excerpt(path, seconds)
        metrics = tune(clip, MUSIC / "runs" / f"{clip.stem}_{time.strftime('%Y%m%d-%H%M%S')}", *overrides)
        out = metrics["output"]
        gain = metrics["baseline_drl_db"] - out["drl_db"]
        juce = juce_limiter_drl(clip, metrics["target"]["lufs"], metrics["target"]["ceiling_dbtp"])
        juce_text = "-" if juce is None else f"{juce[0]:.2f}"
        print(f"{clip.stem:<28}{out['integrated_lufs']:8.2f}{out['true_peak_dbtp']:8.2f}{out['drl_db']:9.2f}"
              f"{metrics['baseline_drl_db']:10.2f}{gain:7.2f}{juce_text:>11}  {metrics['on_target']}")
    print("DRL in dB (lower is more transparent); gain = baseline DRL - tuned DRL; JUCE lim. = pedalboard's "
          "Limiter (JUCE), drive solved and release searched, at the same loudness and true-peak ceiling")


if __name__ == "__main__":
    main()
