"""ITU-R BS.1770-4 loudness: K-weighting, 400 ms blocks, gating; momentary, short-term, integrated, LRA.

All meters take audio ``(T,)`` (mono), ``(C, T)`` or ``(B, C, T)`` in [-1, 1] and a sample rate in Hz. The
K-weighting and the 100 ms sums of squares run in the audio's precision (float32 audio: errors near 1e-6 LU;
float64: 1e-12 LU), the window energies and gating in float64; results come back in the audio's dtype.
Channel weights default to 1, 1, 1, 1.41, 1.41 for L, R, C, Ls, Rs (leave out the LFE channel).

Blocks are complete windows only (400 ms for momentary and integrated, 3 s for short-term), started every
100 ms at sample ``floor(j * sample_rate / 10 + 1/2)``; a partial final window is dropped. Integrated loudness keeps
blocks above -70 LUFS and then above (energy mean of those) - 10 LU; the gate decides which blocks count
without a gradient, the gated mean itself is differentiable. When no block passes, the result is ``-inf``
with a zero gradient. Windows quieter than -200 LUFS (digital silence) read ``-inf``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from drl.checks import check_audio, check_sample_rate, to_batch_channels_time
from drl.fft import records_gradient
from drl.filtering import SOSFilter
from drl.peak import sample_peak, true_peak

#: The standard's K-weighting coefficients at 48 kHz, rows [b0, b1, b2, a0, a1, a2].
K_WEIGHTING_48K = np.array(
    [
        [1.53512485958697, -2.69169618940638, 1.19839281085285, 1.0, -1.69065929318241, 0.73248077421585],
        [1.0, -2.0, 1.0, 1.0, -1.99004745483398, 0.99007225036621],
    ]
)

#: Default channel weights in the order L, R, C, Ls, Rs.
DEFAULT_CHANNEL_WEIGHTS = (1.0, 1.0, 1.0, 1.41, 1.41)

LUFS_OFFSET = -0.691
BLOCK_S = 0.4
SHORT_TERM_S = 3.0
HOPS_PER_SECOND = 10  # windows start every 100 ms
ABSOLUTE_GATE_LUFS = -70.0
RELATIVE_GATE_LU = -10.0
LRA_RELATIVE_GATE_LU = -20.0
LRA_PERCENTILES = (0.10, 0.95)
#: Window energies at or below this (-200.7 LUFS) read as silence (-inf). Digital silence filtered by FFT
#: leaves rounding noise instead of exact zeros: near -320 dB in float64 (so it reads -inf), about -150 dB
#: below the loudest audio within a few seconds in float32 (so it reads a very low finite value).
SILENCE_ENERGY = 1e-20

# Analog prototypes of the two stages (reproduce the 48 kHz table to 1e-15 by the bilinear transform).
_SHELF_HZ, _SHELF_GAIN_DB, _SHELF_Q, _SHELF_VB_EXPONENT = (
    1681.974450955533,
    3.999843853973347,
    0.7071752369554196,
    0.4996667741545416,
)
_HIGHPASS_HZ, _HIGHPASS_Q = 38.13547087602444, 0.5003270373238773


def k_weighting_sos(sample_rate: int) -> np.ndarray:
    """K-weighting as two biquads ``(2, 6)`` float64: the standard's table at 48 kHz, else the prototypes."""
    sample_rate = check_sample_rate(sample_rate)
    if sample_rate == 48_000:
        return K_WEIGHTING_48K.copy()
    return bilinear_k_weighting(sample_rate)


def bilinear_k_weighting(sample_rate: int) -> np.ndarray:
    """K-weighting ``(2, 6)`` by the bilinear transform (pre-warped) of the two analog prototypes."""
    k = math.tan(math.pi * _SHELF_HZ / sample_rate)
    vh = 10.0 ** (_SHELF_GAIN_DB / 20.0)
    vb = vh**_SHELF_VB_EXPONENT
    d = 1.0 + k / _SHELF_Q + k * k
    shelf = [
        (vh + vb * k / _SHELF_Q + k * k) / d,
        2.0 * (k * k - vh) / d,
        (vh - vb * k / _SHELF_Q + k * k) / d,
        1.0,
        2.0 * (k * k - 1.0) / d,
        (1.0 - k / _SHELF_Q + k * k) / d,
    ]
    k = math.tan(math.pi * _HIGHPASS_HZ / sample_rate)
    d = 1.0 + k / _HIGHPASS_Q + k * k
    # b = [1, -2, 1] unnormalised: its +0.0433 dB passband gain is part of the standard
    highpass = [1.0, -2.0, 1.0, 1.0, 2.0 * (k * k - 1.0) / d, (1.0 - k / _HIGHPASS_Q + k * k) / d]
    return np.array([shelf, highpass])


