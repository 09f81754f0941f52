"""The final solve of a long track compared on an excerpt: on target on the whole track in one or two renders,
and the idle settings (the baseline) finalized where the baseline landed."""

from dataclasses import replace

import pytest
import torch
from drl_test_signals import sectioned_noise

import drl
from processors import Chain, Gain, Limiter, Saturator
from tuning.baseline import run_baseline
from tuning.excerpt import Level, choose_excerpt
from tuning.module import Item, TuningModule
from tuning.objective import LossWeights, Objective, Target

RATE = 8000
TARGET = Target(-14.0, -1.0)


@pytest.fixture(scope="module")
def item():
    """A 24 s track with loud and quiet sections, its 6 s excerpt retargeted by its baseline (as a job does)."""
    levels = [-30.0, -12.0, -26.0, -9.0, -24.0, -20.0, -10.0, -28.0, -22.0, -18.0, -11.0, -25.0]
    track = sectioned_noise(levels, 2.0, RATE)
    objective = Objective(RATE, TARGET, LossWeights())
    excerpt = choose_excerpt(track, RATE, TARGET, excerpt_s=6.0, block_s=2.0)
    assert not excerpt.whole
    base = run_baseline(
        track,
        RATE,
        TARGET,
        release_ms=(100.0,),
        lookahead_ms=(5.0,),
        measure=objective.measure,
        score=objective.score,
        excerpt=excerpt,
    )
    excerpt = replace(excerpt, target=Level(base["excerpt"]["target_lufs"], TARGET.ceiling_dbtp))
    return Item("noise", track, objective, baseline=base, excerpt=excerpt)


def module_of(item, saturator_mix):
    chain = Chain(
        {
            "gain": Gain(RATE),
            "saturator": Saturator(RATE, drive_db=12.0, mix=saturator_mix),
            "limiter": Limiter(RATE, ceiling_db=-1.0, release_ms=100.0, lookahead_ms=5.0, true_peak=True),
        }
    )
    return TuningModule(
        chain,
        [item],
        RATE,
        torch.optim.Adam,
        RATE,
        "gain.gain_db",
        "limiter.ceiling_db",
        idle_values={"saturator.mix": 0.0},
    )


def check_on_target(solution, track):
    assert abs(float(drl.integrated_loudness(solution.output, RATE)) - TARGET.lufs) <= 0.001
    assert float(drl.true_peak(solution.output, RATE).amax()) <= TARGET.ceiling_dbtp
    assert solution.output.shape == track.shape


@pytest.mark.slow
def test_the_final_solve_starts_where_the_excerpt_solve_landed(item):
    module = module_of(item, saturator_mix=0.02)
    module.solve_item(0)  # a validation's projection onto the excerpt's target
    (final,) = module.finalize(tol_lu=0.001)
    check_on_target(final, item.track)
    # the excerpt's gain and the baseline's ceiling: no search, no ceiling round
    assert final.renders <= 2
    assert final.values["limiter.ceiling_db"] <= item.baseline["ceiling_db"] + 0.001


@pytest.mark.slow
def test_a_tuned_result_worse_than_the_baseline_finalizes_the_baseline_in_one_render(item):
    module = module_of(item, saturator_mix=1.0)  # a full-mix saturator: far from transparent
    module.solve_item(0)
    (final,) = module.finalize(tol_lu=0.001)
    metrics = module.final_metrics[0]
    assert metrics["selected"] == "idle"
    check_on_target(final, item.track)
    assert final.renders == 1
    assert final.values["gain.gain_db"] == pytest.approx(item.baseline["gain_db"], abs=1e-5)
    assert metrics["output"]["objective_drl_db"] == pytest.approx(item.baseline["objective_drl_db"], abs=1e-3)
