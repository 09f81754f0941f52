"""True peak (ITU-R BS.1770-4 Annex 2) and sample peak.

True peak oversamples each channel (4x below 96 kHz, 2x from 96 kHz, none from 192 kHz), takes the absolute
value and the maximum, in dBTP. The interpolation low-pass is a Kaiser-windowed sinc (beta 5, 16 input
samples each side, 129 taps at 4x) with its cut-off at the input Nyquist frequency. It is used instead of the
Annex's 48-tap example filter because:

- it has odd length, so its group delay is a whole number of output samples and removing it puts output
  index ``n * factor + p`` exactly at input time ``n + p / factor`` (the Annex filter's even length leaves a
  1/8-sample offset that no shift can remove);
- its phase 0 passes the input samples through unchanged, so the true peak is never below the sample peak;
- it interpolates a sine to within -47 dB (0.04 dB) up to 0.45 fs and -51 dB up to 0.4 fs; the Annex
  filter's phases have gains of -0.02 to +0.22 dB through the passband and -2.1 dB at 0.45 fs.
Each phase is scaled to unit DC gain. Samples outside the signal count as silence. The phases run as
overlap-save FFTs (frames of 8192 samples; differentiable through ``torch.fft``, on any device). Without a
gradient to record, the hard true peak and :func:`interpolated_peak` take the interpolated values block by
block (:func:`drl.fft.overlap_save_blocks`) and keep only their maxima, so their memory does not grow with
the oversampling factor: the same values as the whole signal at once.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from torch import nn

from drl.checks import check_audio, check_number, check_sample_rate
from drl.fft import overlap_save, overlap_save_blocks, records_gradient

_TAPS_PER_SIDE = 16
_KAISER_BETA = 5.0

#: Default log-sum-exp temperature of the smooth true peak, in dB (see :func:`true_peak`).
SMOOTH_TEMPERATURE_DB = 0.005


def oversampling_factor(sample_rate: int) -> int:
    """The BS.1770-4 oversampling factor: 4 below 96 kHz, 2 below 192 kHz, else 1."""
    sample_rate = check_sample_rate(sample_rate)
    if sample_rate < 96_000:
        return 4
    if sample_rate < 192_000:
        return 2
    return 1


def interpolation_phases(factor: int) -> np.ndarray:
    """Polyphase interpolation filter, float64 array of shape ``(factor, 2 * 16 + 1)``.

    Row ``p`` holds the weights of input samples ``x[n - 16], ..., x[n + 16]`` (in that order, ready for a
    cross-correlation) that give the value at time ``n + p / factor``.
    """
    if factor < 1:
        raise ValueError(f"factor must be >= 1, got {factor}")
    half = factor * _TAPS_PER_SIDE
    taps = np.arange(-half, half + 1)
    prototype = np.sinc(taps / factor) * np.kaiser(2 * half + 1, _KAISER_BETA)
    # weight of x[n - k] for output time n + p/factor is prototype(factor * k + p); here k = L..-L
    k = np.arange(_TAPS_PER_SIDE, -_TAPS_PER_SIDE - 1, -1)
    phases = np.empty((factor, k.size))
    for p in range(factor):
        index = factor * k + p + half
        inside = (index >= 0) & (index <= 2 * half)
        row = np.where(inside, prototype[np.clip(index, 0, 2 * half)], 0.0)
        phases[p] = row / row.sum()
    phases[0] = np.where(k == 0, 1.0, 0.0)  # sinc is exactly 0 at the other integers (np.sinc: ~1e-17)
    return phases


def true_peak_oversample(audio: torch.Tensor, sample_rate: int) -> tuple[torch.Tensor, int]:
    """Oversample ``audio`` as BS.1770-4 Annex 2 prescribes for true-peak metering.

    ``audio`` ``(T,)``, ``(C, T)`` or ``(B, C, T)`` float; returns the interpolated signal ``(..., T * factor)``
    and ``factor`` (4, 2 or 1). Index ``n * factor + p`` holds the signal at input time ``n + p / factor``
    (no delay); indices ``n * factor`` equal the input samples. Differentiable; on the audio's device and dtype.
    """
    audio = check_audio(audio)
    factor = oversampling_factor(sample_rate)
    if factor == 1:
        return audio, 1
    between = _between(audio, _phase_spectra(factor, audio.device, audio.dtype))
    out = torch.cat([audio.unsqueeze(-2), between], dim=-2)  # (..., factor, T)
    return out.transpose(-1, -2).reshape(*audio.shape[:-1], audio.shape[-1] * factor), factor


_FRAME = 8192  # overlap-save FFT size; the 33-tap phases overlap frames by only 32 samples


@functools.lru_cache(maxsize=8)
def _phase_spectra_cpu(factor: int) -> torch.Tensor:
    taps = torch.as_tensor(interpolation_phases(factor)[1:], dtype=torch.float64)
    return torch.fft.rfft(taps.flip(-1), n=_FRAME)  # a correlation is a convolution with the reversed taps


def _phase_spectra(factor: int, device, dtype) -> torch.Tensor:
    complex_dtype = torch.complex64 if dtype == torch.float32 else torch.complex128
    return _phase_spectra_cpu(factor).to(device=device, dtype=complex_dtype)


def _between(audio: torch.Tensor, spectra: torch.Tensor) -> torch.Tensor:
    """The interpolated values at ``n + p / factor`` for ``p >= 1``: ``(..., factor - 1, T)``.

    The correlations of ``x[n - 16] .. x[n + 16]`` with each phase's taps, by overlap-save: convolutions with the
    reversed taps, 16 samples late.
    """
    length = audio.shape[-1]
    delayed = overlap_save(audio, spectra, _FRAME, 2 * _TAPS_PER_SIDE, length + _TAPS_PER_SIDE)
    return delayed[..., _TAPS_PER_SIDE : _TAPS_PER_SIDE + length]


def _between_blocks(audio: torch.Tensor, spectra: torch.Tensor):
    """:func:`_between` block by block: ``(start, piece)`` pairs, ``piece`` ``(..., factor - 1, n)`` the values
    at input samples ``start .. start + n - 1``."""
    length = audio.shape[-1]
    blocks = overlap_save_blocks(audio, spectra, _FRAME, 2 * _TAPS_PER_SIDE, length + _TAPS_PER_SIDE)
    for start, piece in blocks:
        skip = max(0, _TAPS_PER_SIDE - start)
        if piece.shape[-1] > skip:
            yield start + skip - _TAPS_PER_SIDE, piece[..., skip:]


def interpolated_peak(audio: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """The largest magnitude at times ``n + p / factor``, ``p = 0 .. factor - 1`` (the oversampled points from
    each input sample up to the next): ``audio.shape``, at least ``|audio|``. ``audio`` ``(T,)``, ``(C, T)``
    or ``(B, C, T)`` float; differentiable (the gradient reaches the largest point, shared among equals)."""
    audio = check_audio(audio)
    factor = oversampling_factor(sample_rate)
    if factor == 1:
        return audio.abs()
    spectra = _phase_spectra(factor, audio.device, audio.dtype)
    if records_gradient(audio):
        return torch.cat([audio.abs().unsqueeze(-2), _between(audio, spectra).abs()], dim=-2).amax(dim=-2)
    peak = audio.abs()
    for start, piece in _between_blocks(audio, spectra):
        part = peak[..., start : start + piece.shape[-1]]
        torch.maximum(part, piece.abs().amax(dim=-2), out=part)
    return peak


def _amplitude_db(amplitude: torch.Tensor) -> torch.Tensor:
    """20 log10(amplitude), -inf (with zero gradient) where amplitude is 0."""
    positive = amplitude > 0
    safe = torch.where(positive, amplitude, torch.ones_like(amplitude))
    return torch.where(positive, 20.0 * torch.log10(safe), torch.full_like(amplitude, -math.inf))


def _peak_db(audio: torch.Tensor, between: torch.Tensor | None, smooth: bool, temperature_db: float):
    """Peak level over the input samples and the interpolated ``between`` ``(..., factor - 1, T)``."""
    parts = [audio.abs()] + ([] if between is None else [between.abs().flatten(-2)])
    hard = torch.stack([part.amax(dim=-1) for part in parts]).amax(dim=0)
    if not smooth:
        return _amplitude_db(hard)
    # log-sum-exp of the per-sample levels in dB; the floor keeps silent samples finite (zero gradient)
    sums = [torch.logsumexp(20.0 / temperature_db * torch.log10(part.clamp_min(1e-30)), dim=-1) for part in parts]
    soft = temperature_db * torch.logsumexp(torch.stack(sums), dim=0)
    return torch.where(hard > 0, soft, torch.full_like(soft, -math.inf))


def _check_temperature(temperature_db: float) -> float:
    return check_number("temperature_db", temperature_db, 0.0, unit="dB", low_open=True)


def true_peak(
    audio: torch.Tensor,
    sample_rate: int,
    *,
    smooth: bool = False,
    temperature_db: float = SMOOTH_TEMPERATURE_DB,
) -> torch.Tensor:
    """True peak in dBTP per channel: shape ``audio.shape[:-1]``; -inf for silence.

    ``smooth=False`` takes the hard maximum (gradient to the loudest interpolated sample). ``smooth=True``
    returns ``temperature_db * log(sum_i exp(level_i / temperature_db))`` over the interpolated sample
    levels in dB, which spreads the gradient over every sample within a few temperatures of the peak. Its
    value lies between the hard max and the hard max + ``temperature_db * ln(N)`` (N = T * factor samples):
    with the default 0.005 dB that is at most 0.1 dB for up to 4.8e8 samples (45 min at 44.1 kHz).
    """
    temperature_db = _check_temperature(temperature_db)
    audio = check_audio(audio)
    factor = oversampling_factor(sample_rate)
    if factor == 1:
        return _peak_db(audio, None, smooth, temperature_db)
    spectra = _phase_spectra(factor, audio.device, audio.dtype)
    if smooth or records_gradient(audio):
        return _peak_db(audio, _between(audio, spectra), smooth, temperature_db)
    hard = torch.zeros(audio.shape[:-1], dtype=audio.dtype, device=audio.device)
    for start, piece in _between_blocks(audio, spectra):
        hard = torch.maximum(hard, audio[..., start : start + piece.shape[-1]].abs().amax(dim=-1))
        hard = torch.maximum(hard, piece.abs().amax(dim=(-2, -1)))
    return _amplitude_db(hard)


def sample_peak(audio: torch.Tensor) -> torch.Tensor:
    """Largest absolute sample per channel in dBFS: shape ``audio.shape[:-1]``; -inf for silence."""
    audio = check_audio(audio)
    return _amplitude_db(audio.abs().amax(dim=-1))


class TruePeak(nn.Module):
    """True peak in dBTP as a module for one ``sample_rate``: ``forward(audio)`` -> ``audio.shape[:-1]``.

    ``smooth`` and ``temperature_db`` as in :func:`true_peak`.
    """

    def __init__(
        self, sample_rate: int, *, smooth: bool = False, temperature_db: float = SMOOTH_TEMPERATURE_DB
    ) -> None:
        """``sample_rate`` in Hz, a whole number in 8000..384000 (4x oversampling below 96 kHz, 2x below 192 kHz,
        none above); ``smooth``: a soft maximum; ``temperature_db`` > 0 dB, its softness (see
        :func:`true_peak`)."""
        super().__init__()
        self.sample_rate = check_sample_rate(sample_rate)
        self.factor = oversampling_factor(self.sample_rate)
        self.smooth = smooth
        self.temperature_db = _check_temperature(temperature_db)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """True peak in dBTP per channel of ``audio`` ``(T,)``, ``(C, T)`` or ``(B, C, T)``: shape
        ``audio.shape[:-1]``, -inf for silence."""
        return true_peak(audio, self.sample_rate, smooth=self.smooth, temperature_db=self.temperature_db)
