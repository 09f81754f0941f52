"""The baseline a careful user would try first: gain + the project's limiter, gain solved for the target,
the limiter's release and lookahead searched over a small grid. Its DRL is the bar the tuned chain must meet.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import torch

import drl
from processors import Chain, Gain, Limiter
from processors import functional as Fn
from tuning.excerpt import Excerpt, whole_track
from tuning.objective import Target
from tuning.results import plain_measures
from tuning.solve import TOL_LU, render, solve_target

#: Grid points solved on the whole track by the chain itself after the ranking: the best few there.
FINALISTS = 2


def baseline_chain(
    sample_rate: int,
    gain_db: float,
    ceiling_db: float,
    release_ms: float,
    lookahead_ms: float,
    true_peak: bool = True,
    slow_release_ms: float | None = None,
) -> Chain:
    """The baseline's processor: Gain -> Limiter with these settings (``slow_release_ms``: the two-stage
    release's slow stage, None for a single release)."""
    return Chain(
        {
            "gain": Gain(sample_rate, gain_db=gain_db),
            "limiter": Limiter(
                sample_rate,
                ceiling_db=ceiling_db,
                release_ms=release_ms,
                lookahead_ms=lookahead_ms,
                true_peak=true_peak,
                slow_release_ms=slow_release_ms,
            ),
        }
    )


class GainLimiterRenders:
    """Renders of :func:`baseline_chain` chains of one track ``audio`` (C, T) that share its limiter peak
    envelope, computed once: the envelope of ``g * audio`` is ``|g|`` times that of ``audio``, so each render
    is the limiter's gain recursion alone. Call as ``solve_target``'s ``render_fn``."""

    def __init__(self, audio: torch.Tensor, sample_rate: int, true_peak: bool) -> None:
        self.audio, self.sample_rate = audio, int(sample_rate)
        with torch.no_grad():
            self.envelope = Fn.peak_envelope(audio[None], sample_rate, true_peak)

    def __call__(self, chain: Chain, audio: torch.Tensor) -> torch.Tensor:
        if audio is not self.audio:
            return render(chain, audio)
        values = chain.values()
        scale = 10.0 ** (values["gain.gain_db"] / 20.0)

        def param(name: str) -> torch.Tensor:
            return torch.tensor([float(values[f"limiter.{name}"])], dtype=audio.dtype, device=audio.device)

        slow = values.get("limiter.slow_release_ms")
        with torch.no_grad():
            gain = Fn.limiter_gain_of_envelope(
                scale * self.envelope,
                param("ceiling_db"),
                param("release_ms"),
                param("lookahead_ms"),
                None if slow is None else param("slow_release_ms"),
                sample_rate=self.sample_rate,
            )
            return (scale * audio) * gain[0]