def channel_weights_tensor(n_channels: int, channel_weights=None) -> torch.Tensor:
    """Channel weights as a float64 tensor ``(n_channels,)``; defaults for up to 5 channels."""
    if channel_weights is None:
        if n_channels > len(DEFAULT_CHANNEL_WEIGHTS):
            raise ValueError(
                f"audio has {n_channels} channels; pass channel_weights explicitly for more than "
                f"{len(DEFAULT_CHANNEL_WEIGHTS)} (order L, R, C, Ls, Rs has weights {DEFAULT_CHANNEL_WEIGHTS}; "
                "give the LFE channel weight 0)"
            )
        return torch.tensor(DEFAULT_CHANNEL_WEIGHTS[:n_channels], dtype=torch.float64)
    if isinstance(channel_weights, torch.Tensor):
        weights = channel_weights.detach().to(dtype=torch.float64, device="cpu").reshape(-1)
    else:
        try:
            weights = torch.tensor([float(w) for w in channel_weights], dtype=torch.float64)
        except (TypeError, ValueError):
            raise ValueError(f"channel_weights must be a sequence of numbers, got {channel_weights!r}") from None
    if weights.numel() != n_channels:
        raise ValueError(f"channel_weights has {weights.numel()} values for audio with {n_channels} channels")
    if not bool(torch.isfinite(weights).all()) or bool((weights < 0).any()) or not bool((weights > 0).any()):
        raise ValueError(f"channel_weights must be finite, >= 0 and not all 0, got {weights.tolist()}")
    return weights


def window_starts(n_samples: int, window: int, sample_rate: int) -> torch.Tensor:
    """Start samples of the complete windows of ``window`` samples, one every 100 ms."""
    if n_samples < window:
        return torch.zeros(0, dtype=torch.long)
    last = (n_samples - window) * HOPS_PER_SECOND // sample_rate + 1
    j = torch.arange(last + 1, dtype=torch.long)
    starts = (2 * j * sample_rate + HOPS_PER_SECOND) // (2 * HOPS_PER_SECOND)  # j * fs / 10, halves up
    return starts[starts + window <= n_samples]


def window_energies(squared: torch.Tensor, window: int, sample_rate: int) -> torch.Tensor:
    """Mean of ``squared`` ``(..., T)`` over each complete window (one every 100 ms): float64 ``(..., n)``.

    100 ms segments are summed in ``squared``'s precision (pairwise), windows from them in float64.
    """
    n_samples = squared.shape[-1]
    starts = window_starts(n_samples, window, sample_rate)
    if starts.numel() == 0:
        return squared.new_zeros(*squared.shape[:-1], 0, dtype=torch.float64)
    hop = sample_rate // HOPS_PER_SECOND
    if sample_rate % HOPS_PER_SECOND == 0 and window % hop == 0:
        # exact: sum 100 ms segments, then add the segments of each window
        per_window = window // hop
        n_segments = starts.numel() - 1 + per_window
        segments = squared[..., : n_segments * hop].reshape(*squared.shape[:-1], n_segments, hop)
        segments = segments.sum(-1).to(torch.float64)  # pairwise sums: float32 errs by ~2e-7 (1e-6 dB)
        sums = segments.unfold(-1, per_window, 1).sum(-1)
    else:
        cumulative = nn.functional.pad(torch.cumsum(squared, dim=-1, dtype=torch.float64), (1, 0))
        starts = starts.to(squared.device)
        sums = cumulative[..., starts + window] - cumulative[..., starts]
    return sums / window


