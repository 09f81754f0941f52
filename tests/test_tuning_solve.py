"""Ending on target: the root find, the whole-track solve and the baseline."""

import pytest
import torch

import drl
from processors import Chain, Gain, Limiter
from tuning.audio import demo_track
from tuning.baseline import run_baseline
from tuning.objective import Target
from tuning.solve import find_gain, solve_target


def limited(g):
    """A loudness curve like a limiter's: slope 1, then flattening towards -8 LUFS."""
    return -30.0 + g if g < 12 else -18.0 + 10 * (1 - 1 / (1 + (g - 12) / 10))


@pytest.mark.parametrize("target", [-40.0, -25.0, -17.0, -12.0, -11.0])
def test_find_gain_hits_the_target(target):
    gain, level, count = find_gain(limited, target, 0.0, -24.0, 36.0, tol_lu=0.005)
    assert abs(level - target) <= 0.005 and abs(limited(gain) - target) <= 0.005
    assert count <= 12


def test_find_gain_reports_an_unreachable_target():
    with pytest.raises(ValueError, match="cannot be met.*louder"):
        find_gain(limited, -10.0, 0.0, -24.0, 36.0)
    with pytest.raises(ValueError, match="quieter"):
        find_gain(limited, -80.0, 0.0, -24.0, 36.0)


@pytest.fixture(scope="module")
def track():
    return demo_track(duration_s=5.0, seed=2)


def test_solve_target_ends_on_target(track):
    target = Target(-12.0, -1.0)
    # a sample-peak limiter lets inter-sample peaks through: the solve lowers its ceiling until they fit
    chain = Chain(
        {
            "gain": Gain(44100),
            "limiter": Limiter(44100, ceiling_db=-1.0, release_ms=20.0, lookahead_ms=1.0, true_peak=False),
        }
    )
    solution = solve_target(chain, track.audio, 44100, target, "gain.gain_db", "limiter.ceiling_db")
    assert abs(float(drl.integrated_loudness(solution.output, 44100)) - target.lufs) <= 0.02
    assert float(drl.true_peak(solution.output, 44100).amax()) <= target.ceiling_dbtp + 1e-3
    assert solution.values["limiter.ceiling_db"] <= -1.0
    assert chain.values() == solution.values
    assert solution.renders < 25


def test_solve_target_without_ceiling_param(track):
    chain = Chain({"gain": Gain(44100)})
    solution = solve_target(chain, track.audio, 44100, Target(-30.0, -1.0), "gain.gain_db", None)
    assert solution.lufs == pytest.approx(-30.0, abs=0.02)


def test_baseline_picks_the_least_drl(track):
    target = Target(-14.0, -1.0)
    result = run_baseline(track.audio, 44100, target, release_ms=[5.0, 100.0], lookahead_ms=[2.0])
    assert len(result["grid"]) == 2
    assert result["drl_db"] == min(p["drl_db"] for p in result["grid"])
    assert abs(result["lufs"] - target.lufs) <= 0.02
    assert result["true_peak_dbtp"] <= target.ceiling_dbtp + 0.02
    assert result["release_ms"] in (5.0, 100.0)


def test_baseline_reports_an_impossible_target(track):
    with pytest.raises(ValueError, match="cannot be met"):
        run_baseline(track.audio, 44100, Target(-4.5, -1.0), release_ms=[1000.0], lookahead_ms=[20.0])


def test_baseline_searches_two_stage_releases_and_a_batch_takes_one_structure(track):
    from tuning.baseline import of_structure

    target = Target(-12.0, -1.0)
    result = run_baseline(
        track.audio, 44100, target, release_ms=[5.0], lookahead_ms=[2.0], slow_release_ms=[None, 400.0]
    )
    assert [p["slow_release_ms"] for p in result["grid"]] == [None, 400.0]
    assert result["slow_release_ms"] in (None, 400.0)
    for two_stage in (False, True):
        chosen = of_structure(result, two_stage)
        assert (chosen["slow_release_ms"] is not None) == two_stage
        assert chosen["release_ms"] == 5.0
    single = run_baseline(track.audio, 44100, target, release_ms=[5.0], lookahead_ms=[2.0])
    with pytest.raises(ValueError, match="no two-stage release"):
        of_structure(single, True)
    with pytest.raises(ValueError, match="slow_release_ms need at least one value"):
        run_baseline(track.audio, 44100, target, slow_release_ms=[])