def run_baseline(
    audio: torch.Tensor,
    sample_rate: int,
    target: Target,
    release_ms: Sequence[float] = (1.0, 3.0, 10.0, 30.0, 100.0),
    lookahead_ms: Sequence[float] = (1.0, 5.0),
    *,
    slow_release_ms: Sequence[float | None] = (None,),
    true_peak: bool = True,
    tol_lu: float = TOL_LU,
    measure: Callable[[torch.Tensor, torch.Tensor], dict] | None = None,
    score: Callable[[torch.Tensor, torch.Tensor], float] | None = None,
    excerpt: Excerpt | None = None,
    finalists: int = FINALISTS,
    on_point: Callable[[int, int, dict], None] | None = None,
) -> dict:
    """Search the grid of release x lookahead x slow release (None: a single release); return the winner as
    plain values: ``drl_db``, ``lufs``, ``true_peak_dbtp``, ``gain_db``, ``ceiling_db``, ``release_ms``,
    ``lookahead_ms``, ``slow_release_ms``, ``grid`` (every point's DRL and objective where it was ranked) and
    ``excerpt`` (the winner on the excerpt: ``gain_db``, ``ceiling_db``, ``objective_drl_db``).

    With ``measure(audio, output)`` (e.g. :meth:`tuning.objective.Objective.measure`: a dict of 0-d tensors
    holding ``objective_drl_db``) the winner is the point with the least ``objective_drl_db`` (the measure the
    tuning loss optimises; ``score``, e.g. :meth:`~tuning.objective.Objective.score`, computes it alone) and it
    also holds every measure, as plain numbers (``band_drl_db`` as a dict); without it, the least plain DRL wins.

    The grid is ranked on ``excerpt`` (:func:`tuning.excerpt.choose_excerpt`; default the whole track) from
    the track's peak envelope (:class:`GainLimiterRenders`); the ``finalists`` best points are then solved on
    the whole track by the chain itself, where the winner is chosen and measured. ``on_point(k, n,
    point)`` hears of each grid point as it is ranked (k of n; None when it cannot reach the target).

    Raises ValueError when no grid point reaches the target (the target cannot be met).
    """
    if not release_ms or not lookahead_ms or not slow_release_ms:
        raise ValueError(
            "baseline.release_ms, baseline.lookahead_ms and baseline.slow_release_ms need at least "
            "one value each (null in slow_release_ms: a single release)"
        )
    if score is None:
        score = (lambda ref, out: float(measure(ref, out)["objective_drl_db"])) if measure else _plain_drl
    excerpt = excerpt or whole_track(audio, target)
    # the grid is ranked from the excerpt's peak envelope; the finalists are solved with the chain itself, whose
    # true peak may differ in the last bits and so lower its ceiling where the shortcut's does not
    ranking_renders = GainLimiterRenders(excerpt.audio, sample_rate, true_peak)
    gain_db = Gain.spec_of("gain_db").clamp(
        excerpt.target.lufs - float(drl.integrated_loudness(excerpt.audio, sample_rate))
    )

    def solve(
        settings: tuple,
        track: torch.Tensor,
        level,
        start_db: float,
        slope: float | None,
        exact: bool,
        ceiling_db: float | None = None,
    ):
        """``settings`` solved onto ``level`` on ``track``, from ``start_db`` and ``ceiling_db`` (default the
        ceiling the level allows)."""
        release, lookahead, slow = settings
        chain = baseline_chain(
            sample_rate,
            start_db,
            level.ceiling_dbtp if ceiling_db is None else min(ceiling_db, level.ceiling_dbtp),
            release,
            lookahead,
            true_peak,
            None if slow is None else float(slow),
        ).to(audio.device)
        solution = solve_target(
            chain,
            track,
            sample_rate,
            level,
            "gain.gain_db",
            "limiter.ceiling_db",
            tol_lu=tol_lu,
            slope_hint=slope,
            render_fn=None if exact else ranking_renders,
        )
        return chain, solution

    ranked, grid, slope, failure = [], [], None, None
    grid_settings = list(itertools.product(release_ms, lookahead_ms, slow_release_ms))
    for k, settings in enumerate(grid_settings, 1):
        try:
            _, solution = solve(settings, excerpt.audio, excerpt.target, gain_db, slope, exact=False)
        except ValueError as error:  # this point cannot reach the target; another one may
            failure = error
            if on_point:
                on_point(k, len(grid_settings), None)
            continue
        point = {
            "release_ms": float(settings[0]),
            "lookahead_ms": float(settings[1]),
            "slow_release_ms": None if settings[2] is None else float(settings[2]),
            "drl_db": float(drl.drl_db(excerpt.audio, solution.output).mean()),
        }
        if measure is not None:
            point["objective_drl_db"] = score(excerpt.audio, solution.output)
        grid.append(point)
        ranked.append((point.get("objective_drl_db", point["drl_db"]), point, solution))
        ranked.sort(key=lambda entry: entry[0])  # stable: the first of equals stays first
        solution.output = None  # the finalists are rendered again by the chain: hold no ranking render
        if on_point:
            on_point(k, len(grid_settings), point)
        gain_db = solution.values["gain.gain_db"]  # neighbours need about the same gain and slope: fewer renders
        slope = solution.slope or slope
    if not ranked:
        raise failure
    # The best few solved on the whole track by the chain itself, each from its ranking solve's gain and ceiling:
    # a gain puts the excerpt and the whole track on their targets alike (the excerpt's target is shifted by
    # their loudness difference), and the limiting moves them a little apart; each finalist then starts where
    # the one before landed relative to its ranking solve, with its slope.
    finals, offset_db, whole_slope = [], 0.0, None
    for _, point, solution in ranked[: max(finalists, 1)]:
        settings = (point["release_ms"], point["lookahead_ms"], point["slow_release_ms"])
        start = solution.values["gain.gain_db"] + offset_db
        ceiling = solution.values["limiter.ceiling_db"]
        hint = whole_slope or solution.slope
        try:
            final = solve(settings, audio, target, start, hint, exact=True, ceiling_db=ceiling)[1]
        except ValueError as error:
            failure = error
            continue
        offset_db = final.values["gain.gain_db"] - solution.values["gain.gain_db"]
        whole_slope = final.slope or whole_slope
        value = score(audio, final.output)
        if excerpt.whole:  # ranked where it is solved: the grid reports what the chain itself scores
            point["drl_db"] = value if measure is None else _plain_drl(audio, final.output)
            if measure is not None:
                point["objective_drl_db"] = value
        finals.append((value, point, final))
    if not finals:
        raise failure
    _, point, solution = min(finals, key=lambda final: final[0])  # the winner, measured in full below
    if measure is None:
        measures = {"drl_db": float(drl.drl_db(audio, solution.output).mean())}
    else:
        measures = plain_measures(measure(audio, solution.output))
    winner = {
        **point,
        **measures,
        "lufs": solution.lufs,
        "true_peak_dbtp": solution.true_peak_dbtp,
        "gain_db": solution.values["gain.gain_db"],
        "ceiling_db": solution.values["limiter.ceiling_db"],
    }
    # the winner where later candidates are compared: solved onto the excerpt's target as the whole track reads it
    if excerpt.whole:
        on_excerpt = {
            "gain_db": winner["gain_db"],
            "ceiling_db": winner["ceiling_db"],
            "objective_drl_db": _objective(winner),
            "target_lufs": float(target.lufs),
        }
    else:
        excerpt = excerpt.retarget(solution.output, sample_rate, target)
        settings = (winner["release_ms"], winner["lookahead_ms"], winner["slow_release_ms"])
        _, cut = solve(
            settings,
            excerpt.audio,
            excerpt.target,
            winner["gain_db"],
            solution.slope,
            exact=True,
            ceiling_db=winner["ceiling_db"],
        )
        on_excerpt = {
            "gain_db": cut.values["gain.gain_db"],
            "ceiling_db": cut.values["limiter.ceiling_db"],
            "objective_drl_db": score(excerpt.audio, cut.output) if measure else _plain_drl(excerpt.audio, cut.output),
            "target_lufs": excerpt.target.lufs,
        }
    return {**winner, "true_peak": bool(true_peak), "grid": grid, "excerpt": on_excerpt}


