"""Exact frequency bands: brick-wall band energies from one real FFT (Parseval).

The signal's mean is taken out first; the rest, zero-padded to ``N = fft_length(T)`` samples (the smallest
5-smooth length at or above ``T``: ``T`` itself when it is, at most 25 % more, so that a length with a large
prime factor costs no more than a round one), goes through one ``N``-point rfft. Each rfft bin ``k`` owns the
cell ``[(k - 1/2) df, (k + 1/2) df]`` of the positive frequency axis, clipped to ``[0, fs/2]``
(``df = fs / N``). A band ``[low_hz, high_hz]`` takes the fraction of each cell it overlaps, counted twice for
the negative frequencies. The weights of the whole axis then read 1 for DC, 2 inside and 1 for the Nyquist
bin of an even ``N``, which is exactly Parseval's sum; the mean's energy ``T mean^2`` goes to bin 0 with its
weight. So bands that tile the axis add up to the total energy (a bin lying on their common edge is split
half and half), and a DC offset stays out of every band whose lower edge lies above ``df / 2``, however the
padding falls.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from drl.checks import check_sample_rate
from drl.fft import BLOCK_SAMPLES, fft_length, records_gradient

DEFAULT_BANDS: list[tuple[float, float]] = [(20, 200), (200, 2000), (2000, 20000)]


def default_bands(sample_rate: int) -> list[tuple[float, float]]:
    """:data:`DEFAULT_BANDS` fitted to ``sample_rate``: upper edges above the Nyquist frequency are lowered to
    it and bands that start above it are dropped, so the defaults work at every rate (16 kHz: 20-200,
    200-2000, 2000-8000 Hz). Bands a user passes are checked as given (:func:`check_bands`)."""
    nyquist = check_sample_rate(sample_rate) / 2
    return [(low, min(high, nyquist)) for low, high in DEFAULT_BANDS if low < nyquist]


def band_key(low_hz: float, high_hz: float) -> str:
    """The dict key of a band, ``f"{int(low)}_{int(high)}"`` (the original package's contract): ``"20_200"``."""
    return f"{int(low_hz)}_{int(high_hz)}"


def check_bands(bands: Sequence[Sequence[float]] | None, sample_rate: int) -> list[tuple[float, float]]:
    """Validate ``(low_hz, high_hz)`` pairs against ``sample_rate`` and return them as a list of float pairs.

    ``None`` means no bands (broadband only). Each band needs ``0 <= low_hz < high_hz <= sample_rate / 2``
    and a key distinct from the others.
    """
    if bands is None:
        return []
    nyquist = sample_rate / 2
    checked: list[tuple[float, float]] = []
    keys: set[str] = set()
    for band in bands:
        if isinstance(band, (str, bytes)) or not isinstance(band, Sequence) or len(band) != 2:
            raise ValueError(f"each frequency band must be a pair (low_hz, high_hz), got {band!r}")
        low, high = band
        for value in (low, high):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"band edges must be finite numbers in Hz, got {band!r}")
        low, high = float(low), float(high)
        if not 0 <= low < high:
            raise ValueError(f"band {band!r} needs 0 <= low_hz < high_hz")
        if high > nyquist:
            raise ValueError(
                f"band {band!r} reaches above the Nyquist frequency {nyquist:g} Hz of sample_rate "
                f"{sample_rate}; pass frequency_bands that fit this rate"
            )
        key = band_key(low, high)
        if key in keys:
            raise ValueError(f"two frequency bands share the key {key!r}")
        keys.add(key)
        checked.append((low, high))
    return checked


