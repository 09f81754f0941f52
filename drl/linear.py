"""Linear-response removal: project the processed signal onto N delayed copies of the reference (a
least-squares FIR fit per channel, the projection BSS-eval's SDR uses), so that any linear filter within
N taps counts as no distortion and only what no filter can explain remains.

The taps are centred on zero lag, lags ``-N/2 .. N/2 - 1``, so non-causal (linear-phase) filters are covered.
The fit and the residual live on the processed signal's own span: the copies are cut to it (the reference is
zero before its start), so a filter's state at the start and its tail beyond the end count for nothing.

How it is computed (10 s of stereo at 512 taps: 20 to 28 ms forward on one core of the development machine
when the fit ran in the inputs' dtype, 7 ms of which are the Cholesky factorisations; the float64 fit of float32
input takes about 1.5 times as long, timed side by side):

- The correlations need only ``N`` lags, so they are summed block by block in the frequency domain: each block
  of ``hop`` samples is transformed once (4096-point transforms at 512 taps), multiplied by the spectrum of the
  reference segment around it (``N`` samples more before, ``N/2`` after), and the products are summed before
  one short inverse transform. Blocks go through in chunks of a few (:data:`CHUNK_LENGTH`), so every buffer
  but the spectra and the outputs stays small and in the cache. Against the whole-signal FFTs this replaced,
  the whole fit takes half the time at 10 s and a quarter at 60 s, where page faults and cache misses on
  whole-signal buffers had cost as much as the transforms.
- The Gram matrix of the cut copies is the Toeplitz matrix of the reference's autocorrelation less the
  products of samples the cuts remove, prefix sums of lagged products of the first and last ``N/2`` samples:
  ``O(N^2)`` work, in float64.
- Everything up to the taps runs in float64, whatever the inputs' dtype (float32 samples are exact in float64).
  Music decoded from lossy files has next to nothing above about 16 kHz, so the reference's autocorrelation
  matrix has eigenvalues 1e-10 of its largest and below; the rounding of float32 transforms (about 2e-7 of the
  energy per lag) made it indefinite, and the Cholesky factorisation failed on such excerpts. Float64 brings
  float32 input to within 0.01 dB of float64 input.
- The ``N x N`` system is solved in float64 by Cholesky with a diagonal loading of :data:`RIDGE` (1e-10) times
  the reference's energy, so that empty bands leave it positive definite: ``O(N^3)``, a fixed cost whatever the
  signal's length. The loading leaves a relative ``1e-10 / s`` of a linear filter's output unfitted (its
  energy ``(1e-10 / s)^2``) at frequencies where the reference's power spectral density is ``s`` times its
  mean: nothing measurable unless a band lies 80 dB and more below the mean.
- The fitted signal is an overlap-save convolution over the same reference segments, returned in the inputs'
  dtype.
- When the reference needs no gradient (the usual case: a loss on the processed signal), the backward pass is
  hand-written: one correlation, one solve with the saved factor and one convolution (see
  :class:`_ProjectProcessed`). Otherwise autograd differentiates the same steps.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import torch
import torch.nn.functional as F

from drl.checks import check_number, energy
from drl.fft import fft_length as _fft_length

RIDGE = 1e-10
MIN_BLOCK_FFT = 2048  # the shortest block transform; with many taps, 8 times the taps (see _block_plan)
CHUNK_LENGTH = 1 << 16  # transformed samples per chunk of blocks (see _Segments)


def check_linear_taps(linear_taps: int) -> int:
    """Return ``linear_taps`` after checking it is an even integer >= 2."""
    if isinstance(linear_taps, float) or check_number("linear_taps", linear_taps, 2, integer=True) % 2:
        raise ValueError(f"linear_taps must be an even whole number >= 2, got {linear_taps!r}")
    return linear_taps


class Projection(NamedTuple):
    """A linear-response fit over the processed signal's span: energies float64 of shape ``(...)``."""

    taps: torch.Tensor  # (..., N) float64, lags -N/2 .. N/2 - 1
    fitted: torch.Tensor  # (..., T), the filtered reference
    residual: torch.Tensor  # (..., T), processed minus ``fitted``
    residual_energy: torch.Tensor
    signal_energy: torch.Tensor  # energy of ``fitted``


class _BlockPlan(NamedTuple):
    fft_length: int  # M: block transform length
    hop: int  # samples per block, M - 3N/2
    count: int  # blocks covering the signal


