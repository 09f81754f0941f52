"""The sequential recursions: compiled forward kernels and exact adjoint (backward-in-time) kernels.

Each recursion is written once as a plain per-signal function and compiled twice: with ``numba.njit`` for the
CPU (threads over signals when there are enough of them) and, only when a CUDA tensor arrives, with
``numba.cuda.jit`` in ``ballistics_cuda`` (one thread per signal, time-major layout so that a warp reads
adjacent addresses). Nothing CUDA is imported otherwise. One exception: on the CPU the peak compressor's
forward runs in blocks whose independent per-sample work is vectorised (``_peak_compressor_forward_blocked``);
it records what ``_peak_compressor_forward_1d`` records (over_db finite everywhere), for the shared backward.

- ``smooth(r, a_attack, a_release)``: s[n] = a s[n-1] + (1 - a) r[n], a = a_attack if r[n] > s[n-1] else
  a_release, s[-1] = 0; ``one_pole`` is the same with a single coefficient (RMS detector, slow stage).
- ``compressor(det, ...)``: the compressor after its detector in one pass: level in dB, soft-knee static
  curve, gain reduction, the ``smooth`` ballistics and the make-up gain; ``peak_compressor(x, ...)`` also
  takes the peak detector (maximum over linked channels) and applies the gain to x.
- ``limiter_gain(g_req, window, alpha)``: forward-looking running minimum of g_req over ``window`` samples,
  moving average over the same length (so g <= g_req everywhere), then g[n] = min(avg[n], rise[n]) with
  rise[n] = g[n-1] + (1 - alpha)(1 - g[n-1]) (instant attack to the ramp, release towards 1), g[-1] = 1.

The forward records its branch choices; the backward runs the adjoint recursion with those choices, so the
gradients are exact for the branches taken (``torch.autograd.gradcheck`` passes in float64).
Arithmetic inside the kernels is float64 whatever the tensor dtype.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from numba import njit, prange
from numba.extending import register_jitable

LN10 = math.log(10.0)
LN10_OVER_20 = LN10 / 20.0
LEVEL_FLOOR = 1e-12  # amplitude floor of the peak level detector (-240 dB)


# --- per-step helpers, inlined into every compilation below (CPU and CUDA) -----------------------------------
@register_jitable
def _ballistics_step(rn, prev, a_att, a_rel):
    """One step of s[n] = a s[n-1] + (1 - a) r[n]: (1 if the attack coefficient was chosen else 0, s[n])."""
    if rn > prev:
        return 1, a_att * prev + (1.0 - a_att) * rn
    return 0, a_rel * prev + (1.0 - a_rel) * rn


@register_jitable
def _gain_reduction(over, slope, knee):
    """Target gain reduction r >= 0 (dB) of the soft-knee static curve at ``over`` dB above the threshold, and
    the region it came from: 0 below the knee, 1 within it, 2 above it."""
    if 2.0 * over < -knee:
        return 0.0, 0
    if knee > 0.0 and 2.0 * abs(over) <= knee:
        u = over + 0.5 * knee
        return slope * u * u / (2.0 * knee), 1
    return slope * over, 2


@register_jitable
def _compressor_step_adjoint(lam, prev, over, region, attack, a_att, a_rel, slope, d_slope, knee):
    """The adjoint of one compressor step (static curve, then ballistics) in its recorded region, given
    ``lam = dLoss/ds[n]`` (the future included): (d/d the coefficient used, the carry to step n - 1, d/d level
    in dB, d/d ratio, d/d knee)."""
    a = a_att if attack else a_rel
    g_r = lam * (1.0 - a)
    if region == 0:
        return lam * prev, lam * a, 0.0, 0.0, 0.0
    if region == 1:
        u = over + 0.5 * knee
        rn = slope * u * u / (2.0 * knee)
        d_knee = g_r * slope * (u / (2.0 * knee) - u * u / (2.0 * knee * knee))
        return lam * (prev - rn), lam * a, g_r * slope * u / knee, g_r * d_slope * u * u / (2.0 * knee), d_knee
    return lam * (prev - slope * over), lam * a, g_r * slope, g_r * d_slope * over, 0.0


# --- per-signal bodies (1-D arrays), shared by the CPU and CUDA compilations --------------------------------
def _smooth_forward_1d(r, a_att, a_rel, s, attack):
    prev = 0.0
    for n in range(r.shape[0]):
        attack[n], prev = _ballistics_step(r[n] * 1.0, prev, a_att, a_rel)
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


def _compressor_forward_1d(det, scale, floor, thr, ratio, knee, makeup, a_att, a_rel, gain, s, attack, region,
                           over_db):
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
        rn, region[n] = _gain_reduction(over, slope, knee)
        attack[n], prev = _ballistics_step(rn, prev, a_att, a_rel)
        s[n] = prev
        gain[n] = math.exp((makeup - prev) * LN10_OVER_20)


def _compressor_backward_1d(grad_gain, grad_s, det, gain, s, attack, region, over_db, scale, floor, thr, ratio,
                            knee, a_att, a_rel, grad_det, grads):
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
        d_coef, carry, d_level, d_ratio, d_knee = _compressor_step_adjoint(
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


def _peak_compressor_forward_1d(x, thr, ratio, knee, makeup, a_att, a_rel, y, gain, s, attack, region, over_db,
                                pick):
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
        rn, region[n] = _gain_reduction(over, slope, knee)
        attack[n], prev = _ballistics_step(rn, prev, a_att, a_rel)
        s[n] = prev
        g = math.exp((makeup - prev) * LN10_OVER_20)
        gain[n] = g
        for c in range(channels):
            y[n, c] = x[n, c] * g


def _peak_compressor_backward_1d(grad_y, grad_s, x, gain, s, attack, region, over_db, pick, thr, ratio, knee,
                                 a_att, a_rel, grad_x, grads):
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
        d_coef, carry, d_level, d_ratio, d_knee = _compressor_step_adjoint(
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


# --- CPU peak compressor: blocks of BLOCK samples, vectorisable passes around one short serial loop --------
# The per-sample work that does not depend on the previous sample (detector, logarithm, static curve, gain,
# applying it) runs in loops without calls, which LLVM compiles to SIMD; only the ballistics stay serial.
# The logarithm and the exponential are polynomials (errors ~1e-14): libm calls are not vectorised.
# Small slices of L1-resident blocks, never n0 + j indices (numba wraps those: the loads become gathers),
# no division checks (error_model="numpy") and no aliased arguments, or LLVM keeps the loops scalar.
# The backward is the fused per-signal loop (_peak_compressor_backward_1d), shared with CUDA: a blocked,
# vectorised backward measured slower (it streams the saved arrays once more). float32 audio keeps its
# over_db record in float32, and the forward's curve reads the stored value, so both passes agree exactly.
BLOCK = 512
LN2 = math.log(2.0)
SQRT2 = math.sqrt(2.0)
DB_PER_NEPER = 20.0 / LN10  # 20 log10(v) = DB_PER_NEPER ln(v)
LOG2_10_OVER_20 = math.log2(10.0) / 20.0  # 10^(v / 20) = 2^(v LOG2_10_OVER_20)
_MANTISSA_BITS = (1 << 52) - 1
_EXPONENT_ONE = 1023 << 52
_STRICT = {"contract"}  # numba's default arithmetic, plus fused multiply-add


@njit(fastmath=_STRICT, cache=True, error_model="numpy")
def _ln_block(v, out, bits, m):
    """out[:m] = ln(v[:m]) for positive normal float64 v: v = 2^e m', m' in [sqrt(1/2), sqrt(2)),
    ln m' = 2 atanh(t), t = (m' - 1)/(m' + 1), |t| < 0.172, series to t^15 (error < 3e-14, i.e. 3e-13 dB)."""
    vb = v.view(np.int64)
    for j in range(m):
        bits[j] = (vb[j] & _MANTISSA_BITS) | _EXPONENT_ONE
    mant = bits.view(np.float64)
    for j in range(m):
        e = np.float64((vb[j] >> 52) - 1023)
        mj = mant[j]
        big = mj > SQRT2
        mj = mj * 0.5 if big else mj
        e = e + 1.0 if big else e
        t = (mj - 1.0) / (mj + 1.0)
        t2 = t * t
        p = 1.0 / 15.0
        p = p * t2 + 1.0 / 13.0
        p = p * t2 + 1.0 / 11.0
        p = p * t2 + 1.0 / 9.0
        p = p * t2 + 1.0 / 7.0
        p = p * t2 + 1.0 / 5.0
        p = p * t2 + 1.0 / 3.0
        p = p * t2 + 1.0
        out[j] = e * LN2 + 2.0 * t * p


@njit(fastmath=_STRICT, cache=True, error_model="numpy")
def _exp2_block(w, out, bits, m):
    """out[:m] = 2^w[:m], w clamped to [-1022, 1023]: 2^k e^z, k whole, |z| <= ln(2)/2 (Taylor to z^12)."""
    for j in range(m):
        wj = min(max(w[j], -1022.0), 1023.0)
        k = math.floor(wj + 0.5)
        bits[j] = (np.int64(k) + 1023) << 52
        z = (wj - k) * LN2
        p = 1.0 / 479001600.0
        p = p * z + 1.0 / 39916800.0
        p = p * z + 1.0 / 3628800.0
        p = p * z + 1.0 / 362880.0
        p = p * z + 1.0 / 40320.0
        p = p * z + 1.0 / 5040.0
        p = p * z + 1.0 / 720.0
        p = p * z + 1.0 / 120.0
        p = p * z + 1.0 / 24.0
        p = p * z + 1.0 / 6.0
        p = p * z + 0.5
        p = p * z + 1.0
        out[j] = p * z + 1.0
    scale = bits.view(np.float64)
    for j in range(m):
        out[j] *= scale[j]


@njit(cache=True, error_model="numpy")
def _peak_detector_block(x, n0, m, det, pick, lnv, tmp, bits):
    """det = max over channels of |x[:, n0:n0+m]|, pick = the channel it came from, lnv = ln(det + floor)."""
    row = x[0, n0:n0 + m]
    for j in range(m):
        det[j] = abs(row[j])
        pick[j] = 0
    for c in range(1, x.shape[0]):
        row = x[c, n0:n0 + m]
        for j in range(m):
            v = abs(row[j]) * 1.0
            louder = v > det[j]
            det[j] = v if louder else det[j]
            pick[j] = c if louder else pick[j]
    for j in range(m):
        tmp[j] = det[j] + LEVEL_FLOOR
    _ln_block(tmp, lnv, bits, m)  # distinct arrays: aliased ones would defeat the vectoriser's overlap check


@njit(cache=True, error_model="numpy")
def _curve_block(lnv, m, thr, slope, knee, over, region, r):
    """over = level - threshold (dB), the region of the static curve (0 below, 1 knee, 2 above) and the target
    gain reduction r >= 0 (dB), exactly the branches of the compressor's gain computer (step 2 of its model)."""
    for j in range(m):
        over[j] = DB_PER_NEPER * lnv[j] - thr
        o = over[j] * 1.0  # as stored (float32 for float32 audio): the backward sees the same value
        u = o + 0.5 * knee
        below = 2.0 * o < -knee
        in_knee = knee > 0.0 and 2.0 * abs(o) <= knee
        reg = 0 if below else (1 if in_knee else 2)
        region[j] = reg
        rj = slope * u * u / (2.0 * knee) if reg == 1 else slope * o
        r[j] = 0.0 if reg == 0 else rj


@njit(fastmath=_STRICT, cache=True, error_model="numpy")
def _ballistics_block(r, m, prev, a_att, a_rel, s, attack):
    """The attack/release recursion over r[:m] from state prev; returns the last state.

    Both candidates are computed and the right one picked with max (a_att <= a_rel) or min: when r > prev the
    attack candidate is the larger one exactly when a_att <= a_rel. This keeps the compare off the recursion's
    critical path (a select there would wait for it)."""
    b_att = 1.0 - a_att
    b_rel = 1.0 - a_rel
    if a_att <= a_rel:
        for j in range(m):
            rj = r[j]
            s_att = a_att * prev + b_att * rj
            s_rel = a_rel * prev + b_rel * rj
            attack[j] = rj > prev
            prev = s_att if s_att > s_rel else s_rel
            s[j] = prev
    else:
        for j in range(m):
            rj = r[j]
            s_att = a_att * prev + b_att * rj
            s_rel = a_rel * prev + b_rel * rj
            attack[j] = rj > prev
            prev = s_att if s_att < s_rel else s_rel
            s[j] = prev
    return prev


@njit(cache=True, error_model="numpy")
def _peak_compressor_forward_blocked(x, thr, ratio, knee, makeup, a_att, a_rel, y, gain, s, attack, region, over_db,
                                     pick):
    """One signal, x and y (C, T), the other outputs (T,): what _peak_compressor_forward_1d computes (and
    records for the backward), block by block."""
    size = x.shape[1]
    slope = 1.0 - 1.0 / ratio
    det = np.empty(BLOCK)
    lnv = np.empty(BLOCK)
    tmp = np.empty(BLOCK)
    r = np.empty(BLOCK)
    s_blk = np.empty(BLOCK)
    g_blk = np.empty(BLOCK)
    bits = np.empty(BLOCK, dtype=np.int64)
    prev = 0.0
    for n0 in range(0, size, BLOCK):
        m = min(BLOCK, size - n0)
        end = n0 + m
        _peak_detector_block(x, n0, m, det, pick[n0:end], lnv, tmp, bits)
        _curve_block(lnv, m, thr, slope, knee, over_db[n0:end], region[n0:end], r)
        prev = _ballistics_block(r, m, prev, a_att, a_rel, s_blk, attack[n0:end])
        for j in range(m):
            tmp[j] = (makeup - s_blk[j]) * LOG2_10_OVER_20
        _exp2_block(tmp, g_blk, bits, m)
        s_out = s[n0:end]
        g_out = gain[n0:end]
        for j in range(m):
            s_out[j] = s_blk[j]
            g_out[j] = g_blk[j]
        for c in range(x.shape[0]):
            xr = x[c, n0:end]
            yr = y[c, n0:end]
            for j in range(m):
                yr[j] = xr[j] * g_blk[j]


# --- CPU compilation --------------------------------------------------------------------------------------
_smooth_forward_cpu1 = njit(cache=True)(_smooth_forward_1d)
_smooth_backward_cpu1 = njit(cache=True)(_smooth_backward_1d)
_limiter_forward_cpu1 = njit(cache=True)(_limiter_forward_1d)
_compressor_forward_cpu1 = njit(cache=True)(_compressor_forward_1d)
_peak_compressor_backward_cpu1 = njit(cache=True)(_peak_compressor_backward_1d)
_compressor_backward_cpu1 = njit(cache=True)(_compressor_backward_1d)
_limiter_backward_cpu1 = njit(cache=True)(_limiter_backward_1d)


@njit(parallel=True, cache=True)
def _smooth_forward_cpu(r, a_att, a_rel, s, attack):
    for i in prange(r.shape[0]):
        _smooth_forward_cpu1(r[i], a_att[i], a_rel[i], s[i], attack[i])


@njit(parallel=True, cache=True)
def _smooth_backward_cpu(grad_s, r, s, attack, a_att, a_rel, grad_r, grad_a):
    for i in prange(r.shape[0]):
        _smooth_backward_cpu1(grad_s[i], r[i], s[i], attack[i], a_att[i], a_rel[i], grad_r[i], grad_a[i])


@njit(parallel=True, cache=True)
def _compressor_forward_cpu(det, scale, floor, thr, ratio, knee, makeup, a_att, a_rel, gain, s, attack, region,
                            over_db):
    for i in prange(det.shape[0]):
        _compressor_forward_cpu1(det[i], scale, floor, thr[i], ratio[i], knee[i], makeup[i], a_att[i], a_rel[i],
                                 gain[i], s[i], attack[i], region[i], over_db[i])


@njit(parallel=True, cache=True)
def _compressor_backward_cpu(grad_gain, grad_s, det, gain, s, attack, region, over_db, scale, floor, thr,
                             ratio, knee, a_att, a_rel, grad_det, grads):
    for i in prange(det.shape[0]):
        _compressor_backward_cpu1(grad_gain[i], grad_s[i], det[i], gain[i], s[i], attack[i], region[i], over_db[i],
                                  scale, floor, thr[i], ratio[i], knee[i], a_att[i], a_rel[i], grad_det[i], grads[i])


@njit(parallel=True, cache=True)
def _peak_compressor_forward_cpu(x, thr, ratio, knee, makeup, a_att, a_rel, y, gain, s, attack, region, over_db,
                                 pick):
    for i in prange(x.shape[0]):
        _peak_compressor_forward_blocked(x[i], thr[i], ratio[i], knee[i], makeup[i], a_att[i], a_rel[i], y[i],
                                         gain[i], s[i], attack[i], region[i], over_db[i], pick[i])


@njit(parallel=True, cache=True)
def _peak_compressor_backward_cpu(grad_y, grad_s, x, gain, s, attack, region, over_db, pick, thr, ratio, knee,
                                  a_att, a_rel, grad_x, grads):
    for i in prange(x.shape[0]):
        _peak_compressor_backward_cpu1(grad_y[i].T, grad_s[i], x[i].T, gain[i], s[i], attack[i], region[i],
                                       over_db[i], pick[i], thr[i], ratio[i], knee[i], a_att[i], a_rel[i],
                                       grad_x[i].T, grads[i])


@njit(parallel=True, cache=True)
def _limiter_forward_cpu(g_req, window, alpha, g, argmin, ramp):
    for i in prange(g_req.shape[0]):
        queue = np.empty(g_req.shape[1], dtype=np.int64)
        _limiter_forward_cpu1(g_req[i], window[i], alpha[i], g[i], argmin[i], ramp[i], queue)


@njit(parallel=True, cache=True)
def _limiter_backward_cpu(grad_g, g, argmin, ramp, window, alpha, grad_req, grad_alpha):
    for i in prange(g.shape[0]):
        grad_avg = np.empty(g.shape[1], dtype=np.float64)
        _limiter_backward_cpu1(grad_g[i], g[i], argmin[i], ramp[i], window[i], alpha[i], grad_req[i],
                               grad_avg, grad_alpha[i])


# The same loops without threads: used when there are too few signals to share out. numba's thread pool
# next to torch's (both busy-waiting) can cost far more than it saves on one or two signals.
@njit(cache=True)
def _smooth_forward_cpu_serial(r, a_att, a_rel, s, attack):
    for i in range(r.shape[0]):
        _smooth_forward_cpu1(r[i], a_att[i], a_rel[i], s[i], attack[i])


@njit(cache=True)
def _smooth_backward_cpu_serial(grad_s, r, s, attack, a_att, a_rel, grad_r, grad_a):
    for i in range(r.shape[0]):
        _smooth_backward_cpu1(grad_s[i], r[i], s[i], attack[i], a_att[i], a_rel[i], grad_r[i], grad_a[i])


@njit(cache=True)
def _compressor_forward_cpu_serial(det, scale, floor, thr, ratio, knee, makeup, a_att, a_rel, gain, s, attack,
                                   region, over_db):
    for i in range(det.shape[0]):
        _compressor_forward_cpu1(det[i], scale, floor, thr[i], ratio[i], knee[i], makeup[i], a_att[i], a_rel[i],
                                 gain[i], s[i], attack[i], region[i], over_db[i])


@njit(cache=True)
def _compressor_backward_cpu_serial(grad_gain, grad_s, det, gain, s, attack, region, over_db, scale, floor, thr,
                             ratio, knee, a_att, a_rel, grad_det, grads):
    for i in range(det.shape[0]):
        _compressor_backward_cpu1(grad_gain[i], grad_s[i], det[i], gain[i], s[i], attack[i], region[i], over_db[i],
                                  scale, floor, thr[i], ratio[i], knee[i], a_att[i], a_rel[i], grad_det[i], grads[i])


@njit(cache=True)
def _peak_compressor_forward_cpu_serial(x, thr, ratio, knee, makeup, a_att, a_rel, y, gain, s, attack, region, over_db,
                                 pick):
    for i in range(x.shape[0]):
        _peak_compressor_forward_blocked(x[i], thr[i], ratio[i], knee[i], makeup[i], a_att[i], a_rel[i], y[i],
                                         gain[i], s[i], attack[i], region[i], over_db[i], pick[i])


@njit(cache=True)
def _peak_compressor_backward_cpu_serial(grad_y, grad_s, x, gain, s, attack, region, over_db, pick, thr, ratio, knee,
                                  a_att, a_rel, grad_x, grads):
    for i in range(x.shape[0]):
        _peak_compressor_backward_cpu1(grad_y[i].T, grad_s[i], x[i].T, gain[i], s[i], attack[i], region[i],
                                       over_db[i], pick[i], thr[i], ratio[i], knee[i], a_att[i], a_rel[i],
                                       grad_x[i].T, grads[i])


@njit(cache=True)
def _limiter_forward_cpu_serial(g_req, window, alpha, g, argmin, ramp):
    for i in range(g_req.shape[0]):
        queue = np.empty(g_req.shape[1], dtype=np.int64)
        _limiter_forward_cpu1(g_req[i], window[i], alpha[i], g[i], argmin[i], ramp[i], queue)


@njit(cache=True)
def _limiter_backward_cpu_serial(grad_g, g, argmin, ramp, window, alpha, grad_req, grad_alpha):
    for i in range(g.shape[0]):
        grad_avg = np.empty(g.shape[1], dtype=np.float64)
        _limiter_backward_cpu1(grad_g[i], g[i], argmin[i], ramp[i], window[i], alpha[i], grad_req[i],
                               grad_avg, grad_alpha[i])


# --- CUDA compilation (lazy: processors.ballistics_cuda is imported on the first CUDA tensor) ------------
def cuda_kernels() -> dict:
    """The CUDA kernels (compiled on first use). Arrays are time-major (T, S): thread i owns column i."""
    from processors import ballistics_cuda

    return ballistics_cuda.KERNELS


# Tests set this under NUMBA_ENABLE_CUDASIM=1 to run the CUDA branch (layouts, launches) on CPU tensors.
SIMULATE_DEVICE_PATH = False


def _on_device(t: torch.Tensor) -> bool:
    return t.is_cuda or SIMULATE_DEVICE_PATH


def _launch_cuda(name: str, n_signals: int, *args) -> None:
    from numba import cuda

    threads = 64
    blocks = (n_signals + threads - 1) // threads
    kernel = cuda_kernels()[name]
    if not any(isinstance(a, torch.Tensor) and a.is_cuda for a in args):  # the simulator: host arrays
        kernel[blocks, threads](*[a.detach().numpy() if isinstance(a, torch.Tensor) else a for a in args])
        return
    stream = cuda.external_stream(torch.cuda.current_stream().cuda_stream)
    kernel[blocks, threads, stream](*[cuda.as_cuda_array(a.detach()) if isinstance(a, torch.Tensor) else a
                                      for a in args])


PARALLEL_MIN_SIGNALS = 4  # below this many signals the serial loops win (measured on 2 cores)

_CPU = {
    "smooth_forward": (_smooth_forward_cpu_serial, _smooth_forward_cpu),
    "smooth_backward": (_smooth_backward_cpu_serial, _smooth_backward_cpu),
    "compressor_forward": (_compressor_forward_cpu_serial, _compressor_forward_cpu),
    "compressor_backward": (_compressor_backward_cpu_serial, _compressor_backward_cpu),
    "peak_compressor_forward": (_peak_compressor_forward_cpu_serial, _peak_compressor_forward_cpu),
    "peak_compressor_backward": (_peak_compressor_backward_cpu_serial, _peak_compressor_backward_cpu),
    "limiter_forward": (_limiter_forward_cpu_serial, _limiter_forward_cpu),
    "limiter_backward": (_limiter_backward_cpu_serial, _limiter_backward_cpu),
}


def _run_cpu(name: str, n_signals: int, *arrays) -> None:
    serial, parallel = _CPU[name]
    (parallel if n_signals >= PARALLEL_MIN_SIGNALS else serial)(*arrays)


def _cpu(t: torch.Tensor) -> np.ndarray:
    return t.detach().contiguous().numpy()


# --- autograd Functions -----------------------------------------------------------------------------------
class _Smooth(torch.autograd.Function):
    @staticmethod
    def forward(ctx, r, a_att, a_rel):
        a_att64 = a_att.detach().double().contiguous()
        a_rel64 = a_rel.detach().double().contiguous()
        if _on_device(r):
            rt = r.detach().t().contiguous()
            st = torch.empty_like(rt)
            attack = torch.empty(rt.shape, dtype=torch.uint8, device=r.device)
            _launch_cuda("smooth_forward", rt.shape[1], rt, a_att64, a_rel64, st, attack)
            s = st.t()
        else:
            r_c = r.detach().contiguous()
            s = torch.empty_like(r_c)
            attack = torch.empty(r_c.shape, dtype=torch.uint8)
            _run_cpu("smooth_forward", r_c.shape[0], r_c.numpy(), a_att64.numpy(), a_rel64.numpy(), s.numpy(),
                     attack.numpy())
        ctx.save_for_backward(r, s, attack, a_att64, a_rel64)
        ctx.dtype = a_att.dtype
        return s

    @staticmethod
    def backward(ctx, grad_s):
        r, s, attack, a_att64, a_rel64 = ctx.saved_tensors
        if _on_device(r):
            # attack was stored time-major (T, S); s is a transposed view of a time-major tensor
            rt, st = r.detach().t().contiguous(), s.t().contiguous()
            grad_rt = torch.empty_like(rt)
            grad_a = torch.empty((rt.shape[1], 2), dtype=torch.float64, device=r.device)
            _launch_cuda("smooth_backward", rt.shape[1], grad_s.t().contiguous(), rt, st, attack, a_att64, a_rel64,
                         grad_rt, grad_a)
            grad_r = grad_rt.t()
        else:
            grad_r = torch.empty_like(s)
            grad_a = torch.empty((r.shape[0], 2), dtype=torch.float64)
            _run_cpu("smooth_backward", r.shape[0], _cpu(grad_s), _cpu(r), s.numpy(), attack.numpy(),
                     a_att64.numpy(), a_rel64.numpy(), grad_r.numpy(), grad_a.numpy())
        return grad_r, grad_a[:, 0].to(ctx.dtype), grad_a[:, 1].to(ctx.dtype)


class _Compressor(torch.autograd.Function):
    """Level, soft-knee static curve, ballistics and make-up in one pass: detector signal (S, T) ->
    (linear gain, smoothed gain reduction s in dB), both (S, T)."""

    @staticmethod
    def forward(ctx, det, scale, floor, threshold, ratio, knee, makeup, a_att, a_rel):
        params = [p.detach().double().contiguous() for p in (threshold, ratio, knee, makeup, a_att, a_rel)]
        if _on_device(det):
            dt = det.detach().t().contiguous()
            gain_t, st = torch.empty_like(dt), torch.empty_like(dt)
            attack = torch.empty(dt.shape, dtype=torch.uint8, device=dt.device)
            region = torch.empty(dt.shape, dtype=torch.uint8, device=dt.device)
            over = torch.empty(dt.shape, dtype=torch.float64, device=dt.device)
            _launch_cuda("compressor_forward", dt.shape[1], dt, scale, floor, *params, gain_t, st, attack, region, over)
            gain, s = gain_t.t(), st.t()
        else:
            dc = det.detach().contiguous()
            gain, s = torch.empty_like(dc), torch.empty_like(dc)
            attack = torch.empty(dc.shape, dtype=torch.uint8)
            region = torch.empty(dc.shape, dtype=torch.uint8)
            over = torch.empty(dc.shape, dtype=torch.float64)
            _run_cpu("compressor_forward", dc.shape[0], dc.numpy(), scale, floor, *[p.numpy() for p in params],
                     gain.numpy(), s.numpy(), attack.numpy(), region.numpy(), over.numpy())
        ctx.save_for_backward(det, gain, s, attack, region, over, *params)
        ctx.scale, ctx.floor, ctx.dtype = scale, floor, threshold.dtype
        return gain, s

    @staticmethod
    def backward(ctx, grad_gain, grad_s):
        det, gain, s, attack, region, over, *params = ctx.saved_tensors
        thr, ratio, knee, _, a_att, a_rel = params
        if _on_device(det):
            dt = det.detach().t().contiguous()
            grad_dt = torch.empty_like(dt)
            grads = torch.empty((dt.shape[1], 6), dtype=torch.float64, device=dt.device)
            _launch_cuda("compressor_backward", dt.shape[1], grad_gain.t().contiguous(), grad_s.t().contiguous(), dt,
                         gain.t().contiguous(), s.t().contiguous(), attack, region, over, ctx.scale, ctx.floor, thr,
                         ratio, knee, a_att, a_rel, grad_dt, grads)
            grad_det = grad_dt.t()
        else:
            grad_det = torch.empty_like(s)
            grads = torch.empty((s.shape[0], 6), dtype=torch.float64)
            _run_cpu("compressor_backward", s.shape[0], _cpu(grad_gain), _cpu(grad_s), _cpu(det), gain.numpy(),
                     s.numpy(), attack.numpy(), region.numpy(), over.numpy(), ctx.scale, ctx.floor, thr.numpy(),
                     ratio.numpy(),
                     knee.numpy(), a_att.numpy(), a_rel.numpy(), grad_det.numpy(), grads.numpy())
        grads = grads.to(ctx.dtype)
        return (grad_det, None, None, *(grads[:, j] for j in range(6)))


class _PeakCompressor(torch.autograd.Function):
    """The whole peak-detector compressor in one pass: x (S, C, T) -> (y (S, C, T), s (S, T) in dB)."""

    @staticmethod
    def forward(ctx, x, threshold, ratio, knee, makeup, a_att, a_rel):
        params = [p.detach().double().contiguous() for p in (threshold, ratio, knee, makeup, a_att, a_rel)]
        n_signals, channels, size = x.shape
        if _on_device(x):
            xt = x.detach().permute(2, 0, 1).contiguous()  # (T, S, C)
            yt = torch.empty_like(xt)
            gt, st, over = (torch.empty((size, n_signals), dtype=d, device=x.device)
                            for d in (x.dtype, x.dtype, torch.float64))
            attack, region, pick = (torch.empty((size, n_signals), dtype=torch.uint8, device=x.device)
                                    for _ in range(3))
            _launch_cuda("peak_compressor_forward", n_signals, xt, *params, yt, gt, st, attack, region, over, pick)
            y, gain, s = yt.permute(1, 2, 0), gt.t(), st.t()
        else:
            xc = x.detach().contiguous()
            y = torch.empty_like(xc)
            gain, s = torch.empty((n_signals, size), dtype=x.dtype), torch.empty((n_signals, size), dtype=x.dtype)
            over = torch.empty((n_signals, size), dtype=x.dtype)  # float32 for float32 audio: less traffic
            attack, region, pick = (torch.empty((n_signals, size), dtype=torch.uint8) for _ in range(3))
            _run_cpu("peak_compressor_forward", n_signals, xc.numpy(), *[p.numpy() for p in params], y.numpy(),
                     gain.numpy(), s.numpy(), attack.numpy(), region.numpy(), over.numpy(), pick.numpy())
        ctx.save_for_backward(x, gain, s, attack, region, over, pick, *params)
        ctx.dtype = threshold.dtype
        ctx.set_materialize_grads(False)  # s is usually unused: no (S, T) tensor of zeros for its gradient
        return y, s

    @staticmethod
    def backward(ctx, grad_y, grad_s):
        x, gain, s, attack, region, over, pick, thr, ratio, knee, _, a_att, a_rel = ctx.saved_tensors
        n_signals, _, size = x.shape
        if grad_y is None:
            grad_y = torch.zeros_like(x)
        if grad_s is None:  # on the CPU a stride-0 view: the kernel reads one zero over and over
            grad_s = torch.zeros(1, dtype=s.dtype, device=s.device).expand(n_signals, size)
        elif not _on_device(x):  # (on a GPU the time-major copy below is contiguous either way)
            grad_s = grad_s.contiguous()
        if _on_device(x):
            xt = x.detach().permute(2, 0, 1).contiguous()
            grad_xt = torch.empty_like(xt)
            grads = torch.empty((n_signals, 6), dtype=torch.float64, device=x.device)
            _launch_cuda("peak_compressor_backward", n_signals, grad_y.permute(2, 0, 1).contiguous(),
                         grad_s.t().contiguous(), xt, gain.t().contiguous(), s.t().contiguous(), attack, region, over,
                         pick, thr, ratio, knee, a_att, a_rel, grad_xt, grads)
            grad_x = grad_xt.permute(1, 2, 0)
        else:
            grad_x = torch.empty_like(x.detach().contiguous())
            grads = torch.empty((n_signals, 6), dtype=torch.float64)
            _run_cpu("peak_compressor_backward", n_signals, _cpu(grad_y), grad_s.detach().numpy(), _cpu(x),
                     gain.numpy(), s.numpy(), attack.numpy(), region.numpy(), over.numpy(), pick.numpy(),
                     thr.numpy(), ratio.numpy(), knee.numpy(), a_att.numpy(), a_rel.numpy(), grad_x.numpy(),
                     grads.numpy())
        grads = grads.to(ctx.dtype)
        return (grad_x, *(grads[:, j] for j in range(6)))


class _LimiterGain(torch.autograd.Function):
    @staticmethod
    def forward(ctx, g_req, window, alpha):
        alpha64 = alpha.detach().double().contiguous()
        window = window.to(torch.int64).contiguous()
        if _on_device(g_req):
            qt = g_req.detach().t().contiguous()
            gt = torch.empty_like(qt)
            argmin = torch.empty(qt.shape, dtype=torch.int64, device=qt.device)
            ramp = torch.empty(qt.shape, dtype=torch.uint8, device=qt.device)
            queue = torch.empty(qt.shape, dtype=torch.int64, device=qt.device)
            _launch_cuda("limiter_forward", qt.shape[1], qt, window, alpha64, gt, argmin, ramp, queue)
            g = gt.t()
        else:
            q = g_req.detach().contiguous()
            g = torch.empty_like(q)
            argmin = torch.empty(q.shape, dtype=torch.int64)
            ramp = torch.empty(q.shape, dtype=torch.uint8)
            _run_cpu("limiter_forward", q.shape[0], q.numpy(), window.numpy(), alpha64.numpy(), g.numpy(),
                     argmin.numpy(), ramp.numpy())
        ctx.save_for_backward(g, argmin, ramp, window, alpha64)
        ctx.dtype = alpha.dtype
        return g

    @staticmethod
    def backward(ctx, grad_g):
        g, argmin, ramp, window, alpha64 = ctx.saved_tensors
        if _on_device(g):
            gt = g.t().contiguous()
            grad_req_t = torch.zeros_like(gt)
            grad_avg = torch.empty(gt.shape, dtype=torch.float64, device=gt.device)
            grad_alpha = torch.empty((gt.shape[1], 1), dtype=torch.float64, device=gt.device)
            _launch_cuda("limiter_backward", gt.shape[1], grad_g.t().contiguous(), gt, argmin, ramp, window,
                         alpha64, grad_req_t, grad_avg, grad_alpha)
            grad_req = grad_req_t.t()
        else:
            grad_req = torch.zeros_like(g)
            grad_alpha = torch.empty((g.shape[0], 1), dtype=torch.float64)
            _run_cpu("limiter_backward", g.shape[0], _cpu(grad_g), g.numpy(), argmin.numpy(), ramp.numpy(),
                     window.numpy(), alpha64.numpy(), grad_req.numpy(), grad_alpha.numpy())
        return grad_req, None, grad_alpha[:, 0].to(ctx.dtype)


# --- public entry points ----------------------------------------------------------------------------------
def time_coefficient(time_ms: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """One-pole coefficient a = exp(-1 / (tau sample_rate)) for a time constant tau = time_ms / 1000."""
    return torch.exp(-1000.0 / (time_ms * sample_rate))


def smooth(r: torch.Tensor, a_attack: torch.Tensor, a_release: torch.Tensor) -> torch.Tensor:
    """Attack/release one-pole of r (S, T) with per-signal coefficients (S,); differentiable in all three."""
    return _Smooth.apply(r, a_attack, a_release)


def compressor(det, scale, floor, threshold_db, ratio, knee_db, makeup_db, a_attack, a_release):
    """The compressor's steps 1-5 after the detector, fused: level L = scale log10(det + floor) of the detector
    signal det (S, T) (peak amplitude: 20, 1e-12; mean square: 10, 1e-24), soft-knee static curve, gain
    reduction, attack/release ballistics, make-up. Parameters (S,). Returns (linear gain incl. make-up,
    smoothed gain reduction s >= 0 dB), both (S, T) and differentiable in every tensor input."""
    return _Compressor.apply(det, float(scale), float(floor), threshold_db, ratio, knee_db, makeup_db, a_attack,
                             a_release)


def peak_compressor(x, threshold_db, ratio, knee_db, makeup_db, a_attack, a_release):
    """The compressor with the peak detector, fused end to end: x (S, C, T), the level of each signal the
    per-sample maximum of 20 log10(|x| + 1e-12) over its C channels (C = 1: unlinked); parameters (S,).
    Returns (y = x 10^((makeup_db - s) / 20) of shape (S, C, T), s (S, T) >= 0 dB), differentiable in all."""
    return _PeakCompressor.apply(x, threshold_db, ratio, knee_db, makeup_db, a_attack, a_release)


def one_pole(r: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """Plain one-pole s[n] = a s[n-1] + (1 - a) r[n], s[-1] = 0, of r (S, T) with coefficients (S,)."""
    return _Smooth.apply(r, a, a)


def limiter_gain(g_req: torch.Tensor, lookahead_samples: torch.Tensor, release_coefficient: torch.Tensor
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
    return _LimiterGain.apply(padded, lookahead_samples.to(g_req.device), release_coefficient)[:, pad:]


def window_samples(time_ms: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """A time in ms -> a whole number of samples >= 1 (int64)."""
    return torch.clamp(torch.round(time_ms.detach() * (sample_rate / 1000.0)), min=1).to(torch.int64)


__all__ = ["smooth", "one_pole", "compressor", "peak_compressor", "limiter_gain", "time_coefficient",
           "window_samples", "cuda_kernels"]