def test_choose_start_keeps_the_best_start_that_reaches_the_target(track):
    import functools

    from tuning.build import ProcessorSpec, choose_start
    from tuning.objective import LossWeights, Objective

    slow = {"limiter.release_ms": 1000.0, "limiter.lookahead_ms": 20.0}
    spec = ProcessorSpec(
        {
            "gain": functools.partial(Gain, gain_db="auto"),
            "limiter": functools.partial(Limiter, ceiling_db=-1.0, release_ms=20.0, lookahead_ms=2.0, true_peak=True),
        },
        frozen=["limiter.ceiling_db"],
        level_param="gain.gain_db",
        ceiling_param="limiter.ceiling_db",
        starts=[slow, {"limiter.release_ms": 200.0}],
    )
    target = Target(-6.0, -1.0)  # too loud for the slow start: it holds the gain down
    objective = Objective(44100, target, LossWeights())
    processor, scored = choose_start(spec, track.audio, 44100, target, {"gain_db": 10.0}, objective.score, tol_lu=0.01)
    assert [s["values"] for s in scored] == [{}, slow, {"limiter.release_ms": 200.0}]
    scores = [s["objective_drl_db"] for s in scored]
    assert scores[1] is None and scores[0] is not None and scores[2] is not None
    output = processor(track.audio)
    assert float(drl.integrated_loudness(output, 44100)) == pytest.approx(-6.0, abs=0.01)
    assert float(objective.measure(track.audio, output)["objective_drl_db"]) == pytest.approx(
        min(scores[0], scores[2]), abs=1e-6
    )
    with pytest.raises(ValueError, match="cannot be met"):
        choose_start(spec, track.audio, 44100, Target(-3.0, 0.0), {"gain_db": 10.0}, objective.score, 0.01)
    with pytest.raises(ValueError, match="names no stage"):
        ProcessorSpec(spec.stages, level_param="gain.gain_db", starts=[{"reverb.mix": 1.0}])


def test_a_lowered_ceiling_is_made_up_by_the_gain_that_keeps_the_loudness(track):
    from tuning.solve import ceiling_gain_step

    chain = Chain({"gain": Gain(44100), "limiter": Limiter(44100, ceiling_db=-1.0, release_ms=50.0, lookahead_ms=5.0)})

    def loudness(gain_db, ceiling_db):
        chain.set_values(**{"gain.gain_db": gain_db, "limiter.ceiling_db": ceiling_db})
        return float(drl.integrated_loudness(chain(track.audio).detach(), 44100))

    gain = 14.0  # well into limiting: the loudness moves by less than the gain
    slope = (loudness(gain + 0.05, -1.0) - loudness(gain - 0.05, -1.0)) / 0.1
    assert 0.2 < slope < 0.9
    step = ceiling_gain_step(0.1, slope)
    assert step > 0
    before = loudness(gain, -1.0)
    lost = loudness(gain, -1.1) - before  # the same gain under the lower ceiling
    kept = loudness(gain + step, -1.1) - before
    assert lost < -0.01 and abs(kept) < 0.25 * abs(lost)


def test_a_ceiling_round_starts_near_its_root(track):
    # a sample-peak limiter: the true peak overshoots, the ceiling comes down and the gain makes up for it
    chain = Chain({"gain": Gain(44100), "limiter": Limiter(44100, release_ms=20.0, lookahead_ms=1.0, true_peak=False)})
    rendered = []

    def render_fn(processor, audio):
        rendered.append(processor.values()["limiter.ceiling_db"])
        with torch.no_grad():
            return processor(audio)

    target = Target(-12.0, -1.0)
    solution = solve_target(
        chain, track.audio, 44100, target, "gain.gain_db", "limiter.ceiling_db", render_fn=render_fn
    )
    assert abs(solution.lufs - target.lufs) <= 0.001 and solution.true_peak_dbtp <= -1.0
    lowered = [c for c in rendered if c < -1.0]
    assert lowered and len(lowered) <= 2 * len(set(lowered))  # at most two renders per ceiling round


def test_local_slope_skips_renders_too_close_to_tell():
    from tuning.solve import local_slope

    points = [(1.0, -14.2), (1.2, -14.0), (1.200001, -13.9990)]  # the last two differ by rounding
    assert local_slope(points, 1.2) == pytest.approx(1.0)
    assert local_slope(points[1:], 1.2) is None
    assert local_slope([], 0.0) is None