def _block_plan(n_samples: int, taps: int) -> _BlockPlan:
    """Blocks of ``hop`` samples whose reference segments (``taps`` samples before, ``taps / 2`` after) fill a
    transform of length ``M``: a power of two, 8 times the taps or :data:`MIN_BLOCK_FFT`, or a single transform
    for short signals."""
    margin = taps + taps // 2
    fft_length = max(MIN_BLOCK_FFT, 1 << (8 * taps - 1).bit_length())
    if n_samples + margin <= fft_length:
        fft_length = _fft_length(n_samples + margin)
    hop = fft_length - margin
    return _BlockPlan(fft_length, hop, -(-n_samples // hop))


class _Segments:
    """The reference cut into segments around blocks of ``hop`` samples and transformed once; correlations with
    it and filtering of it then cost one short transform per block.

    Block ``b`` covers samples ``[b hop, (b + 1) hop)``; its segment ``[b hop - N, (b + 1) hop + N/2)`` fills the
    transform. With the block at the frame's start, the circular correlation of a block of ``s`` and the segment
    holds lag ``l`` at index ``(l - N) mod M``, free of wrap-around for ``l`` in ``-N/2 .. N``.

    On the CPU, blocks are handled :data:`CHUNK_LENGTH` transformed samples at a time, so that every
    intermediate buffer stays small: buffers of the whole signal's size cost more in page faults and cache misses
    than the transforms themselves.
    """

    def __init__(self, reference: torch.Tensor, taps: int) -> None:
        self.taps = taps
        self.dtype = reference.dtype
        self.n_samples = reference.shape[-1]
        self.plan = plan = _block_plan(self.n_samples, taps)
        # (a GPU takes all blocks at once: it has the memory bandwidth, and every chunk costs kernel launches)
        per_chunk = max(1, CHUNK_LENGTH // plan.fft_length) if reference.device.type == "cpu" else plan.count
        self.chunks = [(first, min(first + per_chunk, plan.count)) for first in range(0, plan.count, per_chunk)]
        # the segments' spectra, (..., blocks, M // 2 + 1) per chunk
        self.spectra = [torch.fft.rfft(self._cut(reference, first, end)) for first, end in self.chunks]

    def _cut(self, reference: torch.Tensor, first: int, end: int) -> torch.Tensor:
        """Segments ``first .. end - 1``, ``(..., end - first, M)``, zero-padded beyond the reference's ends."""
        plan = self.plan
        start = first * plan.hop - self.taps
        stop = (end - 1) * plan.hop - self.taps + plan.fft_length
        piece = reference[..., max(start, 0) : min(stop, self.n_samples)]
        if start < 0 or stop > self.n_samples:
            piece = F.pad(piece, (max(0, -start), max(0, stop - self.n_samples)))
        return piece.unfold(-1, plan.fft_length, plan.hop)

    def _frames(self, signal: torch.Tensor, first: int, end: int) -> torch.Tensor:
        """Blocks ``first .. end - 1`` of ``signal``, each at the start of a zeroed frame: ``(..., end - first, M)``."""
        plan = self.plan
        start, stop = first * plan.hop, min(end * plan.hop, self.n_samples)
        whole = (stop - start) // plan.hop  # the signal's last block may be cut short
        frames = signal.new_zeros(*signal.shape[:-1], end - first, plan.fft_length)
        frames[..., :whole, : plan.hop] = signal[..., start : start + whole * plan.hop].unflatten(-1, (whole, plan.hop))
        if whole < end - first:
            frames[..., whole, : stop - start - whole * plan.hop] = signal[..., start + whole * plan.hop : stop]
        return frames

    def correlate(self, signal: torch.Tensor) -> torch.Tensor:
        """``sum_t s[t] x[t - l]`` for ``signal s (..., T)``, lag ``l`` at index ``(l - N) mod M`` of the result
        ``(..., M)`` in the segments' dtype: one transform per block, then one product with the segments summed
        over blocks."""
        signal = signal.to(self.dtype)
        summed = 0
        for (first, end), segments in zip(self.chunks, self.spectra):
            spectra = torch.fft.rfft(self._frames(signal, first, end))
            # in place where no graph is recorded: one buffer less to allocate
            products = spectra * segments.conj() if spectra.requires_grad else spectra.mul_(segments.conj())
            summed = summed + products.sum(-2)
        return torch.fft.irfft(summed, n=self.plan.fft_length)

    def lags(self, correlation: torch.Tensor, first_lag: int) -> torch.Tensor:
        """Lags ``first_lag .. first_lag + N - 1`` (within ``-N/2 .. N``) of a :meth:`correlate` result."""
        start = self.plan.fft_length - self.taps + first_lag
        return correlation[..., start : start + self.taps]

    def filter(self, taps: torch.Tensor) -> torch.Tensor:
        """``sum_l h_l x[t - l]`` for ``taps h (..., N)`` at lags ``-N/2 .. N/2 - 1``: ``(..., T)``.

        Overlap-save: block ``b``'s samples start at index ``3N/2`` of its filtered segment."""
        plan = self.plan
        kernel = torch.fft.rfft(taps, n=plan.fft_length)[..., None, :]
        start = self.taps + self.taps // 2
        pieces = [
            torch.fft.irfft(segments * kernel, n=plan.fft_length)[..., start : start + plan.hop].flatten(-2)
            for segments in self.spectra
        ]
        return torch.cat(pieces, dim=-1)[..., : self.n_samples]


def _lagged_prefix_sums(head: torch.Tensor) -> torch.Tensor:
    """``P[d, m] = sum_{j < m} h[j] h[j + d]`` over ``head h (..., n)`` (zero beyond it), for ``d`` in ``0..n-1``
    and ``m`` in ``0..n``, flattened to ``(..., n (n + 1))``. Time runs along the last axis, where sums are fast."""
    size = head.shape[-1]
    lagged = F.pad(head, (0, size)).unfold(-1, size, 1)[..., :size, :]  # [d, j] = h[j + d]
    sums = (head[..., None, :] * lagged).cumsum(-1)
    return F.pad(sums, (1, 0)).flatten(-2)


@functools.lru_cache(maxsize=8)
def _cut_indices(taps: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Where the start cut ``C1[a, b] = P1[|a - b|, N/2 - max(a, b)]`` (lags ``< 0``) and the end cut
    ``C2[a, b] = P2[|a - b|, min(l_a, l_b)]`` (lags ``> 0``) read their tables, as flat indices ``(N/2, N/2)``
    and ``(N/2 - 1, N/2 - 1)``."""
    half = taps // 2
    rows = half + 1  # a table row: m = 0..N/2
    a = torch.arange(half, device=device)
    start = (a[:, None] - a).abs() * rows + half - torch.maximum(a[:, None], a)
    lag = torch.arange(1, half, device=device)
    end = (lag[:, None] - lag).abs() * rows + torch.minimum(lag[:, None], lag)
    return start, end


def _gram(autocorrelation: torch.Tensor, reference: torch.Tensor, taps: int) -> torch.Tensor:
    """Float64 Gram matrix ``G[a, b] = sum_{t in [0, T)} x[t - l_a] x[t - l_b]`` of the cut copies, lags
    ``l_a = a - N/2``, ``(..., N, N)``.

    It is the Toeplitz matrix of the autocorrelation ``r`` less the products of samples the cuts remove. The
    start removes ``t < 0``, which only copies of negative lag reach: ``sum_{s = max(a, b)}^{N/2 - 1} x[s - a]
    x[s - b]``, a prefix sum of lagged products of the first ``N/2`` samples. The end removes ``t >= T``, reached
    only by positive lags, the same on the time-reversed last ``N/2`` samples. ``O(N^2)`` work.
    """
    half = taps // 2
    r = autocorrelation.double()
    doubled = torch.cat([r[..., 1:].flip(-1), r], dim=-1)  # [N - 1 + k] = r[|k|]
    gram = doubled.unfold(-1, taps, 1).flip(-2)  # [a, b] = doubled[N - 1 - a + b]
    start_index, end_index = _cut_indices(taps, reference.device)
    start_cut = _lagged_prefix_sums(reference[..., :half].double())[..., start_index]
    end_cut = _lagged_prefix_sums(reference[..., -half:].flip(-1).double())[..., end_index]
    gram[..., :half, :half] -= start_cut
    gram[..., half + 1 :, half + 1 :] -= end_cut
    return gram


def _cholesky(gram: torch.Tensor) -> torch.Tensor:
    """The lower Cholesky factor of the symmetric positive definite ``gram (..., N, N)``.

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
    return factor


def _solve(factor: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
    """``G^-1 rhs`` for ``rhs (..., N)``, given ``G``'s Cholesky factor, in float64."""
    return torch.cholesky_solve(rhs.double()[..., None], factor)[..., 0]


def _fit(reference: torch.Tensor, processed: torch.Tensor, taps: int) -> tuple[_Segments, torch.Tensor, torch.Tensor]:
    """The reference's segments, the Cholesky factor of the ridged Gram matrix and the taps, all float64."""
    reference, processed = reference.double(), processed.double()
    segments = _Segments(reference, taps)
    autocorrelation = segments.lags(segments.correlate(reference), 0)
    gram = _gram(autocorrelation, reference, taps)
    eye = torch.eye(taps, dtype=gram.dtype, device=gram.device)
    factor = _cholesky(gram + RIDGE * autocorrelation[..., :1, None].double() * eye)
    return segments, factor, _solve(factor, segments.lags(segments.correlate(processed), -(taps // 2)))


def _project(reference: torch.Tensor, processed: torch.Tensor, taps: int) -> tuple[_Segments, torch.Tensor, Projection]:
    """The whole fit: the reference's segments, the Cholesky factor and the projection."""
    segments, factor, solution = _fit(reference, processed, taps)
    fitted = segments.filter(solution).to(processed.dtype)
    residual = processed - fitted
    return segments, factor, Projection(solution, fitted, residual, energy(residual), energy(fitted))


class _ProjectProcessed(torch.autograd.Function):
    """The fit, differentiable in the processed signal only, with a backward of two short transforms per block.

    With ``P = X G^-1 X^T`` (``X``: the cut copies, ``G`` their ridged Gram matrix), ``fitted = P y``, ``residual =
    y - P y`` and ``taps = G^-1 X^T y``, so the gradient is ``v + X G^-1 (X^T (w - v) + g_taps)``, where ``v`` and
    ``w`` are the whole gradients reaching ``residual`` and ``fitted`` (energies included).
    """

    @staticmethod
    def forward(ctx, reference: torch.Tensor, processed: torch.Tensor, taps: int):
        segments, factor, fit = _project(reference, processed, taps)
        ctx.set_materialize_grads(False)
        ctx.segments = segments
        ctx.save_for_backward(factor, fit.fitted, fit.residual)
        return tuple(fit)

    @staticmethod
    def backward(ctx, grad_taps, grad_fitted, grad_residual, grad_residual_energy, grad_signal_energy):
        factor, fitted, residual = ctx.saved_tensors
        segments: _Segments = ctx.segments
        to_residual = _whole_gradient(grad_residual, grad_residual_energy, residual)
        to_fitted = _whole_gradient(grad_fitted, grad_signal_energy, fitted)
        rhs = grad_taps
        if to_fitted is not None or to_residual is not None:
            difference = (0 if to_fitted is None else to_fitted) - (0 if to_residual is None else to_residual)
            correlation = segments.lags(segments.correlate(difference), -(segments.taps // 2))
            rhs = correlation if rhs is None else rhs + correlation
        if rhs is None:
            return None, None, None
        grad = segments.filter(_solve(factor, rhs)).to(residual.dtype)
        return None, grad if to_residual is None else grad + to_residual, None


def _whole_gradient(grad: torch.Tensor | None, energy_grad: torch.Tensor | None, signal: torch.Tensor):
    """The gradient reaching ``signal`` directly and through its energy (``None`` when neither)."""
    whole = None if energy_grad is None else 2 * energy_grad.to(signal.dtype)[..., None] * signal
    if grad is not None:
        whole = grad if whole is None else whole + grad
    return whole


def project(reference: torch.Tensor, processed: torch.Tensor, taps: int) -> Projection:
    """Least-squares fit of ``processed (..., T)`` by ``taps`` delayed copies of ``reference (..., T)``.

    The reference must not be silent in any channel (check it first). Differentiable in both signals; when the
    reference needs no gradient, the backward pass is a hand-written one (see :class:`_ProjectProcessed`).
    """
    taps = check_linear_taps(taps)
    n_samples = reference.shape[-1]
    if n_samples < taps:
        raise ValueError(f"linear_taps={taps} needs signals of at least {taps} samples, got {n_samples}")
    if reference.requires_grad and torch.is_grad_enabled():
        return _project(reference, processed, taps)[2]
    return Projection(*_ProjectProcessed.apply(reference, processed, taps))
