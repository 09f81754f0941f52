"""Real music for the benchmarks, fetched at benchmark time (never committed), and the quality check on it.

`python bench/music.py [N] [SECONDS] [overrides]` downloads a Debian package of freely licensed game music
(warzone2100-music, else hyperrogue-music) into the git-ignored bench/_music/, unpacks it, cuts N excerpts
of SECONDS (default 2 x 30 s) at 44.1 kHz from the loudest part of different tracks, tunes the default chain
on each with `train.py` to the streaming target, and prints loudness, true peak, and the tuned NMR and DRL beside
the gain + limiter baseline's.

`unpack()`, `fetch()`, `excerpt()` and `tune()` serve bench/tune_bench.py and bench/perceptual_study.py.
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


def unpack(package: str) -> Path:
    """The files of a Debian ``package``, downloaded (apt-get download) and unpacked into bench/_music/<package>/
    on first use. Raises SystemExit when it cannot be downloaded."""
    target = MUSIC / package
    if not target.exists():
        MUSIC.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["apt-get", "download", package], cwd=MUSIC, capture_output=True, text=True)
        debs = sorted(MUSIC.glob(f"{package}_*.deb"))
        if done.returncode != 0 or not debs:
            raise SystemExit(f"could not download {package} with apt-get download: {done.stderr.strip()}")
        subprocess.run(["dpkg", "-x", str(debs[-1]), str(target)], check=True)
    return target


def fetch() -> list[Path]:
    """Audio files of the first of PACKAGES that downloads (cached in bench/_music/), longest first."""
    for package in PACKAGES:
        try:
            unpacked = unpack(package)
            break
        except SystemExit:
            continue
    else:
        raise SystemExit(f"could not download any of {', '.join(PACKAGES)} with apt-get download")
    files = [p for p in unpacked.rglob("*") if p.suffix.lower() in EXTENSIONS]
    if not files:
        raise SystemExit(f"no audio files in {unpacked}")
    return sorted(files, key=lambda p: -sf.info(str(p)).duration)


def excerpt(path: Path, seconds: float, sample_rate: int = 44_100, out: Path | None = None) -> Path:
    """The loudest ``seconds`` of ``path`` (1 s grid), resampled to ``sample_rate``, as a wav (``out``, by
    default in bench/_music/)."""
    out = out or MUSIC / f"{path.stem}_{int(seconds)}s_{sample_rate}.wav"
    if out.exists():
        return out
    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    length = int(seconds * rate)
    if data.shape[0] < length:
        raise SystemExit(f"{path.name} is shorter than {seconds} s")
    energy = np.concatenate([[0.0], np.cumsum(np.square(data, dtype=np.float64).sum(axis=1))])
    starts = np.arange(0, data.shape[0] - length + 1, rate)
    start = int(starts[np.argmax(energy[starts + length] - energy[starts])])
    part = data[start : start + length]
    if rate != sample_rate:
        from scipy.signal import resample_poly

        g = gcd(rate, sample_rate)
        part = resample_poly(part, sample_rate // g, rate // g, axis=0).astype(np.float32)
    out.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(out), part, sample_rate, subtype="FLOAT")
    return out


def tune(path: Path, run_dir: Path, *overrides: str) -> dict:
    """Run train.py on ``path``; return its metrics.json."""
    command = [sys.executable, "train.py", "data=file", f"data.path={path}", f"hydra.run.dir={run_dir}", *overrides]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"train.py failed on {path.name}:\n{done.stderr[-2000:]}")
    return json.loads((run_dir / "metrics.json").read_text())


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 30.0
    overrides = sys.argv[3:]
    files = fetch()[:count]
    print(f"{'track':<28}{'LUFS':>8}{'dBTP':>8}{'NMR':>8}{'baseline':>10}{'DRL':>8}{'baseline':>10}  on target")
    for path in files:
        clip = excerpt(path, seconds)
        metrics = tune(clip, MUSIC / "runs" / f"{clip.stem}_{time.strftime('%Y%m%d-%H%M%S')}", *overrides)
        out = metrics["output"]
        print(
            f"{clip.stem:<28}{out['integrated_lufs']:8.2f}{out['true_peak_dbtp']:8.2f}{out['nmr_db']:8.2f}"
            f"{metrics['baseline']['nmr_db']:10.2f}{out['drl_db']:8.2f}{metrics['baseline_drl_db']:10.2f}  "
            f"{metrics['on_target']}"
        )
    print(
        "NMR and DRL in dB (lower is more transparent); baseline: the best gain + limiter of the grid. The "
        "established limiters and the perceptual referee: bench/perceptual_study.py, bench/peers.py"
    )


if __name__ == "__main__":
    main()
