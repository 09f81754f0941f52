"""A simple model of simultaneous and forward masking: critical bands, the threshold in quiet, spreading.

The pieces a noise-to-mask ratio needs (the FFT ear model of PEAQ, ITU-R BS.1387, after Zwicker, Terhardt and
Schroeder), reduced to what works on short-time power spectra:

- **Critical bands.** The Bark scale of Zwicker and Terhardt (1980), ``z(f) = 13 atan(0.00076 f) +
  3.5 atan((f / 7500)^2)``. FFT bins are grouped into bands ``band_bark`` wide (0.5 Bark: about 50 bands up to
  22 kHz), each bin in the band its centre frequency falls into, DC with the lowest; a band's frequency and
  rate are the means over its bins.
- **Threshold in quiet** (Terhardt 1979), in dB SPL: ``3.64 (f/kHz)^-0.8 - 6.5 exp(-0.6 (f/kHz - 3.3)^2) +
  1e-3 (f/kHz)^4``, at each band's frequency, as the band power a sound needs to be heard at all. It rises
  steeply below 100 Hz and above 15 kHz, so residual there counts only when it is loud.
- **Spreading.** A masker in band j masks band i with ``27 dB/Bark`` of attenuation towards lower bands and
  ``24 + 230 Hz / f_j - 0.2 L`` dB/Bark towards higher ones (Terhardt's upper slope, at least 4 dB/Bark), taken
  at a masker level ``L`` of 60 dB SPL: loud bass and mids mask the upper harmonics they create.
- **Offset.** The masking threshold lies below the spread excitation by 3 dB up to 12 Bark and by ``0.25 z`` dB
  above (PEAQ's offsets for noise masking).
- **Forward masking.** A masker keeps masking after it stops: each frame's threshold is at least the thresholds
  of the frames before it, decaying with ``tau(f) = 8 ms + 22 ms * 100 Hz / f`` (PEAQ's time spreading: 30 ms
  at 100 Hz, towards 8 ms at high frequencies).

All of it works on band powers ``(..., frames, bands)`` with tensor operations, on any device.
"""

from __future__ import annotations

import math

import torch

#: Width of one analysis band, in Bark.
BAND_BARK = 0.5
#: Attenuation of the spread excitation towards lower bands, dB per Bark.
LOWER_SLOPE_DB = 27.0
#: The masker level the upper slope is taken at, dB SPL, and the slope's floor, dB per Bark.
SPREAD_LEVEL_DB, MIN_UPPER_SLOPE_DB = 60.0, 4.0
#: Forward masking: tau(f) = TAU_MIN_S + (TAU_100_S - TAU_MIN_S) * 100 Hz / f, over at most this many frames.
TAU_MIN_S, TAU_100_S, FORWARD_FRAMES = 0.008, 0.030, 8


def bark(frequency_hz: torch.Tensor) -> torch.Tensor:
    """Critical-band rate in Bark of frequencies in Hz (Zwicker and Terhardt 1980)."""
    return 13.0 * torch.atan(0.00076 * frequency_hz) + 3.5 * torch.atan((frequency_hz / 7500.0) ** 2)


def threshold_in_quiet_db(frequency_hz: torch.Tensor) -> torch.Tensor:
    """The absolute threshold of hearing in dB SPL (Terhardt 1979); frequencies under 20 Hz read as 20 Hz."""
    khz = frequency_hz.clamp_min(20.0) / 1000.0
    return 3.64 * khz**-0.8 - 6.5 * torch.exp(-0.6 * (khz - 3.3) ** 2) + 1e-3 * khz**4


class Bands:
    """The critical bands of an ``n_fft``-point rfft at ``sample_rate`` (float64, on ``device``):

    - ``grouping`` ``(bins, bands)``: 1 where a bin belongs to a band;
    - ``hz``, ``bark``: each band's frequency and rate (means over its bins);
    - ``spreading`` ``(bands, bands)``: the spreading function times the masking offset, masker j to band i,
      so that ``threshold = excitation @ spreading.T``;
    - ``quiet``: the threshold in quiet per band, as a power in SPL units (re 20 uPa squared).
    """

    def __init__(self, sample_rate: int, n_fft: int, band_bark: float = BAND_BARK, device=None) -> None:
        frequency = torch.arange(n_fft // 2 + 1, dtype=torch.float64, device=device) * sample_rate / n_fft
        index = torch.floor(bark(frequency) / band_bark).long()
        index[0] = index[1]  # DC joins the lowest band
        _, band = torch.unique(index, return_inverse=True)
        self.grouping = torch.nn.functional.one_hot(band).to(torch.float64)
        bins = self.grouping.sum(dim=0)
        self.hz = (frequency @ self.grouping) / bins
        self.bark = (bark(frequency) @ self.grouping) / bins
        distance = self.bark[:, None] - self.bark[None, :]  # (maskee i, masker j), Bark
        upper = (24.0 + 230.0 / self.hz - 0.2 * SPREAD_LEVEL_DB).clamp_min(MIN_UPPER_SLOPE_DB)
        attenuation_db = LOWER_SLOPE_DB * distance.clamp_max(0.0) - upper[None, :] * distance.clamp_min(0.0)
        offset_db = torch.where(self.bark <= 12.0, torch.full_like(self.bark, 3.0), 0.25 * self.bark)
        self.spreading = torch.pow(10.0, (attenuation_db - offset_db[:, None]) / 10.0)
        self.quiet = torch.pow(10.0, threshold_in_quiet_db(self.hz) / 10.0)

    @property
    def count(self) -> int:
        return self.grouping.shape[1]


def forward_masking(threshold: torch.Tensor, bands: Bands, hop_s: float) -> torch.Tensor:
    """``threshold`` ``(..., frames, bands)`` raised to the decaying thresholds of the frames before it:
    ``max_m threshold[k - m] a^m`` for ``m <= FORWARD_FRAMES``, ``a = exp(-hop_s / tau(f))`` per band."""
    tau = TAU_MIN_S + (TAU_100_S - TAU_MIN_S) * 100.0 / bands.hz
    decay = torch.exp(-hop_s / tau).to(threshold.dtype)
    out = previous = threshold
    for _ in range(min(FORWARD_FRAMES, threshold.shape[-2] - 1)):
        previous = torch.nn.functional.pad(previous[..., :-1, :], (0, 0, 1, 0)) * decay
        out = torch.maximum(out, previous)
    return out


def masking_threshold(excitation: torch.Tensor, bands: Bands, hop_s: float) -> torch.Tensor:
    """The masking threshold ``(..., frames, bands)`` of band powers ``excitation`` in SPL units: spread across
    bands, lowered by the offset, held by forward masking, plus the threshold in quiet."""
    spread = excitation @ bands.spreading.to(excitation.dtype).transpose(0, 1)
    return forward_masking(spread, bands, hop_s) + bands.quiet.to(excitation.dtype)


def fft_length(sample_rate: int, frame_s: float = 0.0213) -> int:
    """A power of two near ``frame_s`` seconds: 1024 samples at 44.1 and 48 kHz (about 21 ms)."""
    return 2 ** max(6, round(math.log2(frame_s * sample_rate)))