def energy_to_lufs(energy: torch.Tensor) -> torch.Tensor:
    """``-0.691 + 10 log10(energy)``; ``-inf`` (zero gradient) at or below :data:`SILENCE_ENERGY`."""
    positive = energy > SILENCE_ENERGY
    safe = torch.where(positive, energy, torch.ones_like(energy))
    return torch.where(positive, LUFS_OFFSET + 10.0 * torch.log10(safe), torch.full_like(energy, -math.inf))


def _gated(energy: torch.Tensor, level: torch.Tensor, relative_gate_lu: float) -> torch.Tensor:
    """Which windows ``(..., n)`` pass the absolute gate and the relative one, ``relative_gate_lu`` below the
    energy mean of those above the absolute gate (``level`` is ``energy`` in LUFS). No gradient."""
    with torch.no_grad():
        absolute = level > ABSOLUTE_GATE_LUFS
        mean_absolute = (energy * absolute).sum(-1) / absolute.sum(-1).clamp_min(1)
        threshold = energy_to_lufs(mean_absolute) + relative_gate_lu
        return absolute & (level > threshold[..., None])


def gated_mean_lufs(energy: torch.Tensor, relative_gate_lu: float = RELATIVE_GATE_LU) -> torch.Tensor:
    """Integrated loudness from weighted block energies ``(..., n_blocks)`` with BS.1770 gating: ``(...)``."""
    with torch.no_grad():
        passed = _gated(energy, energy_to_lufs(energy), relative_gate_lu)
        count = passed.sum(-1)
    mean = (energy * passed).sum(-1) / count.clamp_min(1)
    return torch.where(count > 0, energy_to_lufs(mean), torch.full_like(mean, -math.inf))


def gated_range_lu(energy: torch.Tensor) -> torch.Tensor:
    """EBU Tech 3342 loudness range ``(B,)`` in LU of short-term energies ``(B, n_windows)``: the 95th minus the
    10th percentile of the windows above -70 LUFS and above (their energy mean) - 20 LU; 0 when none passes."""
    level = energy_to_lufs(energy)
    passed = _gated(energy, level, LRA_RELATIVE_GATE_LU)
    quantiles = torch.tensor(LRA_PERCENTILES, dtype=level.dtype, device=level.device)
    ranges = []
    for row, keep in zip(level, passed):  # one item of the batch at a time: the kept counts differ
        kept = row[keep]
        if kept.numel() == 0:
            ranges.append(row.new_zeros(()))
        else:
            low, high = torch.quantile(kept, quantiles)
            ranges.append(high - low)
    return torch.stack(ranges)


