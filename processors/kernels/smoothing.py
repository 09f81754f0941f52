"""The attack/release one-pole: ``s[n] = a s[n-1] + (1 - a) r[n]`` with ``a`` the attack coefficient while
``r`` rises above ``s`` and the release coefficient otherwise (``one_pole``: one coefficient), its exact
adjoint, their CPU compilation, the autograd Function and the entry points."""

from __future__ import annotations

import torch
from numba import njit, prange

from processors.kernels.dispatch import Kernel, needed, on_device
from processors.kernels.steps import ballistics_step


# --- per-signal bodies (1-D arrays), shared by the CPU and CUDA compilations --------------------------------
def _smooth_forward_1d(r, a_att, a_rel, s, attack):
    prev = 0.0
    for n in range(r.shape[0]):
        attack[n], prev = ballistics_step(r[n] * 1.0, prev, a_att, a_rel)
        s[n] = prev


def _smooth_backward_1d(grad_s, r, s, attack, a_att, a_rel, grad_r, grad_a):
    # lam[n] = dLoss/ds[n] including the future: lam[n] = grad_s[n] + a[n+1] lam[n+1]
    carry = 0.0
    g_att = 0.0
    g_rel = 0.0
    size = r.shape[0]
    for k in range(size):
        n = size - 1 - k
        lam = grad_s[n] + carry
        a = a_att if attack[n] else a_rel
        prev = s[n - 1] * 1.0 if n > 0 else 0.0
        grad_r[n] = lam * (1.0 - a)
        d = lam * (prev - r[n])
        if attack[n]:
            g_att += d
        else:
            g_rel += d
        carry = lam * a
    grad_a[0] = g_att
    grad_a[1] = g_rel


# --- CPU compilation: threads over signals ------------------------------------------------------------------
_smooth_forward_cpu1 = njit(cache=True)(_smooth_forward_1d)

_smooth_backward_cpu1 = njit(cache=True)(_smooth_backward_1d)


def _smooth_forward_cpu(r, a_att, a_rel, s, attack):
    for i in prange(r.shape[0]):
        _smooth_forward_cpu1(r[i], a_att[i], a_rel[i], s[i], attack[i])


def _smooth_backward_cpu(grad_s, r, s, attack, a_att, a_rel, grad_r, grad_a):
    for i in prange(r.shape[0]):
        _smooth_backward_cpu1(grad_s[i], r[i], s[i], attack[i], a_att[i], a_rel[i], grad_r[i], grad_a[i])


# --- autograd Function and entry points -------------------------------------------------------------------
_FORWARD = Kernel("smooth_forward", _smooth_forward_cpu)
_BACKWARD = Kernel("smooth_backward", _smooth_backward_cpu)


class _Smooth(torch.autograd.Function):
    """The attack/release one-pole: r (S, T), coefficients (S,) -> (s (S, T), the attack choices (S, T))."""

    @staticmethod
    def forward(r, a_att, a_rel):
        cuda = on_device(r)
        s_k, s = Kernel.empty(r.shape, r.dtype, r.device, cuda)
        attack_k, attack = Kernel.empty(r.shape, torch.uint8, r.device, cuda)
        _FORWARD(cuda, r.shape[0], Kernel.along_time(r, cuda), *_coefficients(a_att, a_rel), s_k, attack_k)
        return s, attack

    @staticmethod
    def setup_context(ctx, inputs, output):
        r, a_att, a_rel = inputs
        s, attack = output
        ctx.mark_non_differentiable(attack)
        ctx.save_for_backward(r, s, attack, a_att, a_rel)

    @staticmethod
    def backward(ctx, grad_s, _):
        if not any(ctx.needs_input_grad):
            return None, None, None
        r, s, attack, a_att, a_rel = ctx.saved_tensors
        cuda = on_device(r)
        grad_r_k, grad_r = Kernel.empty(r.shape, s.dtype, r.device, cuda)
        grad_a = torch.empty((r.shape[0], 2), dtype=torch.float64, device=r.device)
        _BACKWARD(
            cuda,
            r.shape[0],
            *(Kernel.along_time(t, cuda) for t in (grad_s, r, s, attack)),
            *_coefficients(a_att, a_rel),
            grad_r_k,
            grad_a,
        )
        return needed(ctx, grad_r, grad_a[:, 0].to(a_att.dtype), grad_a[:, 1].to(a_att.dtype))


def _coefficients(*coefficients: torch.Tensor) -> list[torch.Tensor]:
    return [a.detach().double().contiguous() for a in coefficients]


def time_coefficient(time_ms: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """One-pole coefficient a = exp(-1 / (tau sample_rate)) for a time constant tau = time_ms / 1000."""
    return torch.exp(-1000.0 / (time_ms * sample_rate))


def smooth(r: torch.Tensor, a_attack: torch.Tensor, a_release: torch.Tensor) -> torch.Tensor:
    """Attack/release one-pole of r (S, T) with per-signal coefficients (S,); differentiable in all three."""
    return _Smooth.apply(r, a_attack, a_release)[0]


def one_pole(r: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """Plain one-pole s[n] = a s[n-1] + (1 - a) r[n], s[-1] = 0, of r (S, T) with coefficients (S,)."""
    return _Smooth.apply(r, a, a)[0]
