"""The CPU peak compressor's forward in blocks of BLOCK samples: vectorisable passes around one short serial
loop, with a polynomial logarithm and exponential (libm calls are not vectorised)."""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from processors.kernels.steps import LEVEL_FLOOR, LN10

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
    row = x[0, n0 : n0 + m]
    for j in range(m):
        det[j] = abs(row[j])
        pick[j] = 0
    for c in range(1, x.shape[0]):
        row = x[c, n0 : n0 + m]
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
def peak_compressor_forward_blocked(
    x, thr, ratio, knee, makeup, a_att, a_rel, y, gain, s, attack, region, over_db, pick
):
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
