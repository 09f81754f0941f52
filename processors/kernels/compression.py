"""The compressor after its detector in one pass (level in dB, soft-knee static curve, gain reduction, the
attack/release ballistics, make-up) and with the peak detector fused in, their exact adjoints, their CPU
compilation (the peak compressor's forward in vectorised blocks, ``kernels.blocked``), the autograd Functions
and the entry points."""

from __future__ import annotations

import math

import torch
from numba import njit, prange

from processors.kernels.blocked import peak_compressor_forward_blocked
from processors.kernels.dispatch import Kernel, needed, on_device
from processors.kernels.steps import (
    LEVEL_FLOOR,
    LN10,
    LN10_OVER_20,
    ballistics_step,
    compressor_step_adjoint,
    gain_reduction,
)


# --- per-signal bodies (1-D arrays), shared by the CPU and CUDA compilations --------------------------------
def _compressor_forward_1d(det, scale, floor, thr, ratio, knee, makeup, a_att, a_rel, gain, s, attack, region, over_db):
    # det: detector signal (peak amplitude, or mean square); level L = scale log10(det + floor) in dB
    slope = 1.0 - 1.0 / ratio
    # below the knee in the detector's own units: no logarithm needed there (r = 0 on both sides of the edge)
    det_knee = math.pow(10.0, (thr - 0.5 * knee) / scale) - floor
    prev = 0.0
    for n in range(det.shape[0]):
        if det[n] < det_knee:
            over = -math.inf
        else:
            over = scale * math.log10(det[n] + floor) - thr
        over_db[n] = over
        rn, region[n] = gain_reduction(over, slope, knee)
        attack[n], prev = ballistics_step(rn, prev, a_att, a_rel)
        s[n] = prev
        gain[n] = math.exp((makeup - prev) * LN10_OVER_20)


def _compressor_backward_1d(
    grad_gain,
    grad_s,
    det,
    gain,
    s,
    attack,
    region,
    over_db,
    scale,
    floor,
    thr,
    ratio,
    knee,
    a_att,
    a_rel,
    grad_det,
    grads,
):
    # grads: d/d threshold, ratio, knee, makeup, a_attack, a_release
    slope = 1.0 - 1.0 / ratio
    d_slope = 1.0 / (ratio * ratio)
    carry = 0.0
    g_thr = 0.0
    g_ratio = 0.0
    g_knee = 0.0
    g_makeup = 0.0
    g_att = 0.0
    g_rel = 0.0
    size = det.shape[0]
    for k in range(size):
        n = size - 1 - k
        gg = grad_gain[n] * gain[n] * LN10_OVER_20  # gain = 10^((makeup - s) / 20)
        g_makeup += gg
        prev = s[n - 1] * 1.0 if n > 0 else 0.0
        d_coef, carry, d_level, d_ratio, d_knee = compressor_step_adjoint(
            grad_s[n] - gg + carry, prev, over_db[n] * 1.0, region[n], attack[n], a_att, a_rel, slope, d_slope, knee
        )
        if attack[n]:
            g_att += d_coef
        else:
            g_rel += d_coef
        g_ratio += d_ratio
        g_knee += d_knee
        g_thr -= d_level
        grad_det[n] = d_level * scale / (LN10 * (det[n] + floor))
    grads[0] = g_thr
    grads[1] = g_ratio
    grads[2] = g_knee
    grads[3] = g_makeup
    grads[4] = g_att
    grads[5] = g_rel


def _peak_compressor_forward_1d(x, thr, ratio, knee, makeup, a_att, a_rel, y, gain, s, attack, region, over_db, pick):
    # x, y: (T, C) views; the detector is the per-sample maximum of |x| over the C channels (C = 1: unlinked)
    channels = x.shape[1]
    slope = 1.0 - 1.0 / ratio
    det_knee = math.pow(10.0, (thr - 0.5 * knee) / 20.0) - LEVEL_FLOOR
    prev = 0.0
    for n in range(x.shape[0]):
        det = abs(x[n, 0]) * 1.0
        k = 0
        for c in range(1, channels):
            v = abs(x[n, c]) * 1.0
            if v > det:
                det = v
                k = c
        pick[n] = k
        if det < det_knee:
            over = -math.inf
        else:
            over = 20.0 * math.log10(det + LEVEL_FLOOR) - thr
        over_db[n] = over
        rn, region[n] = gain_reduction(over, slope, knee)
        attack[n], prev = ballistics_step(rn, prev, a_att, a_rel)
        s[n] = prev
        g = math.exp((makeup - prev) * LN10_OVER_20)
        gain[n] = g
        for c in range(channels):
            y[n, c] = x[n, c] * g