def band_weights(
    n_samples: int,
    sample_rate: int,
    bands: Sequence[tuple[float, float]],
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Parseval weights of shape ``(len(bands), N // 2 + 1)`` for the rfft bins of a length-``n_samples``
    signal zero-padded to ``N = fft_length(n_samples)`` (module docstring): with ``X`` the ``N``-point rfft of
    ``x`` minus its mean ``m``, ``sum_k w[b, k] |X_k|^2 / N + w[b, 0] T m^2`` is the energy of ``x`` inside
    band ``b`` (:func:`band_energies`)."""
    sample_rate = check_sample_rate(sample_rate)
    n_fft = fft_length(n_samples)
    n_bins = n_fft // 2 + 1
    bin_hz = sample_rate / n_fft
    edges = torch.tensor(bands, dtype=torch.float64, device=device).reshape(-1, 2)
    weights = torch.empty(edges.shape[0], n_bins, dtype=dtype, device=device)
    for first in range(0, n_bins, BLOCK_SAMPLES):  # float64 work in blocks: only the weights grow with the length
        centre = torch.arange(first, min(first + BLOCK_SAMPLES, n_bins), dtype=torch.float64, device=device) * bin_hz
        cell_low = (centre - bin_hz / 2).clamp_min(0.0)
        cell_high = (centre + bin_hz / 2).clamp_max(sample_rate / 2)
        overlap = torch.minimum(cell_high, edges[:, 1:]) - torch.maximum(cell_low, edges[:, :1])
        weights[:, first : first + centre.numel()] = 2.0 * overlap.clamp_min(0.0) / bin_hz
    return weights


#: Signals longer than this (samples) are transformed one row (channel) at a time: MKL's batched transforms of
#: long rows were measured several times slower and larger in memory than one row after another (two channels
#: of 30 minutes at 48 kHz in float32: 190 s and 13 times the signal's size, against 15 s and 3 times per row).
ROW_FFT_SAMPLES = 1 << 22


def band_energies(signal: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Band energies ``sum_t (band-passed signal)^2`` of ``signal (..., T)``, shape ``(n_bands, ...)``, with
    ``weights`` from :func:`band_weights` for ``T`` samples; rows longer than :data:`ROW_FFT_SAMPLES` one at a
    time."""
    n_samples = signal.shape[-1]
    if weights.shape[-1] != fft_length(n_samples) // 2 + 1:
        raise ValueError(
            f"band weights of {weights.shape[-1]} bins do not fit a signal of {n_samples} samples: "
            f"make them with band_weights({n_samples}, ...)"
        )
    if n_samples > ROW_FFT_SAMPLES and signal.ndim > 1:
        rows = [_band_energies(row, weights) for row in signal.reshape(-1, n_samples)]
        return torch.stack(rows, dim=-1).reshape(weights.shape[0], *signal.shape[:-1])
    return _band_energies(signal, weights)


def _band_energies(signal: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    n_samples = signal.shape[-1]
    n_fft = fft_length(n_samples)
    if n_fft == n_samples:  # no padding: bin 0 holds the mean's energy exactly, nothing to take out
        spectrum, mean_energy = torch.fft.rfft(signal, dim=-1), None
    else:
        mean = signal.mean(dim=-1, keepdim=True)
        spectrum = torch.fft.rfft(_centred_padded(signal, mean, n_fft), dim=-1)
        mean_energy = n_samples * mean.square()
    if records_gradient(spectrum):
        power = spectrum.real.square() + spectrum.imag.square()
    else:  # the same sums, squared in place: no copies of the spectrum's size
        power = torch.view_as_real(spectrum).square_().sum(dim=-1)
    # one product per band: a band's energy rounds the same whichever other bands are asked for with it
    energies = torch.stack([power @ band for band in weights], dim=-1) / n_fft
    if mean_energy is not None:
        energies = energies + mean_energy * weights[:, 0]
    return energies.movedim(-1, 0)


def _centred_padded(signal: torch.Tensor, mean: torch.Tensor, n_fft: int) -> torch.Tensor:
    """``signal (..., T)`` minus ``mean (..., 1)``, zero-padded to ``n_fft`` samples: one new tensor, filled in
    place when no gradient is recorded."""
    n_samples = signal.shape[-1]
    if records_gradient(signal, mean):
        return torch.nn.functional.pad(signal - mean, (0, n_fft - n_samples))
    padded = signal.new_zeros(*signal.shape[:-1], n_fft)
    padded[..., :n_samples] = signal
    padded[..., :n_samples] -= mean
    return padded
