"""The attack/release one-pole: ``s[n] = a s[n-1] + (1 - a) r[n]`` with ``a`` the attack coefficient while
``r`` rises above ``s`` and the release coefficient otherwise (``one_pole``: one coefficient), its exact
adjoint, their CPU compilation, the autograd Function and the entry points."""

from __future__ import annotations

import torch
from numba import njit, prange

from processors.kernels.dispatch import host, launch_cuda, on_device, run_cpu
from processors.kernels.dispatch import needed as _needed
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


@njit(parallel=True, cache=True)
def _smooth_forward_cpu(r, a_att, a_rel, s, attack):
    for i in prange(r.shape[0]):
        _smooth_forward_cpu1(r[i], a_att[i], a_rel[i], s[i], attack[i])

@njit(parallel=True, cache=True)
def _smooth_backward_cpu(grad_s, r, s, attack, a_att, a_rel, grad_r, grad_a):
    for i in prange(r.shape[0]):
        _smooth_backward_cpu1(grad_s[i], r[i], s[i], attack[i], a_att[i], a_rel[i], grad_r[i], grad_a[i])


# --- autograd Function and entry points -------------------------------------------------------------------
class _Smooth(torch.autograd.Function):
    """The attack/release one-pole: r (S, T), coefficients (S,) -> (s (S, T), the attack choices (S, T))."""

    @staticmethod
    def forward(r, a_att, a_rel):
        a_att64 = a_att.detach().double().contiguous()
        a_rel64 = a_rel.detach().double().contiguous()
        if on_device(r):
            rt = r.detach().t().contiguous()
            st = torch.empty_like(rt)
            attack = torch.empty(rt.shape, dtype=torch.uint8, device=r.device)
            launch_cuda("smooth_forward", rt.shape[1], rt, a_att64, a_rel64, st, attack)
            s = st.t()
        else:
            r_c = r.detach().contiguous()
            s = torch.empty_like(r_c)
            attack = torch.empty(r_c.shape, dtype=torch.uint8)
            run_cpu(_smooth_forward_cpu, r_c.shape[0], r_c.numpy(), a_att64.numpy(), a_rel64.numpy(), s.numpy(),
                     attack.numpy())
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
        a_att64, a_rel64 = (a.detach().double().contiguous() for a in (a_att, a_rel))
        if on_device(r):
            # attack was stored time-major (T, S); s is a transposed view of a time-major tensor
            rt, st = r.detach().t().contiguous(), s.t().contiguous()
            grad_rt = torch.empty_like(rt)
            grad_a = torch.empty((rt.shape[1], 2), dtype=torch.float64, device=r.device)
            launch_cuda("smooth_backward", rt.shape[1], grad_s.t().contiguous(), rt, st, attack, a_att64, a_rel64,
                         grad_rt, grad_a)
            grad_r = grad_rt.t()
        else:
            grad_r = torch.empty_like(s)
            grad_a = torch.empty((r.shape[0], 2), dtype=torch.float64)
            run_cpu(_smooth_backward_cpu, r.shape[0], host(grad_s), host(r), s.numpy(), attack.numpy(),
                     a_att64.numpy(), a_rel64.numpy(), grad_r.numpy(), grad_a.numpy())
        return _needed(ctx, grad_r, grad_a[:, 0].to(a_att.dtype), grad_a[:, 1].to(a_att.dtype))

def time_coefficient(time_ms: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """One-pole coefficient a = exp(-1 / (tau sample_rate)) for a time constant tau = time_ms / 1000."""
    return torch.exp(-1000.0 / (time_ms * sample_rate))

def smooth(r: torch.Tensor, a_attack: torch.Tensor, a_release: torch.Tensor) -> torch.Tensor:
    """Attack/release one-pole of r (S, T) with per-signal coefficients (S,); differentiable in all three."""
    return _Smooth.apply(r, a_attack, a_release)[0]

def one_pole(r: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """Plain one-pole s[n] = a s[n-1] + (1 - a) r[n], s[-1] = 0, of r (S, T) with coefficients (S,)."""
    return _Smooth.apply(r, a, a)[0]