def _peak_compressor_backward_1d(
    grad_y, grad_s, x, gain, s, attack, region, over_db, pick, thr, ratio, knee, a_att, a_rel, grad_x, grads
):
    # grads: d/d threshold, ratio, knee, makeup, a_attack, a_release
    channels = x.shape[1]
    slope = 1.0 - 1.0 / ratio
    d_slope = 1.0 / (ratio * ratio)
    carry = 0.0
    g_thr = 0.0
    g_ratio = 0.0
    g_knee = 0.0
    g_makeup = 0.0
    g_att = 0.0
    g_rel = 0.0
    size = x.shape[0]
    for j in range(size):
        n = size - 1 - j
        g = gain[n] * 1.0
        dot = 0.0
        for c in range(channels):
            dot += grad_y[n, c] * x[n, c]
            grad_x[n, c] = grad_y[n, c] * g
        gg = dot * g * LN10_OVER_20  # gain = 10^((makeup - s) / 20)
        g_makeup += gg
        prev = s[n - 1] * 1.0 if n > 0 else 0.0
        d_coef, carry, d_level, d_ratio, d_knee = compressor_step_adjoint(
            grad_s[n] - gg + carry, prev, over_db[n] * 1.0, region[n], attack[n], a_att, a_rel, slope, d_slope, knee
        )
        if attack[n]:
            g_att += d_coef
        else:
            g_rel += d_coef
        if region[n] == 0:
            continue
        g_ratio += d_ratio
        g_knee += d_knee
        g_thr -= d_level
        k = pick[n]
        xv = x[n, k] * 1.0
        if xv != 0.0:
            d_det = d_level * 20.0 / (LN10 * (abs(xv) + LEVEL_FLOOR))
            grad_x[n, k] += d_det if xv > 0.0 else -d_det
    grads[0] = g_thr
    grads[1] = g_ratio
    grads[2] = g_knee
    grads[3] = g_makeup
    grads[4] = g_att
    grads[5] = g_rel


# --- CPU compilation: threads over signals ------------------------------------------------------------------
_compressor_forward_cpu1 = njit(cache=True)(_compressor_forward_1d)

_compressor_backward_cpu1 = njit(cache=True)(_compressor_backward_1d)

_peak_compressor_backward_cpu1 = njit(cache=True)(_peak_compressor_backward_1d)


def _compressor_forward_cpu(
    det, scale, floor, thr, ratio, knee, makeup, a_att, a_rel, gain, s, attack, region, over_db
):
    for i in prange(det.shape[0]):
        _compressor_forward_cpu1(
            det[i],
            scale,
            floor,
            thr[i],
            ratio[i],
            knee[i],
            makeup[i],
            a_att[i],
            a_rel[i],
            gain[i],
            s[i],
            attack[i],
            region[i],
            over_db[i],
        )


def _compressor_backward_cpu(
    grad_gain,
    grad_s,
    det,
    gain,
    s,
    attack,
    region,
    over_db,
    scale,
    floor,
    thr,
    ratio,
    knee,
    a_att,
    a_rel,
    grad_det,
    grads,
):
    for i in prange(det.shape[0]):
        _compressor_backward_cpu1(
            grad_gain[i],
            grad_s[i],
            det[i],
            gain[i],
            s[i],
            attack[i],
            region[i],
            over_db[i],
            scale,
            floor,
            thr[i],
            ratio[i],
            knee[i],
            a_att[i],
            a_rel[i],
            grad_det[i],
            grads[i],
        )


def _peak_compressor_forward_cpu(x, thr, ratio, knee, makeup, a_att, a_rel, y, gain, s, attack, region, over_db, pick):
    for i in prange(x.shape[0]):
        peak_compressor_forward_blocked(
            x[i],
            thr[i],
            ratio[i],
            knee[i],
            makeup[i],
            a_att[i],
            a_rel[i],
            y[i],
            gain[i],
            s[i],
            attack[i],
            region[i],
            over_db[i],
            pick[i],
        )


