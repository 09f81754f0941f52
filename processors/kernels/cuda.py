"""CUDA builds of the recursions in processors.kernels: one thread per signal, time-major (T, S) arrays.

Imported only when a CUDA tensor reaches a kernel (or by the CUDA-simulator test), so CPU-only machines never
load numba.cuda. The per-signal bodies are the very functions the CPU path compiles.
"""

from __future__ import annotations

from numba import cuda

from processors.kernels.compression import (
    _compressor_backward_1d,
    _compressor_forward_1d,
    _peak_compressor_backward_1d,
    _peak_compressor_forward_1d,
)
from processors.kernels.limiter import _limiter_backward_1d, _limiter_forward_1d
from processors.kernels.smoothing import _smooth_backward_1d, _smooth_forward_1d

_smooth_fwd = cuda.jit(device=True)(_smooth_forward_1d)
_smooth_bwd = cuda.jit(device=True)(_smooth_backward_1d)
_comp_fwd = cuda.jit(device=True)(_compressor_forward_1d)
_comp_bwd = cuda.jit(device=True)(_compressor_backward_1d)
_peak_fwd = cuda.jit(device=True)(_peak_compressor_forward_1d)
_peak_bwd = cuda.jit(device=True)(_peak_compressor_backward_1d)
_lim_fwd = cuda.jit(device=True)(_limiter_forward_1d)
_lim_bwd = cuda.jit(device=True)(_limiter_backward_1d)


@cuda.jit
def smooth_forward(r, a_att, a_rel, s, attack):
    i = cuda.grid(1)
    if i < r.shape[1]:
        _smooth_fwd(r[:, i], a_att[i], a_rel[i], s[:, i], attack[:, i])


@cuda.jit
def smooth_backward(grad_s, r, s, attack, a_att, a_rel, grad_r, grad_a):
    i = cuda.grid(1)
    if i < r.shape[1]:
        _smooth_bwd(grad_s[:, i], r[:, i], s[:, i], attack[:, i], a_att[i], a_rel[i], grad_r[:, i], grad_a[i])


@cuda.jit
def compressor_forward(det, scale, floor, thr, ratio, knee, makeup, a_att, a_rel, gain, s, attack, region, over):
    i = cuda.grid(1)
    if i < det.shape[1]:
        _comp_fwd(
            det[:, i],
            scale,
            floor,
            thr[i],
            ratio[i],
            knee[i],
            makeup[i],
            a_att[i],
            a_rel[i],
            gain[:, i],
            s[:, i],
            attack[:, i],
            region[:, i],
            over[:, i],
        )


@cuda.jit
def compressor_backward(
    grad_gain, grad_s, det, gain, s, attack, region, over, scale, floor, thr, ratio, knee, a_att, a_rel, grad_det, grads
):
    i = cuda.grid(1)
    if i < det.shape[1]:
        _comp_bwd(
            grad_gain[:, i],
            grad_s[:, i],
            det[:, i],
            gain[:, i],
            s[:, i],
            attack[:, i],
            region[:, i],
            over[:, i],
            scale,
            floor,
            thr[i],
            ratio[i],
            knee[i],
            a_att[i],
            a_rel[i],
            grad_det[:, i],
            grads[i],
        )


@cuda.jit
def peak_compressor_forward(x, thr, ratio, knee, makeup, a_att, a_rel, y, gain, s, attack, region, over, pick):
    i = cuda.grid(1)
    if i < x.shape[1]:
        _peak_fwd(
            x[:, i, :],
            thr[i],
            ratio[i],
            knee[i],
            makeup[i],
            a_att[i],
            a_rel[i],
            y[:, i, :],
            gain[:, i],
            s[:, i],
            attack[:, i],
            region[:, i],
            over[:, i],
            pick[:, i],
        )


@cuda.jit
def peak_compressor_backward(
    grad_y, grad_s, x, gain, s, attack, region, over, pick, thr, ratio, knee, a_att, a_rel, grad_x, grads
):
    i = cuda.grid(1)
    if i < x.shape[1]:
        _peak_bwd(
            grad_y[:, i, :],
            grad_s[:, i],
            x[:, i, :],
            gain[:, i],
            s[:, i],
            attack[:, i],
            region[:, i],
            over[:, i],
            pick[:, i],
            thr[i],
            ratio[i],
            knee[i],
            a_att[i],
            a_rel[i],
            grad_x[:, i, :],
            grads[i],
        )


@cuda.jit
def limiter_forward(g_req, window, alpha, g, argmin, ramp, queue):
    i = cuda.grid(1)
    if i < g_req.shape[1]:
        _lim_fwd(g_req[:, i], window[i], alpha[i], g[:, i], argmin[:, i], ramp[:, i], queue[:, i])


@cuda.jit
def limiter_backward(grad_g, g, argmin, ramp, window, alpha, grad_req, grad_avg, grad_alpha):
    i = cuda.grid(1)
    if i < g.shape[1]:
        _lim_bwd(
            grad_g[:, i],
            g[:, i],
            argmin[:, i],
            ramp[:, i],
            window[i],
            alpha[i],
            grad_req[:, i],
            grad_avg[:, i],
            grad_alpha[i],
        )


KERNELS = {
    "smooth_forward": smooth_forward,
    "smooth_backward": smooth_backward,
    "compressor_forward": compressor_forward,
    "compressor_backward": compressor_backward,
    "peak_compressor_forward": peak_compressor_forward,
    "peak_compressor_backward": peak_compressor_backward,
    "limiter_forward": limiter_forward,
    "limiter_backward": limiter_backward,
}
