"""Linear-response removal: project the processed signal onto N delayed copies of the reference (a
least-squares FIR fit per channel, the projection BSS-eval's SDR uses), so that any linear filter within
N taps counts as no distortion and only what no filter can explain remains.

The taps are centred on zero lag, lags ``-N/2 .. N/2 - 1``, so non-causal (linear-phase) filters are covered.
The fit and the residual live on the processed signal's own span: the copies are cut to it (the reference is
zero before its start), so a filter's state at the start and its tail beyond the end count for nothing. Their
Gram matrix is the Toeplitz matrix of the reference's autocorrelation minus the products of the few samples
the cut removes at either end (prefix sums of lagged products, O(N^2) work); correlations come from one FFT
per signal; the N x N system is solved in float64 by Cholesky (with a ridge of 1e-10 of the reference energy,
for references with empty bands); the projection is an FFT convolution. Everything is differentiable.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from drl.align import fast_fft_length

RIDGE = 1e-10


def check_linear_taps(linear_taps: int) -> int:
    """Return ``linear_taps`` after checking it is an even integer >= 2."""
    if isinstance(linear_taps, bool) or not isinstance(linear_taps, int):
        raise ValueError(f"linear_taps must be an even integer >= 2, got {linear_taps!r}")
    if linear_taps < 2 or linear_taps % 2:
        raise ValueError(f"linear_taps must be an even integer >= 2, got {linear_taps}")
    return linear_taps


class Projection(NamedTuple):
    """A linear-response fit over the processed signal's span: energies float64 of shape ``(...)``."""

    taps: torch.Tensor  # (..., N) float64, lags -N/2 .. N/2 - 1
    fitted: torch.Tensor  # (..., T), the filtered reference
    residual: torch.Tensor  # (..., T), processed minus ``fitted``
    residual_energy: torch.Tensor
    signal_energy: torch.Tensor  # energy of ``fitted``


def _solve_spd(gram: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
    """Solve ``gram @ h = rhs`` for symmetric positive definite ``gram (..., N, N)`` by Cholesky.

    (Batched LU solves in MKL builds of torch 2.13 fail with two or more threads; Cholesky is also the faster.)
    """
    factor, info = torch.linalg.cholesky_ex(gram)
    if bool((info != 0).any()):
        # Not positive definite in float64: lift the ridge until it is.
        lift = 1e-6 * gram.diagonal(dim1=-2, dim2=-1).mean(-1)[..., None, None]
        eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
        factor, info = torch.linalg.cholesky_ex(gram + lift * eye)
        if bool((info != 0).any()):
            raise ValueError("the reference's autocorrelation matrix is singular; cannot fit linear taps")
    return torch.cholesky_solve(rhs[..., None], factor)[..., 0]


def _edge_sums(signal: torch.Tensor, half: int, taps: int) -> torch.Tensor:
    """``P[k, m] = sum_{s < m} x[s] x[s + k]`` (``x`` zero outside ``[0, T)``) for ``k`` in
    ``-(taps - 1)..taps - 1`` (index ``k + taps - 1``) and ``m`` in ``0..half``, float64
    ``(..., 2 taps - 1, half + 1)``. Time runs along the last axis, where cumulative sums are fast."""
    head = signal[..., :half].double()
    padded = torch.nn.functional.pad(signal[..., : half + taps - 1].double(), (taps - 1, half + taps - 1))
    shifted = padded.unfold(-1, half, 1)[..., : 2 * taps - 1, :]  # [k + taps - 1, s] = x[s + k]
    sums = torch.cumsum(shifted * head[..., None, :], dim=-1)
    return torch.nn.functional.pad(sums, (1, 0))


def _cut_products(reference: torch.Tensor, lags: torch.Tensor) -> torch.Tensor:
    """``sum_t c_a[t] c_b[t]`` over the samples ``t`` outside ``[0, T)`` that whole delayed copies
    ``c_l[t] = x[t - l]`` reach (half a tap count before the start and after the end), shape ``(..., N, N)``.

    Before the start only copies of negative lag reach in: with ``s = t - l_a`` the sum is
    ``sum_{s < -l_a} x[s] x[s + l_a - l_b]``, a prefix sum of lagged products; after the end, the same on the
    time-reversed signal with ``l_a, l_b`` negated. So both come from two small tables of cumulative sums,
    ``O(N^2)`` work instead of an ``N x N x N`` product.
    """
    taps = len(lags)
    half = taps // 2
    head = _edge_sums(reference, half, taps)
    tail = _edge_sums(reference.flip(-1), half, taps)
    diff = lags[:, None] - lags[None, :] + (taps - 1)  # l_a - l_b, as a column index
    before = head[..., diff, (-lags).clamp_min(0)[:, None]]
    after = tail[..., 2 * (taps - 1) - diff, lags.clamp_min(0)[:, None]]
    return before + after


def project(reference: torch.Tensor, processed: torch.Tensor, taps: int) -> Projection:
    """Least-squares fit of ``processed (..., T)`` by ``taps`` delayed copies of ``reference (..., T)``.

    The reference must not be silent in any channel (check it first).
    """
    taps = check_linear_taps(taps)
    half = taps // 2
    n_samples = reference.shape[-1]
    if n_samples < taps:
        raise ValueError(f"linear_taps={taps} needs signals of at least {taps} samples, got {n_samples}")
    n_fft = fast_fft_length(n_samples + taps)
    spectrum_x = torch.fft.rfft(reference, n=n_fft)
    spectrum_y = torch.fft.rfft(processed, n=n_fft)
    autocorrelation = torch.fft.irfft(spectrum_x.real.square() + spectrum_x.imag.square(), n=n_fft)[..., :taps]
    lags = torch.arange(-half, half, device=reference.device)
    cross = torch.fft.irfft(spectrum_y * spectrum_x.conj(), n=n_fft)[..., lags % n_fft]  # sum_t y[t] x[t - l]

    autocorrelation = autocorrelation.double()
    index = (lags[:, None] - lags[None, :]).abs()
    gram = autocorrelation[..., index] - _cut_products(reference, lags)
    eye = torch.eye(taps, dtype=gram.dtype, device=gram.device)
    gram = gram + RIDGE * autocorrelation[..., :1, None] * eye
    solution = _solve_spd(gram, cross.double())

    # p[t] = sum_l h_l x[t - l]: an FFT convolution with the taps in lag order, read from lag -N/2 on.
    kernel = torch.fft.rfft(solution.to(reference.dtype), n=n_fft)
    fitted = torch.fft.irfft(spectrum_x * kernel, n=n_fft)[..., half : half + n_samples]
    residual = processed - fitted
    return Projection(
        solution,
        fitted,
        residual,
        residual.square().sum(dim=-1).double(),
        fitted.square().sum(dim=-1).double(),
    )
