"""What lies below the audible band: a track's DC offset and the share of its energy below 20 Hz.

Real files carry both (offsets up to 0.4 of full scale, slow drifts holding most of a track's energy): they
take headroom from a limiter without being heard, and a measure of distortion that counts energy then mostly
measures what a processor does to them. The tuning jobs report both and remove them first when they matter.
"""

from __future__ import annotations

import torch

from drl.bands import band_energies, band_weights
from drl.checks import check_audio, check_number, check_sample_rate, energy

#: The upper edge of the infrasound band, in Hz.
INFRASOUND_HZ = 20.0


def dc_offset(audio: torch.Tensor) -> torch.Tensor:
    """The mean of each channel of ``audio`` ((T,), (C, T) or (B, C, T)): shape ``audio.shape[:-1]``, float64."""
    audio = check_audio(audio, "audio")
    rows = audio.reshape(-1, audio.shape[-1])  # one channel in float64 at a time
    return torch.stack([row.double().mean() for row in rows]).reshape(audio.shape[:-1])


def infrasound_share(audio: torch.Tensor, sample_rate: int, below_hz: float = INFRASOUND_HZ) -> torch.Tensor:
    """The share (0..1) of the energy of ``audio`` below ``below_hz`` (DC included), over all channels of each
    item: a scalar, or ``(B,)`` for ``(B, C, T)``. Exact brick-wall split of one FFT per channel, in float64
    (:mod:`drl.bands`)."""
    audio = check_audio(audio, "audio")
    sample_rate = check_sample_rate(sample_rate)
    check_number("below_hz", below_hz, 0.0, sample_rate / 2, unit="Hz", low_open=True, high_open=True)
    weights = band_weights(audio.shape[-1], sample_rate, [(0.0, below_hz)], dtype=torch.float64, device=audio.device)
    low, total = [], []
    for row in audio.reshape(-1, audio.shape[-1]):  # one channel in float64 at a time
        row = row.double()
        low.append(band_energies(row, weights)[0])
        total.append(energy(row))
    low, total = torch.stack(low).reshape(audio.shape[:-1]), torch.stack(total).reshape(audio.shape[:-1])
    dims = tuple(range(max(audio.ndim - 2, 0), audio.ndim - 1))  # the channel axis, if any
    if dims:
        low, total = low.sum(dim=dims), total.sum(dim=dims)
    return torch.where(total > 0, low / torch.where(total > 0, total, torch.ones_like(total)), 0.0)