def _peak_compressor_backward_cpu(
    grad_y, grad_s, x, gain, s, attack, region, over_db, pick, thr, ratio, knee, a_att, a_rel, grad_x, grads
):
    for i in prange(x.shape[0]):
        _peak_compressor_backward_cpu1(
            grad_y[i].T,
            grad_s[i],
            x[i].T,
            gain[i],
            s[i],
            attack[i],
            region[i],
            over_db[i],
            pick[i],
            thr[i],
            ratio[i],
            knee[i],
            a_att[i],
            a_rel[i],
            grad_x[i].T,
            grads[i],
        )


# --- autograd Functions and entry points ------------------------------------------------------------------
_FORWARD = Kernel("compressor_forward", _compressor_forward_cpu)
_BACKWARD = Kernel("compressor_backward", _compressor_backward_cpu)
_PEAK_FORWARD = Kernel("peak_compressor_forward", _peak_compressor_forward_cpu)
_PEAK_BACKWARD = Kernel("peak_compressor_backward", _peak_compressor_backward_cpu)


def _parameters(*parameters: torch.Tensor) -> list[torch.Tensor]:
    return [p.detach().double().contiguous() for p in parameters]


class _Compressor(torch.autograd.Function):
    """Level, soft-knee static curve, ballistics and make-up in one pass: detector signal (S, T) ->
    (linear gain, smoothed gain reduction s in dB, both (S, T), and the forward's records)."""

    @staticmethod
    def forward(det, scale, floor, threshold, ratio, knee, makeup, a_att, a_rel):
        cuda, shape = on_device(det), det.shape
        (gain_k, gain), (s_k, s) = (Kernel.empty(shape, det.dtype, det.device, cuda) for _ in range(2))
        (attack_k, attack), (region_k, region) = (Kernel.empty(shape, torch.uint8, det.device, cuda) for _ in range(2))
        over_k, over = Kernel.empty(shape, torch.float64, det.device, cuda)
        _FORWARD(
            cuda,
            shape[0],
            Kernel.along_time(det, cuda),
            scale,
            floor,
            *_parameters(threshold, ratio, knee, makeup, a_att, a_rel),
            gain_k,
            s_k,
            attack_k,
            region_k,
            over_k,
        )
        return gain, s, attack, region, over

    @staticmethod
    def setup_context(ctx, inputs, output):
        det, scale, floor, *params = inputs
        gain, s, attack, region, over = output
        ctx.mark_non_differentiable(attack, region, over)
        ctx.save_for_backward(det, gain, s, attack, region, over, *params)
        ctx.scale, ctx.floor = scale, floor

    @staticmethod
    def backward(ctx, grad_gain, grad_s, *_):
        if not any(ctx.needs_input_grad):
            return (None,) * 9
        det, gain, s, attack, region, over, *inputs = ctx.saved_tensors
        thr, ratio, knee, _, a_att, a_rel = _parameters(*inputs)
        cuda = on_device(det)
        grad_det_k, grad_det = Kernel.empty(det.shape, s.dtype, det.device, cuda)
        grads = torch.empty((det.shape[0], 6), dtype=torch.float64, device=det.device)
        _BACKWARD(
            cuda,
            det.shape[0],
            *(Kernel.along_time(t, cuda) for t in (grad_gain, grad_s, det, gain, s, attack, region, over)),
            ctx.scale,
            ctx.floor,
            thr,
            ratio,
            knee,
            a_att,
            a_rel,
            grad_det_k,
            grads,
        )
        grads = grads.to(inputs[0].dtype)
        return needed(ctx, grad_det, None, None, *(grads[:, j] for j in range(6)))


