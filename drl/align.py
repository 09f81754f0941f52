"""Delay estimation and compensation, so that a processor's latency is not counted as distortion.

The delay is the lag that maximises the cross-correlation of the two signals (summed as energy over channels,
so polarity does not matter): first the best integer lag within ``max_delay_ms``, then a sub-sample refinement
by Newton steps on the band-limited interpolation of the same cross-correlation (evaluated from its spectrum,
so it is exact for band-limited signals). One delay per batch item, shared by its channels.

Compensation shifts ``processed`` by the integer part (a slice) and the fractional part (a phase shift in the
frequency domain), then keeps only the span where both signals are valid, minus a guard of
:data:`GUARD_SAMPLES` at either end where the circular phase shift wraps around. It is differentiable with
respect to ``processed``; the delay itself is not.
"""

from __future__ import annotations

import math

import torch

from drl.checks import (
    check_energies,
    check_number,
    check_pair,
    check_sample_rate,
    from_batch_channels_time,
    to_batch_channels_time,
)
from drl.fft import fft_length

DEFAULT_MAX_DELAY_MS = 50.0
GUARD_SAMPLES = 1024
MIN_ALIGNED_SAMPLES = 256
_NEWTON_STEPS = 4


def max_lag_samples(sample_rate: int, max_delay_ms: float) -> int:
    """``max_delay_ms`` in whole samples, after checking it is a finite number >= 0."""
    max_delay_ms = check_number("max_delay_ms", max_delay_ms, 0.0, unit="ms")
    return int(math.floor(max_delay_ms * sample_rate / 1000.0 + 1e-9))


