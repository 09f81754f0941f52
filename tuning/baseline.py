"""The baseline a careful user would try first: gain + the project's limiter, gain solved for the target,
the limiter's release and lookahead searched over a small grid. Its DRL is the bar the tuned chain must meet.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import torch

import drl
from processors import Chain, Gain, Limiter
from tuning.objective import Target
from tuning.results import plain_measures
from tuning.solve import TOL_LU, solve_target


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
) -> dict:
    """Search the grid of release x lookahead x slow release (None: a single release); return the winner as
    plain values: ``drl_db``, ``lufs``, ``true_peak_dbtp``, ``gain_db``, ``ceiling_db``, ``release_ms``,
    ``lookahead_ms``, ``slow_release_ms``, and ``grid`` (every point's DRL).

    With ``measure(audio, output)`` (e.g. :meth:`tuning.objective.Objective.measure`: a dict of 0-d tensors
    holding ``objective_drl_db``) the winner is the point with the least ``objective_drl_db`` (the measure the
    tuning loss optimises) and it also holds every measure, as plain numbers (``band_drl_db`` as a dict);
    without it, the least plain DRL wins.

    Raises ValueError when no grid point reaches the target (the target cannot be met).
    """
    if not release_ms or not lookahead_ms or not slow_release_ms:
        raise ValueError(
            "baseline.release_ms, baseline.lookahead_ms and baseline.slow_release_ms need at least "
            "one value each (null in slow_release_ms: a single release)"
        )
    start_db = target.lufs - float(drl.integrated_loudness(audio, sample_rate))
    grid = []
    best = None
    best_score = None
    slope = None
    failure: ValueError | None = None
    for release, lookahead, slow in itertools.product(release_ms, lookahead_ms, slow_release_ms):
        gain_db = Gain.spec_of("gain_db").clamp(start_db)
        chain = baseline_chain(
            sample_rate,
            gain_db,
            target.ceiling_dbtp,
            release,
            lookahead,
            true_peak,
            None if slow is None else float(slow),
        ).to(audio.device)
        try:
            solution = solve_target(
                chain, audio, sample_rate, target, "gain.gain_db", "limiter.ceiling_db", tol_lu=tol_lu, slope_hint=slope
            )
        except ValueError as error:  # this point cannot reach the target; another one may
            failure = error
            continue
        if measure is None:
            measures = {"drl_db": float(drl.drl_db(audio, solution.output).mean())}
        else:
            measures = plain_measures(measure(audio, solution.output))
        score = measures.get("objective_drl_db", measures["drl_db"])
        point = {
            **measures,
            "lufs": solution.lufs,
            "true_peak_dbtp": solution.true_peak_dbtp,
            "gain_db": solution.values["gain.gain_db"],
            "ceiling_db": solution.values["limiter.ceiling_db"],
            "release_ms": float(release),
            "lookahead_ms": float(lookahead),
            "slow_release_ms": None if slow is None else float(slow),
        }
        grid.append(
            {
                k: point[k]
                for k in ("release_ms", "lookahead_ms", "slow_release_ms", "drl_db", "objective_drl_db")
                if k in point
            }
        )
        start_db = point["gain_db"]  # neighbours need about the same gain and slope: fewer renders
        slope = solution.slope or slope
        if best is None or score < best_score:
            best, best_score = point, score
    if best is None:
        raise failure
    return {**best, "true_peak": bool(true_peak), "grid": grid}


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