class _PeakCompressor(torch.autograd.Function):
    """The whole peak-detector compressor in one pass: x (S, C, T) -> (y (S, C, T), s (S, T) in dB, and the
    forward's records)."""

    @staticmethod
    def forward(x, threshold, ratio, knee, makeup, a_att, a_rel):
        cuda, (n_signals, _, size) = on_device(x), x.shape
        y_k, y = Kernel.empty(x.shape, x.dtype, x.device, cuda)
        (gain_k, gain), (s_k, s) = (Kernel.empty((n_signals, size), x.dtype, x.device, cuda) for _ in range(2))
        # float32 audio keeps its over_db record in float32 on the CPU: less traffic
        over_k, over = Kernel.empty((n_signals, size), torch.float64 if cuda else x.dtype, x.device, cuda)
        records = [Kernel.empty((n_signals, size), torch.uint8, x.device, cuda) for _ in range(3)]
        _PEAK_FORWARD(
            cuda,
            n_signals,
            Kernel.along_time(x, cuda),
            *_parameters(threshold, ratio, knee, makeup, a_att, a_rel),
            y_k,
            gain_k,
            s_k,
            records[0][0],
            records[1][0],
            over_k,
            records[2][0],
        )
        (_, attack), (_, region), (_, pick) = records
        return y, s, gain, attack, region, over, pick

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, *params = inputs
        y, s, gain, attack, region, over, pick = output
        ctx.mark_non_differentiable(gain, attack, region, over, pick)
        ctx.save_for_backward(x, gain, s, attack, region, over, pick, *params)
        ctx.set_materialize_grads(False)  # s is usually unused: no (S, T) tensor of zeros for its gradient

    @staticmethod
    def backward(ctx, grad_y, grad_s, *_):
        if not any(ctx.needs_input_grad) or (grad_y is None and grad_s is None):
            return (None,) * 7
        x, gain, s, attack, region, over, pick, *inputs = ctx.saved_tensors
        thr, ratio, knee, _, a_att, a_rel = _parameters(*inputs)
        cuda, (n_signals, _, size) = on_device(x), x.shape
        if grad_y is None:
            grad_y = torch.zeros_like(x)
        if grad_s is None:
            grad_s = torch.zeros(1, dtype=s.dtype, device=s.device).expand(n_signals, size)
            # on the CPU a stride-0 view: the kernel reads one zero over and over
            grad_s_k = grad_s.detach() if not cuda else Kernel.along_time(grad_s, cuda)
        else:
            grad_s_k = Kernel.along_time(grad_s, cuda)
        grad_x_k, grad_x = Kernel.empty(x.shape, x.dtype, x.device, cuda)
        grads = torch.empty((n_signals, 6), dtype=torch.float64, device=x.device)
        _PEAK_BACKWARD(
            cuda,
            n_signals,
            Kernel.along_time(grad_y, cuda),
            grad_s_k,
            *(Kernel.along_time(t, cuda) for t in (x, gain, s, attack, region, over, pick)),
            thr,
            ratio,
            knee,
            a_att,
            a_rel,
            grad_x_k,
            grads,
        )
        grads = grads.to(inputs[0].dtype)
        return needed(ctx, grad_x, *(grads[:, j] for j in range(6)))


def compressor(det, scale, floor, threshold_db, ratio, knee_db, makeup_db, a_attack, a_release):
    """The compressor's steps 1-5 after the detector, fused: level L = scale log10(det + floor) of the detector
    signal det (S, T) (peak amplitude: 20, 1e-12; mean square: 10, 1e-24), soft-knee static curve, gain
    reduction, attack/release ballistics, make-up. Parameters (S,). Returns (linear gain incl. make-up,
    smoothed gain reduction s >= 0 dB), both (S, T) and differentiable in every tensor input."""
    return _Compressor.apply(
        det, float(scale), float(floor), threshold_db, ratio, knee_db, makeup_db, a_attack, a_release
    )[:2]


def peak_compressor(x, threshold_db, ratio, knee_db, makeup_db, a_attack, a_release):
    """The compressor with the peak detector, fused end to end: x (S, C, T), the level of each signal the
    per-sample maximum of 20 log10(|x| + 1e-12) over its C channels (C = 1: unlinked); parameters (S,).
    Returns (y = x 10^((makeup_db - s) / 20) of shape (S, C, T), s (S, T) >= 0 dB), differentiable in all."""
    return _PeakCompressor.apply(x, threshold_db, ratio, knee_db, makeup_db, a_attack, a_release)[:2]
