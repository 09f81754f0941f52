"""The per-sample steps every compilation of the recursions inlines (CPU and CUDA): ballistics, the soft-knee
gain reduction, the compressor's adjoint step."""

from __future__ import annotations

import math

from numba.extending import register_jitable

LN10 = math.log(10.0)
LN10_OVER_20 = LN10 / 20.0
LEVEL_FLOOR = 1e-12  # amplitude floor of the peak level detector (-240 dB)


@register_jitable
def ballistics_step(rn, prev, a_att, a_rel):
    """One step of s[n] = a s[n-1] + (1 - a) r[n]: (1 if the attack coefficient was chosen else 0, s[n])."""
    if rn > prev:
        return 1, a_att * prev + (1.0 - a_att) * rn
    return 0, a_rel * prev + (1.0 - a_rel) * rn


@register_jitable
def gain_reduction(over, slope, knee):
    """Target gain reduction r >= 0 (dB) of the soft-knee static curve at ``over`` dB above the threshold, and
    the region it came from: 0 below the knee, 1 within it, 2 above it."""
    if 2.0 * over < -knee:
        return 0.0, 0
    if knee > 0.0 and 2.0 * abs(over) <= knee:
        u = over + 0.5 * knee
        return slope * u * u / (2.0 * knee), 1
    return slope * over, 2


@register_jitable
def compressor_step_adjoint(lam, prev, over, region, attack, a_att, a_rel, slope, d_slope, knee):
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
