"""The lookahead limiter's gain: a forward-looking running minimum of the required gain over the lookahead, a
moving average over the same length (a linear ramp into every peak, never above the required gain), then an
instant attack and a one-pole release towards 1; its exact adjoint, its CPU compilation, the autograd Function
and the entry points."""

from __future__ import annotations

import numpy as np
import torch
from numba import njit, prange

from processors.kernels.dispatch import Kernel, needed, on_device


# --- per-signal bodies (1-D arrays), shared by the CPU and CUDA compilations --------------------------------
def _limiter_forward_1d(g_req, window, alpha, g, argmin, ramp, queue):
    size = g_req.shape[0]
    # forward-looking running minimum over [n, n + window - 1] (monotonic queue, walked backwards in time)
    head = 0
    tail = 0
    for k in range(size):
        n = size - 1 - k
        while tail > head and g_req[queue[tail - 1]] >= g_req[n]:
            tail -= 1
        queue[tail] = n
        tail += 1
        while queue[head] > n + window - 1:
            head += 1
        argmin[n] = queue[head]
    # moving average of the minimum over [n - window + 1, n] (1 before the start), then release
    total = window * 1.0
    prev = 1.0
    for n in range(size):
        total += g_req[argmin[n]]
        if n >= window:
            total -= g_req[argmin[n - window]]
        else:
            total -= 1.0
        avg = total / window
        if avg > g_req[n]:  # round-off guard only: avg <= g_req holds exactly in real arithmetic
            avg = g_req[n] * 1.0
        rise = prev + (1.0 - alpha) * (1.0 - prev)
        if avg <= rise:
            prev = avg
            ramp[n] = 1
        else:
            prev = rise
            ramp[n] = 0
        g[n] = prev


def _limiter_backward_1d(grad_g, g, argmin, ramp, window, alpha, grad_req, grad_avg, grad_alpha):
    size = g.shape[0]
    carry = 0.0
    g_alpha = 0.0
    for k in range(size):
        n = size - 1 - k
        lam = grad_g[n] + carry
        if ramp[n]:
            grad_avg[n] = lam
            carry = 0.0
        else:
            grad_avg[n] = 0.0
            prev = g[n - 1] * 1.0 if n > 0 else 1.0
            # rise = prev + (1 - alpha)(1 - prev): d/dalpha = prev - 1, d/dprev = alpha
            g_alpha += lam * (prev - 1.0)
            carry = lam * alpha
    # d avg[n] / d min[k] = 1/window for n in [k, k + window - 1]; d min[k] / d g_req[argmin[k]] = 1
    total = 0.0
    for j in range(size):
        k = size - 1 - j
        total += grad_avg[k]
        if k + window <= size - 1:
            total -= grad_avg[k + window]
        grad_req[argmin[k]] += total / window
    grad_alpha[0] = g_alpha


# --- CPU compilation: threads over signals ------------------------------------------------------------------
_limiter_forward_cpu1 = njit(cache=True)(_limiter_forward_1d)

_limiter_backward_cpu1 = njit(cache=True)(_limiter_backward_1d)


@njit(parallel=True, cache=True)
def _limiter_forward_cpu(g_req, window, alpha, g, argmin, ramp):
    for i in prange(g_req.shape[0]):
        queue = np.empty(g_req.shape[1], dtype=np.int64)
        _limiter_forward_cpu1(g_req[i], window[i], alpha[i], g[i], argmin[i], ramp[i], queue)


@njit(parallel=True, cache=True)
def _limiter_backward_cpu(grad_g, g, argmin, ramp, window, alpha, grad_req, grad_alpha):
    for i in prange(g.shape[0]):
        grad_avg = np.empty(g.shape[1], dtype=np.float64)
        _limiter_backward_cpu1(
            grad_g[i], g[i], argmin[i], ramp[i], window[i], alpha[i], grad_req[i], grad_avg, grad_alpha[i]
        )