def _objective(point: dict) -> float:
    return point.get("objective_drl_db", point["drl_db"])


def _plain_drl(reference: torch.Tensor, output: torch.Tensor) -> float:
    return float(drl.drl_db(reference, output).mean())


def of_structure(baseline: dict, two_stage: bool) -> dict:
    """The baseline's winner if its limiter release is of the asked structure (two-stage or single), else the
    best point of its grid that is (settings only: the tuning start derives from them). Tracks tuned in one batch
    need one limiter structure."""
    if (baseline.get("slow_release_ms") is not None) == two_stage:
        return baseline
    points = [p for p in baseline["grid"] if (p.get("slow_release_ms") is not None) == two_stage]
    if not points:
        raise ValueError(f"the baseline grid has no {'two-stage' if two_stage else 'single'} release to start from")
    return min(points, key=lambda p: p.get("objective_drl_db", p["drl_db"]))


def render_baseline(audio: torch.Tensor, sample_rate: int, baseline: dict) -> torch.Tensor:
    """``audio`` (C, T) through the baseline's winning gain + limiter settings (no gradients)."""
    chain = baseline_chain(
        sample_rate,
        baseline["gain_db"],
        baseline["ceiling_db"],
        baseline["release_ms"],
        baseline["lookahead_ms"],
        bool(baseline.get("true_peak", True)),
        baseline.get("slow_release_ms"),
    ).to(audio.device)
    with torch.no_grad():
        return chain(audio)