def fractional_delay(signal: torch.Tensor, delay_samples: torch.Tensor | float) -> torch.Tensor:
    """Delay ``signal (..., T)`` by ``delay_samples`` (any real number, broadcast over the leading dims).

    A circular shift by a linear phase in the frequency domain: exact for band-limited periodic signals, and
    the samples near either end carry the wrap-around. Differentiable in ``signal``.
    """
    n = signal.shape[-1]
    delay = torch.as_tensor(delay_samples, dtype=torch.float64, device=signal.device)
    omega = 2 * math.pi * torch.arange(n // 2 + 1, dtype=torch.float64, device=signal.device) / n
    phase = -delay[..., None] * omega
    rotation = torch.polar(torch.ones_like(phase), phase)
    if n % 2 == 0:  # the Nyquist bin of a real signal can only be scaled, not rotated
        rotation[..., -1] = torch.cos(phase[..., -1])
    complex_dtype = torch.complex128 if signal.dtype == torch.float64 else torch.complex64
    spectrum = torch.fft.rfft(signal, dim=-1) * rotation.to(complex_dtype)
    return torch.fft.irfft(spectrum, n=n, dim=-1)


def _correlation_delay(reference: torch.Tensor, processed: torch.Tensor, max_lag: int) -> torch.Tensor:
    """Delay (B,) in samples of ``processed (B, C, Tp)`` behind ``reference (B, C, Tr)``, float64."""
    reference = reference.detach().double()
    processed = processed.detach().double()
    # Lags beyond the shorter length would alias in the circular correlation below.
    max_lag = max(0, min(max_lag, reference.shape[-1] - 1, processed.shape[-1] - 1))
    n = fft_length(reference.shape[-1] + processed.shape[-1])
    # cross[k] = Y_k conj(X_k); its inverse transform at lag l is sum_t y[t] x[t - l].
    cross = torch.fft.rfft(processed, n=n, dim=-1) * torch.fft.rfft(reference, n=n, dim=-1).conj()
    correlation = torch.fft.irfft(cross, n=n, dim=-1)

    lags = torch.arange(-max_lag - 1, max_lag + 2, device=reference.device)
    energy = correlation[..., lags % n].square().sum(dim=1)  # (B, 2 L + 3)
    best = energy[:, 1:-1].argmax(dim=-1) + 1
    rows = torch.arange(energy.shape[0], device=reference.device)
    left, centre, right = energy[rows, best - 1], energy[rows, best], energy[rows, best + 1]
    curvature = left - 2 * centre + right
    offset = torch.where(curvature < 0, 0.5 * (left - right) / curvature.clamp_max(-1e-300), 0.0)
    integer_lag = lags[best].double()
    delay = integer_lag + offset.clamp(-0.5, 0.5)

    # Newton steps on J(tau) = sum_c r_c(tau)^2, r_c the band-limited cross-correlation at real lag tau.
    n_bins = cross.shape[-1]
    omega = 2 * math.pi * torch.arange(n_bins, dtype=torch.float64, device=reference.device) / n
    weight = torch.full((n_bins,), 2.0 / n, dtype=torch.float64, device=reference.device)
    weight[0] = 1.0 / n
    if n % 2 == 0:
        weight[-1] = 1.0 / n
    for _ in range(_NEWTON_STEPS):
        rotated = cross * torch.polar(torch.ones_like(omega), omega * delay[:, None])[:, None, :]
        value = (rotated.real * weight).sum(-1)
        slope = -(rotated.imag * (weight * omega)).sum(-1)
        bend = -(rotated.real * (weight * omega.square())).sum(-1)
        gradient = 2 * (value * slope).sum(-1)
        hessian = 2 * (slope.square() + value * bend).sum(-1)
        step = torch.where(hessian < 0, -gradient / hessian.clamp_max(-1e-300), 0.25 * torch.sign(gradient))
        delay = torch.minimum(torch.maximum(delay + step.clamp(-0.5, 0.5), integer_lag - 1), integer_lag + 1)
    return delay.clamp(-max_lag, max_lag)


def _validated(reference, processed, sample_rate, max_delay_ms):
    reference, processed = check_pair(reference, processed, same_length=False, finite=False)
    sample_rate = check_sample_rate(sample_rate)
    max_lag = max_lag_samples(sample_rate, max_delay_ms)
    check_energies({"reference": reference, "processed": processed})
    return reference, processed, max_lag


def estimate_delay(
    reference: torch.Tensor,
    processed: torch.Tensor,
    sample_rate: int,
    max_delay_ms: float = DEFAULT_MAX_DELAY_MS,
) -> torch.Tensor:
    """Delay of ``processed`` behind ``reference`` in samples (sub-sample, positive when processed lags).

    Shapes ``(T,)``, ``(C, T)`` or ``(B, C, T)`` (lengths may differ); returns a float64 scalar, or ``(B,)`` for
    batched input. The search covers lags within +-``max_delay_ms``. Not differentiable.
    """
    reference, processed, max_lag = _validated(reference, processed, sample_rate, max_delay_ms)
    delay = _correlation_delay(to_batch_channels_time(reference), to_batch_channels_time(processed), max_lag)
    return delay if reference.ndim == 3 else delay[0]


def compensate_delay(
    reference: torch.Tensor, processed: torch.Tensor, delay_samples: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Undo a delay ``(B,)`` of ``processed (B, C, Tp)`` and trim both to their common valid span.

    Returns ``(reference, processed)`` of equal length. Raises ValueError when too little of them overlaps.
    """
    batch, channels = reference.shape[:2]
    delay = delay_samples.detach().to(torch.float64).reshape(batch)
    integer = torch.round(delay)
    fraction = delay - integer
    shifts = [int(k) for k in integer.tolist()]
    guard = GUARD_SAMPLES if bool((fraction != 0).any()) else 0
    start = max(max(0, -k) for k in shifts) + guard
    stop = min(min(reference.shape[-1], processed.shape[-1] - k) for k in shifts) - guard
    if stop - start < MIN_ALIGNED_SAMPLES:
        raise ValueError(
            f"after compensating a delay of {delay.tolist()} samples only {max(stop - start, 0)} samples of "
            f"reference and processed overlap (need {MIN_ALIGNED_SAMPLES} plus a guard of {guard} at each end)"
        )
    positions = torch.arange(start - guard, stop + guard, device=processed.device)
    index = positions[None, :] + integer.to(device=processed.device, dtype=torch.long)[:, None]
    segment = processed.gather(-1, index[:, None, :].expand(batch, channels, -1))
    if guard:
        # The fraction is an advance: processed[t + delay] lines up with reference[t].
        segment = fractional_delay(segment, -fraction.to(processed.device)[:, None])[..., guard:-guard]
    return reference[..., start:stop], segment


def align(
    reference: torch.Tensor,
    processed: torch.Tensor,
    sample_rate: int,
    max_delay_ms: float = DEFAULT_MAX_DELAY_MS,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Estimate the delay of ``processed`` behind ``reference`` and compensate it.

    Returns ``(reference_aligned, processed_aligned, delay_samples)``: the two signals trimmed to their common
    span (equal lengths, same rank as the inputs) and the delay as :func:`estimate_delay` gives it.
    Differentiable with respect to ``processed``.
    """
    reference, processed, max_lag = _validated(reference, processed, sample_rate, max_delay_ms)
    ndim = reference.ndim
    x, y = to_batch_channels_time(reference), to_batch_channels_time(processed)
    delay = _correlation_delay(x, y, max_lag)
    x, y = compensate_delay(x, y, delay)
    return (
        from_batch_channels_time(x, ndim),
        from_batch_channels_time(y, ndim),
        delay if ndim == 3 else delay[0],
    )