# --- autograd Function and entry points -------------------------------------------------------------------
_FORWARD = Kernel("limiter_forward", _limiter_forward_cpu)
_BACKWARD = Kernel("limiter_backward", _limiter_backward_cpu)


class _LimiterGain(torch.autograd.Function):
    """The limiter's gain: g_req (S, T), lookahead (S,) samples, release coefficient (S,) -> (g (S, T), and
    the forward's records: where each running minimum came from, and whether the ramp or the release won)."""

    @staticmethod
    def forward(g_req, window, alpha):
        cuda, shape = on_device(g_req), g_req.shape
        g_k, g = Kernel.empty(shape, g_req.dtype, g_req.device, cuda)
        argmin_k, argmin = Kernel.empty(shape, torch.int64, g_req.device, cuda)
        ramp_k, ramp = Kernel.empty(shape, torch.uint8, g_req.device, cuda)
        scratch = [Kernel.empty(shape, torch.int64, g_req.device, cuda)[0]] if cuda else []  # the CPU allocates its own
        _FORWARD(
            cuda,
            shape[0],
            Kernel.along_time(g_req, cuda),
            window.to(torch.int64).contiguous(),
            alpha.detach().double().contiguous(),
            g_k,
            argmin_k,
            ramp_k,
            *scratch,
        )
        return g, argmin, ramp

    @staticmethod
    def setup_context(ctx, inputs, output):
        _, window, alpha = inputs
        g, argmin, ramp = output
        ctx.mark_non_differentiable(argmin, ramp)
        ctx.save_for_backward(g, argmin, ramp, window, alpha)

    @staticmethod
    def backward(ctx, grad_g, *_):
        if not any(ctx.needs_input_grad):
            return None, None, None
        g, argmin, ramp, window, alpha = ctx.saved_tensors
        cuda = on_device(g)
        grad_req_k, grad_req = Kernel.empty(g.shape, g.dtype, g.device, cuda)
        grad_req_k.zero_()
        scratch = [Kernel.empty(g.shape, torch.float64, g.device, cuda)[0]] if cuda else []  # the CPU allocates its own
        grad_alpha = torch.empty((g.shape[0], 1), dtype=torch.float64, device=g.device)
        _BACKWARD(
            cuda,
            g.shape[0],
            *(Kernel.along_time(t, cuda) for t in (grad_g, g, argmin, ramp)),
            window.to(torch.int64).contiguous(),
            alpha.detach().double().contiguous(),
            grad_req_k,
            *scratch,
            grad_alpha,
        )
        return needed(ctx, grad_req, None, grad_alpha[:, 0].to(alpha.dtype))


def limiter_gain(
    g_req: torch.Tensor, lookahead_samples: torch.Tensor, release_coefficient: torch.Tensor
) -> torch.Tensor:
    """Lookahead ramp + release of a required gain g_req (S, T) in (0, 1]; ``lookahead_samples`` (S,) the ramp's
    length (whole samples >= 1), ``release_coefficient`` (S,) the one-pole release coefficient (see
    :func:`time_coefficient`). Returns g (S, T) with g <= g_req; differentiable in g_req and the coefficient."""
    if bool((lookahead_samples < 1).any()):
        raise ValueError("limiter lookahead must be at least 1 sample")
    # Ones before the start (no reduction there) make the ramp before an early peak start before sample 0,
    # so the first samples are already at or below g_req.
    pad = int(lookahead_samples.max()) - 1
    padded = torch.nn.functional.pad(g_req, (pad, 0), value=1.0) if pad else g_req
    return _LimiterGain.apply(padded, lookahead_samples.to(g_req.device), release_coefficient)[0][:, pad:]


def window_samples(time_ms: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """A time in ms -> a whole number of samples >= 1 (int64)."""
    return torch.clamp(torch.round(time_ms.detach() * (sample_rate / 1000.0)), min=1).to(torch.int64)
