"""Ending on target: solve a gain so the whole-track render hits the loudness target exactly.

Integrated loudness is monotone in any gain ahead of the limiter (every stage's output level is non-decreasing
in its input level), so a one-dimensional root find on the whole-track render hits the target to within
``tol_lu``. If the true peak then sits above the ceiling (a sample-peak limiter lets inter-sample peaks
through), the limiter's ceiling is lowered by the excess and the gain solved again.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

import drl
from drl.checks import check_number
from tuning.objective import Target

#: Largest step of one search move, in dB.
MAX_STEP_DB = 24.0


#: How far below the ceiling a lowered limiter ceiling puts the true peak, dB.
PEAK_MARGIN_DB = 0.02

#: The loudness tolerance of every solve, LU (the config's ``solve.tol_lu``): near transparency DRL moves by
#: hundredths of a dB per thousandth of a LU, so candidates are compared at this precision.
TOL_LU = 0.001


@dataclass
class Solution:
    """The outcome of a solve: the rendered track ``output`` (C, T) and its measures, plus the settings."""

    output: torch.Tensor
    lufs: float
    true_peak_dbtp: float
    values: dict
    renders: int
    slope: float | None = None  # dLUFS/dgain near the solution (a hint for the next solve)


def find_gain(
    loudness_at: Callable[[float], float],
    target_lufs: float,
    start_db: float,
    low_db: float,
    high_db: float,
    *,
    tol_lu: float = TOL_LU,
    max_evaluations: int = 40,
    slope: float | None = None,
) -> tuple[float, float, int]:
    """Root of ``loudness_at(gain_db) = target_lufs`` for a non-decreasing ``loudness_at`` on [low_db, high_db].

    Returns (gain_db, loudness, evaluations). Takes secant steps (slope clamped to 0.05..1) until the root is
    met or bracketed, then refines by the Illinois false-position method. The first step uses ``slope`` (a
    known dLUFS/dgain, e.g. from an earlier solve) or else assumes 1 and stretches the step by 1.5 so that it
    brackets. The gain returned is the last one ``loudness_at`` was called with. Raises ValueError when the
    target lies beyond what the range of gains reaches.
    """
    check_number("the loudness tolerance (solve.tol_lu)", tol_lu, 0.0, unit="LU", low_open=True)
    gain = min(max(start_db, low_db), high_db)
    level = loudness_at(gain)
    count = 1
    points = [(gain, level)]
    below: tuple[float, float] | None = None
    above: tuple[float, float] | None = None

    def record(g: float, lv: float) -> None:
        nonlocal below, above
        if lv < target_lufs:
            below = (g, lv) if below is None or g > below[0] else below
        else:
            above = (g, lv) if above is None or g < above[0] else above

    record(gain, level)
    while abs(level - target_lufs) > tol_lu and (below is None or above is None):
        stretch, estimate = (1.5, 1.0) if slope is None else (1.0, slope)
        if len(points) >= 2:
            (g0, l0), (g1, l1) = points[-2], points[-1]
            if g1 != g0:
                stretch, estimate = 1.0, (l1 - l0) / (g1 - g0)
        step = stretch * (target_lufs - level) / min(max(estimate, 0.05), 1.0)
        step = max(-MAX_STEP_DB, min(MAX_STEP_DB, step))
        new = min(max(gain + step, low_db), high_db)
        if new == gain:
            side = "louder" if level < target_lufs else "quieter"
            bound = high_db if level < target_lufs else low_db
            raise ValueError(
                f"target cannot be met: {target_lufs:g} LUFS is {side} than this processor reaches "
                f"({level:.2f} LUFS at its gain limit of {bound:g} dB)"
            )
        gain, level = new, loudness_at(new)
        count += 1
        points.append((gain, level))
        record(gain, level)
        if count >= max_evaluations:
            break

    side = 0  # Illinois: when one end is kept twice in a row, halve its stored distance to the target
    while (
        abs(level - target_lufs) > tol_lu
        and below is not None
        and above is not None
        and count < max_evaluations
        and above[0] - below[0] > 1e-6
    ):
        (ga, la), (gb, lb) = below, above
        fa, fb = la - target_lufs, lb - target_lufs  # fa < 0 <= fb
        gain = gb - fb * (gb - ga) / (fb - fa)
        level = loudness_at(gain)
        count += 1
        if level < target_lufs:
            below = (gain, level)
            if side == -1:
                above = (gb, target_lufs + fb / 2)
            side = -1
        else:
            above = (gain, level)
            if side == 1:
                below = (ga, target_lufs + fa / 2)
            side = 1
    return gain, level, count


def render(processor: torch.nn.Module, audio: torch.Tensor) -> torch.Tensor:
    """The whole track (C, T) through ``processor``, without gradients."""
    with torch.no_grad():
        return processor(audio)


def solve_target(
    processor,
    audio: torch.Tensor,
    sample_rate: int,
    target: Target,
    level_param: str,
    ceiling_param: str | None,
    *,
    tol_lu: float = TOL_LU,
    peak_margin_db: float = PEAK_MARGIN_DB,
    max_rounds: int = 6,
    slope_hint: float | None = None,
    render_fn: Callable[[torch.nn.Module, torch.Tensor], torch.Tensor] | None = None,
) -> Solution:
    """Set ``level_param`` (a gain ahead of the limiter, dB) so the render of ``audio`` (C, T) reaches
    ``target.lufs`` within ``tol_lu``; lower ``ceiling_param`` (the limiter's ceiling, dB) while the true peak
    exceeds ``target.ceiling_dbtp``. Leaves ``processor`` at the solved settings and returns the render.
    ``render_fn(processor, audio)``: how to render (default :func:`render`), e.g. one that reuses work shared
    by every render of ``audio``.
    """
    render_fn = render_fn or render
    spec = processor.spec(level_param)
    renders = 0
    last: dict = {}
    points: list[tuple[float, float]] = []  # (gain, loudness) of this ceiling round's renders

    def loudness_at(gain_db: float) -> float:
        nonlocal renders
        set_value(processor, level_param, gain_db)
        last.clear()  # the previous render goes before the next one is made
        output = render_fn(processor, audio)
        renders += 1
        lufs = float(drl.integrated_loudness(output, sample_rate))
        if not math.isfinite(lufs):
            lufs = -200.0  # everything gated away: far too quiet
        last.update(gain=gain_db, output=output, lufs=lufs)
        points.append((gain_db, lufs))
        return lufs

    start, slope = float(get_value(processor, level_param)), slope_hint
    for _ in range(max_rounds):
        gain, _, _ = find_gain(loudness_at, target.lufs, start, spec.min, spec.max, tol_lu=tol_lu, slope=slope)
        output, lufs = last["output"], last["lufs"]
        peak = float(drl.true_peak(output, sample_rate).amax())
        excess = peak - target.ceiling_dbtp
        if ceiling_param is None or excess <= 0:
            break
        lowered = excess + peak_margin_db
        ceiling = float(get_value(processor, ceiling_param)) - lowered
        ceiling_spec = processor.spec(ceiling_param)
        if ceiling < ceiling_spec.min:
            raise ValueError(
                f"target cannot be met: the true peak stays {excess:.2f} dB above the ceiling even with "
                f"{ceiling_param} at its minimum of {ceiling_spec.min:g} dB"
            )
        set_value(processor, ceiling_param, ceiling)
        slope = local_slope(points, gain) or slope
        points.clear()  # another ceiling: another loudness curve
        start = gain + ceiling_gain_step(lowered, slope)
        output = None  # rendered again at the lower ceiling: hold no stale render meanwhile
    return Solution(output, lufs, peak, dict(processor.values()), renders, local_slope(points, gain) or slope)


def ceiling_gain_step(lowered_db: float, slope: float | None) -> float:
    """The gain change (dB) that keeps the loudness when the limiter's ceiling is lowered by ``lowered_db``,
    for a loudness that moves by ``slope`` (dLUFS/dgain) with the gain. A limiter scales with its ceiling (the
    output at ceiling ``c`` and gain ``g`` is the output at ceiling 0 and gain ``g - c``, raised by ``c``),
    so loudness moves by ``1 - slope`` per dB of ceiling: the gain makes up ``lowered_db * (1 - slope) /
    slope``. Without a slope (or outside 0.05..1) the slope is clamped as :func:`find_gain` clamps it."""
    slope = min(max(1.0 if slope is None else slope, 0.05), 1.0)
    return lowered_db * (1.0 - slope) / slope


#: Least gain difference (dB) of two renders whose loudness difference gives a slope: closer ones differ by
#: little more than the loudness measurement's rounding.
SLOPE_SPAN_DB = 0.01


def local_slope(points: list[tuple[float, float]], gain: float) -> float | None:
    """dLUFS/dgain from the evaluated (gain, loudness) ``points`` nearest ``gain``: the nearest one and the
    nearest of those at least :data:`SLOPE_SPAN_DB` from it (None without such a pair)."""
    near = sorted(points, key=lambda p: abs(p[0] - gain))
    if not near:
        return None
    g0, l0 = near[0]
    other = next(((g, lv) for g, lv in near[1:] if abs(g - g0) >= SLOPE_SPAN_DB), None)
    if other is None:
        return None
    return (other[1] - l0) / (other[0] - g0)


# --- dotted parameter access ------------------------------------------------------------------------------


def get_value(processor, name: str) -> float:
    """The physical value of ``name`` (dotted inside a chain: ``"limiter.ceiling_db"``) as a float."""
    value = processor.values()[name]
    if isinstance(value, list):
        raise ValueError(f"{name} is batched; solve one setting at a time")
    return float(value)


def set_value(processor, name: str, value: float) -> None:
    processor.set_values(**{name: float(value)})