class Loudness(nn.Module):
    """BS.1770-4 meter for one sample rate; the K-weighting filter is built once.

    ``forward(audio)`` is the integrated loudness in LUFS: a scalar for ``(T,)`` and ``(C, T)`` audio,
    ``(B,)`` for ``(B, C, T)``. :meth:`momentary`, :meth:`short_term` and :meth:`loudness_range` give the
    other measures.
    """

    def __init__(self, sample_rate: int, channel_weights=None, k_filter: SOSFilter | None = None) -> None:
        """``k_filter``: this rate's K-weighting filter to share with another meter (built when None)."""
        super().__init__()
        self.sample_rate = check_sample_rate(sample_rate)
        if channel_weights is not None:
            try:
                n_weights = len(channel_weights)
            except TypeError:
                raise ValueError(f"channel_weights must be a sequence of numbers, got {channel_weights!r}") from None
            channel_weights = channel_weights_tensor(n_weights, channel_weights)
        self.channel_weights = channel_weights
        self.k_filter = SOSFilter(k_weighting_sos(self.sample_rate)) if k_filter is None else k_filter
        self.block = round(BLOCK_S * self.sample_rate)
        self.short_term_window = round(SHORT_TERM_S * self.sample_rate)

    def weighted_energies(self, audio: torch.Tensor, window: int) -> torch.Tensor:
        """Channel-weighted mean squares of the K-weighted audio per window: ``(B, n_windows)`` float64.

        ``audio`` must already have passed :func:`check_audio`.
        """
        return self._windowed(self._weighted_squares(audio), window)

    def _weighted_squares(self, audio: torch.Tensor) -> torch.Tensor:
        """The squared K-weighted audio, ``(B, C, T)``, for :meth:`_windowed` (checked ``audio``); squared in
        place when no gradient is recorded (one copy of the audio instead of two)."""
        filtered = self.k_filter(to_batch_channels_time(audio))
        return filtered * filtered if records_gradient(filtered) else filtered.mul_(filtered)

    def _windowed(self, squares: torch.Tensor, window: int) -> torch.Tensor:
        """Channel-weighted means of ``squares (B, C, T)`` per window: ``(B, n_windows)`` float64."""
        weights = channel_weights_tensor(squares.shape[1], self.channel_weights).to(squares.device)
        energies = window_energies(squares, window, self.sample_rate)  # (B, C, n) float64
        return torch.einsum("bcn,c->bn", energies, weights)

    def _finish(self, value: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        value = value.to(audio.dtype if audio.dtype in (torch.float32, torch.float64) else torch.float32)
        return value if audio.ndim == 3 else value[0]

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """Integrated loudness in LUFS (BS.1770-4, gated) of ``audio`` ``(T,)``, ``(C, T)`` or ``(B, C, T)`` at
        this rate, at least one 400 ms block long: a scalar, or ``(B,)``. Differentiable."""
        audio = check_audio(audio)
        if audio.shape[-1] < self.block:
            raise ValueError(
                f"audio is shorter than one 400 ms block ({audio.shape[-1]} samples, need {self.block} "
                f"at {self.sample_rate} Hz): integrated loudness is undefined"
            )
        return self._finish(gated_mean_lufs(self.weighted_energies(audio, self.block)), audio)

    def momentary(self, audio: torch.Tensor) -> torch.Tensor:
        """Ungated 400 ms loudness every 100 ms in LUFS: ``(..., n_windows)``; empty under 400 ms."""
        audio = check_audio(audio)
        return self._finish(energy_to_lufs(self.weighted_energies(audio, self.block)), audio)

    def short_term(self, audio: torch.Tensor) -> torch.Tensor:
        """Ungated 3 s loudness every 100 ms in LUFS: ``(..., n_windows)``; empty under 3 s."""
        audio = check_audio(audio)
        return self._finish(energy_to_lufs(self.weighted_energies(audio, self.short_term_window)), audio)

    def loudness_range(self, audio: torch.Tensor) -> torch.Tensor:
        """EBU Tech 3342 loudness range in LU: scalar, or ``(B,)`` for ``(B, C, T)``; 0 when nothing passes.

        Short-term values above -70 LUFS and above (their energy mean) - 20 LU; LRA is the 95th minus the
        10th percentile of them (linear interpolation between ranks). Needs at least one 3 s window.
        """
        audio = check_audio(audio)
        if audio.shape[-1] < self.short_term_window:
            raise ValueError(
                f"audio is shorter than one 3 s short-term window ({audio.shape[-1]} samples, need "
                f"{self.short_term_window} at {self.sample_rate} Hz): loudness range is undefined"
            )
        return self._finish(gated_range_lu(self.weighted_energies(audio, self.short_term_window)), audio)


@functools.lru_cache(maxsize=4)
def _meter(sample_rate: int) -> Loudness:
    return Loudness(sample_rate)


def _meter_for(sample_rate: int, channel_weights) -> Loudness:
    sample_rate = check_sample_rate(sample_rate)
    if channel_weights is None:
        return _meter(sample_rate)  # cached, so its filter responses are reused between calls
    return Loudness(sample_rate, channel_weights, k_filter=_meter(sample_rate).k_filter)


def integrated_loudness(
    audio: torch.Tensor, sample_rate: int, channel_weights: Sequence[float] | torch.Tensor | None = None
) -> torch.Tensor:
    """Gated integrated loudness in LUFS: scalar for ``(T,)``/``(C, T)``, ``(B,)`` for ``(B, C, T)``.

    ``-inf`` (zero gradient) when no block passes the gates, e.g. silence. ValueError under 400 ms.
    """
    return _meter_for(sample_rate, channel_weights)(audio)


def momentary_loudness(
    audio: torch.Tensor, sample_rate: int, channel_weights: Sequence[float] | torch.Tensor | None = None
) -> torch.Tensor:
    """Ungated 400 ms loudness every 100 ms in LUFS: ``(..., n_windows)`` (empty under 400 ms)."""
    return _meter_for(sample_rate, channel_weights).momentary(audio)


def short_term_loudness(
    audio: torch.Tensor, sample_rate: int, channel_weights: Sequence[float] | torch.Tensor | None = None
) -> torch.Tensor:
    """Ungated 3 s loudness every 100 ms in LUFS: ``(..., n_windows)`` (empty under 3 s)."""
    return _meter_for(sample_rate, channel_weights).short_term(audio)


def loudness_range(
    audio: torch.Tensor, sample_rate: int, channel_weights: Sequence[float] | torch.Tensor | None = None
) -> torch.Tensor:
    """EBU Tech 3342 loudness range (LRA) in LU; 0 for silence; ValueError under 3 s."""
    return _meter_for(sample_rate, channel_weights).loudness_range(audio)


@dataclass(frozen=True)
class LevelReading:
    """The linear quantities behind :func:`loudness_summary` of one ``(T,)`` or ``(C, T)`` signal: its
    channel-weighted block energies (400 ms and 3 s windows every 100 ms, float64; None when the signal is
    shorter than one window) and its true and sample peaks in dB. The K-weighting, the windows and the
    true-peak interpolation are linear, so the reading of the signal times a gain ``g`` is this one with the
    energies times ``g**2`` and the peaks plus ``g`` in dB: :meth:`summary` gives either, exactly."""

    block_energies: torch.Tensor | None
    short_term_energies: torch.Tensor | None
    true_peak_dbtp: float
    sample_peak_dbfs: float
    dtype: torch.dtype  # the signal's: the loudness values are rounded to it, as the meters return them

    def summary(self, gain_db: float = 0.0) -> dict:
        """:func:`loudness_summary` of the signal times ``gain_db`` (0: the signal itself)."""
        scale = 10.0 ** (float(gain_db) / 10.0)
        integrated = lra = None
        with torch.no_grad():
            if self.block_energies is not None:
                integrated = float(gated_mean_lufs(self.block_energies * scale).to(self.dtype))
            if self.short_term_energies is not None:
                lra = float(gated_range_lu(self.short_term_energies[None] * scale)[0].to(self.dtype))
        return {
            "integrated_lufs": integrated,
            "lra": lra,
            "true_peak_dbtp": self.true_peak_dbtp + float(gain_db),
            "sample_peak_dbfs": self.sample_peak_dbfs + float(gain_db),
        }


def read_levels(audio: torch.Tensor, sample_rate: int, channel_weights=None) -> LevelReading:
    """The :class:`LevelReading` of ``(T,)`` or ``(C, T)`` audio: the signal K-weighted once for both window
    lengths, its true peak (BS.1770-4 Annex 2) and sample peak. No gradient."""
    audio = check_audio(audio)
    if audio.ndim == 3:
        raise ValueError(f"loudness_summary and read_levels take (T,) or (C, T) audio, got shape {tuple(audio.shape)}")
    dtype = audio.dtype if audio.dtype in (torch.float32, torch.float64) else torch.float32
    with torch.no_grad():
        meter = _meter_for(sample_rate, channel_weights)
        squares = meter._weighted_squares(audio)  # K-weighted once for both window lengths
        blocks = meter._windowed(squares, meter.block)[0] if audio.shape[-1] >= meter.block else None
        short = None
        if audio.shape[-1] >= meter.short_term_window:
            short = meter._windowed(squares, meter.short_term_window)[0]
        del squares
        return LevelReading(
            blocks,
            short,
            float(true_peak(audio, sample_rate).max()),
            float(sample_peak(audio).max()),
            dtype,
        )


def loudness_summary(audio: torch.Tensor, sample_rate: int, channel_weights=None) -> dict:
    """Integrated loudness, LRA, true peak and sample peak of ``(T,)`` or ``(C, T)`` audio as floats.

    Keys ``integrated_lufs`` (``-inf`` when no block passes the gates, ``None`` under one 400 ms block),
    ``lra`` (``None`` under 3 s),
    ``true_peak_dbtp`` and ``sample_peak_dbfs`` (the maximum over channels; ``-inf`` for silence).
    """
    return read_levels(audio, sample_rate, channel_weights).summary()
