"""The Distortion Residual Level: DRL = 10 log10(||d||^2 / ||g x||^2), g = <x,y>/<x,x>, d = y - g x.

``x`` is the reference, ``y`` the processed signal; the gain ``g`` is matched per channel over time. DRL is
minus SI-SDR without mean removal, 20 log10|tan(theta)| for the angle theta between x and y.

The ratio is floored softly so that it stays finite and differentiable everywhere: with f = 10^(floor_db/10),
``ratio = (||d||^2 + f ||g x||^2) / (||g x||^2 + f ||d||^2)``. Identical signals read ``floor_db``, a
processed signal orthogonal to the reference reads ``-floor_db``, and values in between are off the exact
ratio by a relative ``f * max(ratio, 1/ratio)`` at most (4e-6 dB at a DRL of -60 dB with the -120 dB floor).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

from drl.align import DEFAULT_MAX_DELAY_MS, _correlation_delay, compensate_delay, max_lag_samples
from drl.bands import DEFAULT_BANDS, band_energies, band_key, band_weights, check_bands, default_bands
from drl.checks import (
    check_energies,
    check_number,
    check_pair,
    check_sample_rate,
    energy,
    from_batch_channels_time,
    to_batch_channels_time,
)
from drl.frames import frame_energies, frame_length
from drl.linear import check_linear_taps, project
from drl.nmr import noise_to_mask

DEFAULT_FLOOR_DB = -120.0


def check_floor_db(floor_db: float) -> float:
    """Return ``floor_db`` as float after checking -300 <= floor_db < 0."""
    return check_number("floor_db", floor_db, -300.0, 0.0, unit="dB", high_open=True)


def floored_ratio(residual_energy: torch.Tensor, signal_energy: torch.Tensor, floor_db: float) -> torch.Tensor:
    """The residual-to-signal energy ratio, softly kept within ``[10^(floor_db/10), 10^(-floor_db/10)]``.

    Where both energies are zero (a band neither signal reaches) it reads 1 (0 dB).
    """
    floor = 10.0 ** (floor_db / 10.0)
    tiny = torch.finfo(residual_energy.dtype).tiny
    return (residual_energy + floor * signal_energy + tiny) / (signal_energy + floor * residual_energy + tiny)


def ratio_to_db(ratio: torch.Tensor) -> torch.Tensor:
    """Energy ratio to dB."""
    return 10.0 * torch.log10(ratio)


def ratio_to_percent(ratio: torch.Tensor) -> torch.Tensor:
    """Energy ratio to the amplitude ratio in percent (100 sqrt(ratio))."""
    return 100.0 * torch.sqrt(ratio)


def dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``sum_t a b`` over the last axis, returned in float64 for the scalar arithmetic that follows.

    ``Tensor.sum`` accumulates float32 in cascades (relative error ~1e-7 over minutes of audio); BLAS dot
    products (``vecdot`` on 1-D input) lost 300 times more on a minute of audio here, enough to move a low band
    DRL by hundredths of a dB.
    """
    return (a * b).sum(dim=-1).double()


