"""Writing the processed audio: 32-bit float, or 24-/16-bit PCM with TPDF dither kept under the true-peak ceiling.

Quantisation with TPDF dither: the sum of two independent uniform variables of one LSB each (a triangular
density over -1..+1 LSB) is added before rounding, which makes the mean and the power of the total error
(dither plus rounding, within -1.5..+1.5 LSB, variance LSB^2 / 4) independent of the signal: no distortion,
a constant noise floor (-101 dBFS RMS at 16 bit, -149 dBFS at 24 bit). Codes are written as integers scaled
by 2^(bits - 1), so a reader that divides by 2^(bits - 1) (soundfile, libsndfile) gets exactly what was
measured.

The dither adds up to 1.5 LSB to every sample, so a render that sits at its true-peak ceiling can end above it
(at 16 bit, 1.5 LSB is 0.0005 dB at -1 dBFS). Instead of reserving a fixed headroom for every file, the true
peak of the quantised signal is measured (:func:`drl.true_peak`) and, only when it is above the ceiling, the
signal is lowered by the excess plus 2 LSB and quantised again with the same dither; the trim (0 dB almost
always, a few thousandths of a dB otherwise) is reported.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

import drl

#: output.format -> (libsndfile subtype, bits; None for float).
FORMATS = {"float32": ("FLOAT", None), "pcm24": ("PCM_24", 24), "pcm16": ("PCM_16", 16)}
#: Quantisations tried before giving up on the ceiling (the first trim nearly always suffices).
MAX_TRIMS = 4


def check_format(fmt: str) -> str:
    """``fmt`` if it is one of :data:`FORMATS`, else ValueError naming the choices."""
    if fmt not in FORMATS:
        raise ValueError(f"output format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    return fmt


def tpdf_quantise(audio: np.ndarray, bits: int, seed: int) -> np.ndarray:
    """Integer codes (int64, same shape as ``audio``, full scale 2^(bits-1)) of ``audio`` in [-1, 1] with TPDF
    dither from a generator seeded by ``seed`` (the same seed, the same dither); clipped to the code range."""
    scale = 2.0 ** (bits - 1)
    rng = np.random.default_rng(seed)
    dither = rng.random(audio.shape)
    dither -= rng.random(audio.shape)  # triangular on (-1, 1) LSB
    codes = audio * scale  # floor(audio * scale + dither + 0.5) in place: two signal-sized buffers, not five
    codes += dither
    del dither
    codes += 0.5
    np.floor(codes, out=codes)
    return np.clip(codes, -scale, scale - 1, out=codes).astype(np.int64)


def write_audio(
    path: str | Path,
    audio: torch.Tensor,
    sample_rate: int,
    fmt: str = "float32",
    ceiling_dbtp: float | None = None,
    seed: int = 0,
    true_peak_dbtp: float | None = None,
) -> dict:
    """Write ``audio`` (C, T) to a new file ``path`` (ValueError if it exists) as ``fmt`` (see :data:`FORMATS`).

    For PCM the true peak of the written signal stays at most ``ceiling_dbtp`` (dBTP) when the render's did
    (see the module docstring). ``true_peak_dbtp``: the render's, when measured already; a float32 file holds
    float32 ``audio``'s very samples, so it is the file's then. Returns what was written: ``format``,
    ``subtype``, ``dither`` ("tpdf" or None), ``dither_seed``, ``trim_db`` (the gain applied before quantising,
    <= 0) and the file's ``true_peak_dbtp``.
    """
    path = Path(path)
    subtype, bits = FORMATS[check_format(fmt)]
    if path.exists():
        raise ValueError(f"refusing to overwrite {path}: choose another output file or folder")
    info = {"format": fmt, "subtype": subtype, "dither": None, "dither_seed": None, "trim_db": 0.0}
    if bits is None:
        written = audio.detach().cpu().float().numpy()
    else:
        data = audio.detach().cpu().double()
        lsb = 2.0 ** (1 - bits)
        trim_db = 0.0
        for _ in range(MAX_TRIMS):
            codes = tpdf_quantise(data.numpy() * 10 ** (trim_db / 20), bits, seed)
            decoded = torch.from_numpy(codes / 2.0 ** (bits - 1))
            peak = float(drl.true_peak(decoded, sample_rate).amax())
            if ceiling_dbtp is None or peak <= ceiling_dbtp:
                break
            ceiling = 10 ** (ceiling_dbtp / 20)
            trim_db -= peak - ceiling_dbtp + 20 * math.log10(ceiling / (ceiling - 2 * lsb))
        else:
            raise ValueError(
                f"{path.name}: the true peak stays {peak - ceiling_dbtp:.4f} dB above the {ceiling_dbtp:g} dBTP "
                f"ceiling after {MAX_TRIMS} quantisations at {bits} bit"
            )
        written = (codes << (32 - bits)).astype(np.int32) if bits == 24 else codes.astype(np.int16)
        info.update(dither="tpdf", dither_seed=int(seed), trim_db=trim_db)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), written.T, sample_rate, subtype=subtype)
    if bits is None and true_peak_dbtp is not None and audio.dtype == torch.float32:
        info["true_peak_dbtp"] = float(true_peak_dbtp)
        return info
    if bits is None:
        decoded = torch.from_numpy(written.astype(np.float64))
    info["true_peak_dbtp"] = float(drl.true_peak(decoded, sample_rate).amax())
    return info
