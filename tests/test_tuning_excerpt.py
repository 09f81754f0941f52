"""Candidates compared on an excerpt of a long track: which blocks, its target, the baseline ranked there."""

import pytest
import torch
from drl_test_signals import sectioned_noise

import drl
from tuning.baseline import GainLimiterRenders, baseline_chain, run_baseline
from tuning.excerpt import choose_excerpt
from tuning.objective import LossWeights, Objective, Target

RATE = 8000
TARGET = Target(-14.0, -1.0)


def sectioned(levels_db, block_s=5.0):
    """Stereo noise in blocks of ``block_s`` at the given levels (dBFS RMS), with a small DC offset."""
    return sectioned_noise(levels_db, block_s, RATE, dc_offset=0.001)


def test_a_short_track_is_its_own_excerpt():
    track = sectioned([-20.0] * 8)  # 40 s
    excerpt = choose_excerpt(track, RATE, TARGET, excerpt_s=30.0)
    assert excerpt.whole and excerpt.audio is track and excerpt.cut(track) is track
    assert excerpt.target.lufs == TARGET.lufs and excerpt.target.ceiling_dbtp == TARGET.ceiling_dbtp
    assert choose_excerpt(sectioned([-20.0] * 20), RATE, TARGET, excerpt_s=None).whole


def test_the_excerpt_holds_the_loudest_blocks_and_some_from_the_middle_in_time_order():
    levels = [-30.0, -28.0, -8.0, -26.0, -6.0, -24.0, -22.0, -10.0, -20.0, -18.0, -16.0, -32.0]
    track = sectioned(levels)  # 60 s
    excerpt = choose_excerpt(track, RATE, TARGET, excerpt_s=15.0)  # 3 blocks of 5 s
    block = 5 * RATE
    chosen = [start // block for start, _ in excerpt.spans]
    # the two loudest (-6, -8 dB) and the median of the others (-24 dB), in time order
    assert chosen == [2, 4, 5]
    assert torch.equal(excerpt.audio, excerpt.cut(track))
    shift = float(drl.integrated_loudness(excerpt.audio, RATE) - drl.integrated_loudness(track, RATE))
    assert shift > 3.0 and excerpt.target.lufs == pytest.approx(TARGET.lufs + shift)
    output = 0.5 * track  # a gain changes nothing of the difference
    assert excerpt.retarget(output, RATE, TARGET).target.lufs == pytest.approx(excerpt.target.lufs, abs=1e-4)


def test_excerpt_length_is_checked():
    with pytest.raises(ValueError, match="solve.excerpt_s"):
        choose_excerpt(sectioned([-20.0] * 20), RATE, TARGET, excerpt_s=2.0)


@pytest.mark.parametrize("slow_release_ms", [None, 500.0])
def test_gain_limiter_renders_equal_the_chain(slow_release_ms):
    track = sectioned([-12.0, -3.0, -20.0], block_s=1.0)
    renders = GainLimiterRenders(track, RATE, true_peak=True)
    chain = baseline_chain(RATE, 6.0, -1.0, 20.0, 5.0, True, slow_release_ms)
    with torch.no_grad():
        expected = chain(track)
    assert torch.allclose(renders(chain, track), expected, atol=1e-6, rtol=0)
    other = track.clone()  # another tensor: rendered by the chain itself
    assert torch.equal(renders(chain, other), expected)


def test_score_equals_the_measures_objective():
    track = sectioned([-12.0, -3.0, -20.0], block_s=1.0)
    output = torch.tanh(2 * track) / 2
    for weights in (
        LossWeights(),
        LossWeights(drl=0.0, nmr=1.0),
        LossWeights(drl=1.0, frame=1.0, bands={"100_1000": 2}),
    ):
        objective = Objective(RATE, TARGET, weights)
        measured = float(objective.measure(track, output)["objective_drl_db"])
        assert objective.score(track, output) == pytest.approx(measured, abs=1e-9)


@pytest.mark.slow
def test_baseline_ranked_on_an_excerpt_ends_on_target_on_the_whole_track():
    levels = [-30.0, -12.0, -26.0, -9.0, -24.0, -20.0, -10.0, -28.0, -22.0, -18.0]
    track = sectioned(levels, block_s=2.0)  # 20 s
    objective = Objective(RATE, TARGET, LossWeights(drl=0.0, nmr=1.0))
    excerpt = choose_excerpt(track, RATE, TARGET, excerpt_s=6.0, block_s=2.0)
    assert not excerpt.whole
    base = run_baseline(
        track,
        RATE,
        TARGET,
        release_ms=(1.0, 100.0),
        lookahead_ms=(5.0,),
        measure=objective.measure,
        score=objective.score,
        excerpt=excerpt,
    )
    assert abs(base["lufs"] - TARGET.lufs) <= 0.001 and base["true_peak_dbtp"] <= TARGET.ceiling_dbtp + 1e-6
    assert len(base["grid"]) == 2
    # the winner on the whole track, measured there; and where later candidates are compared
    chain = baseline_chain(
        RATE, base["gain_db"], base["ceiling_db"], base["release_ms"], base["lookahead_ms"], True, None
    )
    with torch.no_grad():
        output = chain(track)
    assert base["objective_drl_db"] == pytest.approx(objective.score(track, output), abs=1e-3)
    on_excerpt = base["excerpt"]
    chain.set_values(**{"gain.gain_db": on_excerpt["gain_db"], "limiter.ceiling_db": on_excerpt["ceiling_db"]})
    with torch.no_grad():
        cut = chain(excerpt.audio)
    assert float(drl.integrated_loudness(cut, RATE)) == pytest.approx(on_excerpt["target_lufs"], abs=0.001)
    assert on_excerpt["objective_drl_db"] == pytest.approx(objective.score(excerpt.audio, cut), abs=1e-3)


def test_measure_takes_the_nmr_a_score_of_the_same_render_computed(monkeypatch):
    from drl.nmr import MaskedReference

    track = sectioned([-12.0, -3.0, -20.0], block_s=1.0)
    outputs = [torch.tanh(2 * track) / 2, torch.tanh(3 * track) / 3]
    objective = Objective(RATE, TARGET, LossWeights(drl=0.0, nmr=1.0))
    fresh = [Objective(RATE, TARGET, LossWeights(drl=0.0, nmr=1.0)).measure(track, out) for out in outputs]
    calls = []
    original = MaskedReference.nmr_db
    monkeypatch.setattr(MaskedReference, "nmr_db", lambda self, out, **kw: calls.append(1) or original(self, out, **kw))
    scores = [objective.score(track, out) for out in outputs]  # two finalists scored...
    measured = objective.measure(track, outputs[0])  # ...then the first one measured in full
    assert len(calls) == 2
    assert scores[0] == pytest.approx(float(measured["objective_drl_db"]), abs=1e-9)
    assert all(torch.equal(measured[k], fresh[0][k]) for k in fresh[0])
    objective.measure(track, outputs[0].clone())  # another tensor: measured anew
    assert len(calls) == 3