def level_match(reference: torch.Tensor, processed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Least-squares gain per channel and the residual: ``(g, d)`` of shapes ``(...)`` (float64) and
    ``(..., T)`` (the inputs' dtype). ``g = <x, y> / <x, x>``, ``d = y - g x``. Unchecked: see :func:`null`."""
    result = _null(reference, processed)
    return result.gain, result.residual


class Null(NamedTuple):
    """A level-matched subtraction: per-channel values are float64 of shape ``(...)``."""

    gain: torch.Tensor
    residual: torch.Tensor  # (..., T), the inputs' dtype
    reference_energy: torch.Tensor  # <x, x>
    residual_energy: torch.Tensor  # ||d||^2
    signal_energy: torch.Tensor  # ||g x||^2


def _null(reference: torch.Tensor, processed: torch.Tensor) -> Null:
    reference_energy = energy(reference)
    gain = dot(reference, processed) / reference_energy
    residual = torch.addcmul(processed, reference, -gain.to(reference.dtype)[..., None])
    return Null(gain, residual, reference_energy, energy(residual), gain.square() * reference_energy)


def null(reference: torch.Tensor, processed: torch.Tensor) -> Null:
    """Level-match ``processed`` to ``reference`` per channel and subtract, checking both signals on the way.

    The checks ride on the energies the nulling needs (``||y||^2 = ||d||^2 + ||g x||^2``), with a single host
    sync: NaN/Inf, silent channels and overflow raise ValueError naming the signal.
    """
    result = _null(reference, processed)
    check_energies(
        {"reference": reference, "processed": processed},
        {"reference": result.reference_energy, "processed": result.residual_energy + result.signal_energy},
    )
    return result


def _channel_ratios(
    reference: torch.Tensor, processed: torch.Tensor, floor_db: float
) -> tuple[torch.Tensor, torch.dtype]:
    """The floored broadband energy ratio per channel (float64) of a checked pair, and the pair's dtype."""
    floor_db = check_floor_db(floor_db)
    reference, processed = check_pair(reference, processed, finite=False)
    result = null(reference, processed)
    return floored_ratio(result.residual_energy, result.signal_energy, floor_db), reference.dtype


def drl_db(reference: torch.Tensor, processed: torch.Tensor, *, floor_db: float = DEFAULT_FLOOR_DB) -> torch.Tensor:
    """Broadband DRL in dB per channel, shape ``reference.shape[:-1]``; differentiable (finite gradients).

    ``reference`` and ``processed``: ``(T,)``, ``(C, T)`` or ``(B, C, T)`` of equal shapes. As a loss that
    should reach an exact match, take :func:`drl_ratio`.
    """
    ratio, dtype = _channel_ratios(reference, processed, floor_db)
    return ratio_to_db(ratio).to(dtype)


def drl_ratio(reference: torch.Tensor, processed: torch.Tensor, *, floor_db: float = DEFAULT_FLOOR_DB) -> torch.Tensor:
    """Broadband DRL as the linear energy ratio ``||d||^2 / ||g x||^2`` per channel (``10^(DRL/10)``, floored at
    ``10^(floor_db/10)``), shape ``reference.shape[:-1]``; differentiable.

    The loss form for fitting towards an exact match (a known processor's settings): it is a smooth bowl,
    quadratic in the setting's error, where the dB form's log dips without bound at the match and Adam runs
    past it and back (docs/metric.md, "DRL as a loss"). Inputs as :func:`drl_db`.
    """
    ratio, dtype = _channel_ratios(reference, processed, floor_db)
    return ratio.to(dtype)


def band_ratios(result: Null, reference: torch.Tensor, weights: torch.Tensor, floor_db: float) -> torch.Tensor:
    """Floored band ratios ``(n_bands, ...)`` (float64) of a nulling of ``reference``, from exact band weights."""
    signal_energy = result.gain.square() * band_energies(reference, weights)
    return floored_ratio(band_energies(result.residual, weights).double(), signal_energy, floor_db)


def band_drl_db(
    reference: torch.Tensor,
    processed: torch.Tensor,
    sample_rate: int,
    bands: Sequence[tuple[float, float]],
    *,
    floor_db: float = DEFAULT_FLOOR_DB,
) -> torch.Tensor:
    """DRL in dB per band and channel, shape ``(len(bands),) + reference.shape[:-1]``; differentiable.

    The gain is matched broadband; band energies of the residual and of the matched reference come from an
    exact (brick-wall, Parseval) split of one FFT, see :mod:`drl.bands`.
    """
    floor_db = check_floor_db(floor_db)
    sample_rate = check_sample_rate(sample_rate)
    bands = check_bands(bands, sample_rate)
    if not bands:
        raise ValueError("bands must hold at least one (low_hz, high_hz) pair")
    reference, processed = check_pair(reference, processed, finite=False)
    result = null(reference, processed)
    weights = band_weights(reference.shape[-1], sample_rate, bands, dtype=reference.dtype, device=reference.device)
    return ratio_to_db(band_ratios(result, reference, weights, floor_db)).to(reference.dtype)


def frame_drl_db(
    reference: torch.Tensor,
    processed: torch.Tensor,
    sample_rate: int,
    frame_ms: float,
    *,
    floor_db: float = DEFAULT_FLOOR_DB,
) -> torch.Tensor:
    """Frame-wise DRL in dB per channel (level matched per Hann frame of ``frame_ms``, half-frame hop), shape
    ``reference.shape[:-1]``; differentiable. See :mod:`drl.frames`."""
    floor_db = check_floor_db(floor_db)
    length = frame_length(sample_rate, frame_ms)
    reference, processed = check_pair(reference, processed, finite=False)
    result = null(reference, processed)
    ratio = floored_ratio(*frame_energies(reference, result.residual, result.gain, length), floor_db)
    return ratio_to_db(ratio).to(reference.dtype)


class DRL(nn.Module):
    """Distortion Residual Level of ``processed`` against ``reference``, as a metric and as a loss.

    ``DRL(sample_rate, ...)(reference, processed)`` returns a dict of dB, percent and linear ratio values (see
    :meth:`forward`). Plain DRL matches one gain per channel; options measure more and add keys only when on:
    ``align`` (delay compensation), ``frame_ms`` (level matched per frame, :mod:`drl.frames`), ``linear_taps``
    (a linear filter removed instead of a gain, :mod:`drl.linear`), ``nmr`` (the noise-to-mask ratio,
    :mod:`drl.nmr`, the measure that agrees with a perceptual model of hearing). Arguments and their ranges:
    :meth:`__init__`.

    As a loss, ``total_drl_db`` suits tuning towards a residual that cannot vanish; to fit towards an exact
    match (a known processor's settings) take ``total_drl_ratio``, which is smooth at the match (see
    :func:`drl_ratio`).
    """

    def __init__(
        self,
        sample_rate: int = 44100,
        frequency_bands: Sequence[tuple[float, float]] | None = DEFAULT_BANDS,
        *,
        align: bool = False,
        max_delay_ms: float = DEFAULT_MAX_DELAY_MS,
        floor_db: float = DEFAULT_FLOOR_DB,
        frame_ms: float | None = None,
        linear_taps: int | None = None,
        nmr: bool = False,
    ) -> None:
        """Set the measure up; each argument is checked (a ValueError names it and its range).

        Args:
            sample_rate: in Hz, a whole number in 8000..384000.
            frequency_bands: ``(low_hz, high_hz)`` pairs with ``0 <= low_hz < high_hz <= sample_rate / 2``, or
                ``None`` for broadband only. The default, :data:`DEFAULT_BANDS` ((20, 200), (200, 2000),
                (2000, 20000) Hz), is fitted to the rate (:func:`drl.bands.default_bands`).
            align: estimate and compensate the delay of ``processed`` (lengths may then differ); True or False.
            max_delay_ms: the delay search window, +- this many milliseconds, >= 0 (default 50).
            floor_db: the soft floor of every dB value, in -300..0 dB, 0 excluded (default -120; see
                :func:`floored_ratio`).
            frame_ms: frame length of the frame-wise DRL in ms, > 0 (off when None).
            linear_taps: an even whole number >= 2 of FIR taps to remove the linear response with (off when None);
                the signals must be at least that long.
            nmr: also report the noise-to-mask ratio; True or False.
        """
        super().__init__()
        self.sample_rate = check_sample_rate(sample_rate)
        if frequency_bands is DEFAULT_BANDS:
            frequency_bands = default_bands(self.sample_rate)
        self.frequency_bands = check_bands(frequency_bands, self.sample_rate)
        if not isinstance(align, bool):
            raise ValueError(f"align must be True or False, got {align!r}")
        self.align = align
        self._max_lag = max_lag_samples(self.sample_rate, max_delay_ms)
        self.max_delay_ms = float(max_delay_ms)
        self.floor_db = check_floor_db(floor_db)
        self.frame_ms = frame_ms
        self._frame_length = None if frame_ms is None else frame_length(self.sample_rate, frame_ms)
        self.linear_taps = None if linear_taps is None else check_linear_taps(linear_taps)
        if not isinstance(nmr, bool):
            raise ValueError(f"nmr must be True or False, got {nmr!r}")
        self.nmr = nmr
        self._weights_cache: tuple[tuple, torch.Tensor] | None = None

    def _band_weights(self, n_samples: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """Band weights for this length, kept while the length stays the same (training crops)."""
        key = (n_samples, dtype, device)
        if self._weights_cache is None or self._weights_cache[0] != key:
            weights = band_weights(n_samples, self.sample_rate, self.frequency_bands, dtype=dtype, device=device)
            self._weights_cache = (key, weights)
        return self._weights_cache[1]

    def extra_repr(self) -> str:
        return (
            f"sample_rate={self.sample_rate}, frequency_bands={self.frequency_bands}, align={self.align}, "
            f"max_delay_ms={self.max_delay_ms}, floor_db={self.floor_db}, frame_ms={self.frame_ms}, "
            f"linear_taps={self.linear_taps}, nmr={self.nmr}"
        )

    def forward(self, reference: torch.Tensor, processed: torch.Tensor) -> dict:
        """Measure ``processed`` against ``reference``.

        Args:
            reference, processed: float audio of shape ``(T,)``, ``(C, T)`` or ``(B, C, T)`` (channels before
                samples: transpose soundfile's ``(T, C)``), the same shape (lengths may differ with ``align``),
                on one device. NaN/Inf, silent channels, integer audio and audio that looks laid out
                ``(samples, channels)`` raise ValueError.

        Returns:
            A dict; per-channel values are a scalar, ``(C,)`` or ``(B, C)`` after the input's shape, totals are
            means over batch and channels, all in the inputs' dtype and differentiable in both signals:

            - ``total_drl_db``, ``channel_drl_db``: DRL in dB, ``10 log10(||d||^2 / ||g x||^2)``.
            - ``total_drl_percent``, ``channel_drl_percent``: ``100 ||d|| / ||g x||``.
            - ``total_drl_ratio``, ``channel_drl_ratio``: the linear energy ratio ``||d||^2 / ||g x||^2``, the
              loss form for fitting towards an exact match (:func:`drl_ratio`).
            - ``band_drl_db``, ``band_drl_percent``: dicts keyed :func:`band_key` (``"20_200"``), means.
            - ``residual``: ``d``, the input's shape; ``residual_rms``, ``signal_rms``: per channel.
            - with ``align``: ``delay_samples`` (scalar or ``(B,)``); every value then covers the aligned
              common span only (``residual`` is that long).
            - with ``frame_ms``: ``frame_drl_db``, ``frame_drl_percent`` (means), ``channel_frame_drl_db``.
            - with ``linear_taps``: the main keys measure what remains after the best FIR fit of the reference
              instead of a gain; frame-wise values keep the per-frame gain.
            - with ``nmr``: ``nmr_db`` (mean) and ``channel_nmr_db``, with its own level match.
        """
        reference, processed = check_pair(reference, processed, same_length=not self.align, finite=False)
        ndim = reference.ndim
        x, y = to_batch_channels_time(reference), to_batch_channels_time(processed)
        extra: dict[str, torch.Tensor] = {}
        if self.align:
            check_energies({"reference": x, "processed": y})
            delay = _correlation_delay(x, y, self._max_lag)
            # With a linear fit, shift by whole samples only: the taps cover the fraction exactly.
            x, y = compensate_delay(x, y, torch.round(delay) if self.linear_taps else delay)
            extra["delay_samples"] = delay if ndim == 3 else delay[0]
        n_samples = x.shape[-1]

        if self.linear_taps:
            check_energies({"reference": x, "processed": y})
            fit = project(x, y, self.linear_taps)
            residual, residual_energy, signal_energy = fit.residual, fit.residual_energy, fit.signal_energy
        else:
            result = null(x, y)  # checks the (aligned) signals on the way
            residual, residual_energy, signal_energy = result.residual, result.residual_energy, result.signal_energy

        # Scalars are computed in float64 and reported in the inputs' dtype.
        def per_channel(values: torch.Tensor) -> torch.Tensor:  # (B, C) -> scalar, (C,) or (B, C)
            return from_batch_channels_time(values.to(x.dtype), ndim)

        ratio = floored_ratio(residual_energy, signal_energy, self.floor_db)
        channel_ratio = ratio.to(x.dtype)
        channel_db = ratio_to_db(ratio).to(x.dtype)
        channel_percent = ratio_to_percent(ratio).to(x.dtype)

        band_db: dict[str, torch.Tensor] = {}
        band_percent: dict[str, torch.Tensor] = {}
        if self.frequency_bands:
            if self.linear_taps:
                weights = self._band_weights(n_samples, x.dtype, x.device)
                signal_bands = band_energies(fit.fitted, weights).double()
                band_ratio = floored_ratio(band_energies(fit.residual, weights).double(), signal_bands, self.floor_db)
            else:
                band_ratio = band_ratios(result, x, self._band_weights(n_samples, x.dtype, x.device), self.floor_db)
            for (low, high), value in zip(self.frequency_bands, band_ratio):
                band_db[band_key(low, high)] = ratio_to_db(value).mean().to(x.dtype)
                band_percent[band_key(low, high)] = ratio_to_percent(value).mean().to(x.dtype)

        if self._frame_length is not None:
            plain = _null(x, y) if self.linear_taps else result
            energies = frame_energies(x, plain.residual, plain.gain, self._frame_length)
            frame_ratio = floored_ratio(*energies, self.floor_db)
            extra["frame_drl_db"] = ratio_to_db(frame_ratio).mean().to(x.dtype)
            extra["frame_drl_percent"] = ratio_to_percent(frame_ratio).mean().to(x.dtype)
            extra["channel_frame_drl_db"] = per_channel(ratio_to_db(frame_ratio))

        if self.nmr:
            masked = ratio_to_db(floored_ratio(*noise_to_mask(x, y, self.sample_rate), self.floor_db))
            extra["nmr_db"] = masked.mean().to(x.dtype)
            extra["channel_nmr_db"] = per_channel(masked)

        return {
            "total_drl_db": channel_db.mean(),
            "total_drl_percent": channel_percent.mean(),
            "total_drl_ratio": channel_ratio.mean(),
            "channel_drl_db": per_channel(channel_db),
            "channel_drl_percent": per_channel(channel_percent),
            "channel_drl_ratio": per_channel(channel_ratio),
            "band_drl_db": band_db,
            "band_drl_percent": band_percent,
            "residual": from_batch_channels_time(residual, ndim),
            "residual_rms": per_channel(torch.sqrt(residual_energy / n_samples)),
            "signal_rms": per_channel(torch.sqrt(signal_energy / n_samples)),
            **extra,
        }
