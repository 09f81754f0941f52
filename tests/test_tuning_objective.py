"""The training objective and the target/weights it is built from."""

import math

import pytest
import torch

import drl
from tuning.objective import LossWeights, Objective, Target, distortion_measures, join_crops, parse_band_key

RATE = 44100


def noise_crops(seed=0, batch=2, seconds=1.0):
    gen = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(batch, 2, int(seconds * RATE), generator=gen)


def test_target_validation():
    assert Target(-14, -1).lufs == -14
    with pytest.raises(ValueError, match="lufs"):
        Target(5.0, -1.0)
    with pytest.raises(ValueError, match="ceiling_dbtp"):
        Target(-14.0, 2.0)
    with pytest.raises(ValueError, match="finite"):
        Target(math.nan, -1.0)
    with pytest.raises(ValueError, match="cannot be met"):
        Target(-2.0, -1.0)


def test_weights_validation():
    with pytest.raises(ValueError, match="loss.drl"):
        LossWeights(drl=-1.0)
    with pytest.raises(ValueError, match="band key"):
        LossWeights(bands={"low": 1.0})
    with pytest.raises(ValueError, match="ignore distortion"):
        LossWeights(drl=0.0)
    assert parse_band_key("200_2000") == (200.0, 2000.0)


def test_join_crops_keeps_channels():
    x = torch.arange(12.0).reshape(2, 2, 3)
    assert torch.equal(join_crops(x), torch.tensor([[0.0, 1, 2, 6, 7, 8], [3, 4, 5, 9, 10, 11]]))


def test_terms_on_a_gain_change():
    x = noise_crops()
    lufs_x = float(drl.integrated_loudness(join_crops(x), RATE))
    target = Target(round(lufs_x) + 3.0, -1.0)
    objective = Objective(RATE, target, LossWeights(drl=1.0, loudness=2.0, true_peak=0.0))
    terms = objective(x, x * 10 ** (3 / 20))
    assert float(terms["drl_db"]) < -100  # a pure gain is no distortion
    assert float(terms["lufs"]) == pytest.approx(lufs_x + 3, abs=1e-3)
    err = float(terms["loudness_error_lu"])
    assert float(terms["loss"]) == pytest.approx(float(terms["drl_db"]) + 2 * err**2, rel=1e-5)


def test_shared_level_match_counts_slow_gain_changes():
    # crop 1 at unity, crop 2 at -6 dB: each crop alone is a pure gain, the batch is not
    x = noise_crops()
    y = x.clone()
    y[1] *= 0.5
    objective = Objective(RATE, Target(-20, -1), LossWeights(loudness=0.0, true_peak=0.0))
    assert float(objective(x, y)["drl_db"]) > -20
    per_crop = drl.drl_db(x, y)
    assert float(per_crop.max()) < -100


def test_peak_penalty_and_gradients():
    x = noise_crops(batch=1)
    gain = torch.tensor(1.0, requires_grad=True)
    objective = Objective(RATE, Target(-30.0, -10.0), LossWeights(loudness=1.0, true_peak=10.0))
    terms = objective(x, gain * torch.tanh(2 * x) * 2)
    assert float(terms["peak_excess_db"].detach()) > 0
    terms["loss"].backward()
    assert gain.grad is not None and torch.isfinite(gain.grad) and float(gain.grad) > 0


def test_band_terms():
    x = noise_crops(batch=1)
    y = torch.tanh(4 * x) / 4
    objective = Objective(RATE, Target(-20, -1), LossWeights(bands={"20_200": 0.5, "200_2000": 1.0}))
    terms = objective(x, y)
    assert {"band_drl_db/20_200", "band_drl_db/200_2000"} <= set(terms)
    with pytest.raises(ValueError, match="Nyquist"):
        Objective(8000, Target(-20, -1), LossWeights(bands={"2000_20000": 1.0}))


def slow_gain_pair(seed=0):
    """Noise crops and the same crops under a +-3 dB gain swing at 1 Hz: a slow level change, no distortion
    a 50 ms frame can see."""
    x = noise_crops(seed)
    t = torch.arange(x.shape[-1]) / RATE
    return x, x * 10 ** (3 * torch.sin(2 * math.pi * t) / 20)


def test_frame_term_forgives_slow_gain_changes_and_has_gradients():
    x, y = slow_gain_pair()
    scale = torch.tensor(1.0, requires_grad=True)
    weights = LossWeights(drl=0.25, loudness=0.0, true_peak=0.0, frame=0.75, frame_ms=50.0)
    terms = Objective(RATE, Target(-20, -1), weights)(x, scale * y + 0.01 * torch.tanh(8 * x) ** 3)
    values = {k: float(v.detach()) for k, v in terms.items()}
    assert values["frame_drl_db"] < values["drl_db"] - 10
    expected = 0.25 * values["drl_db"] + 0.75 * values["frame_drl_db"]
    assert values["loss"] == pytest.approx(expected, rel=1e-6)
    terms["loss"].backward()
    assert scale.grad is not None and torch.isfinite(scale.grad) and float(scale.grad) != 0
    # the frame term is computed on the crops joined end to end, as the plain one is
    joined = drl.frame_drl_db(join_crops(x), join_crops(y + 0.01 * torch.tanh(8 * x) ** 3), RATE, 50.0).mean()
    assert values["frame_drl_db"] == pytest.approx(float(joined), abs=1e-4)
    assert "frame_drl_db" not in Objective(RATE, Target(-20, -1), LossWeights())(x, y)


def test_frame_weights_validation():
    with pytest.raises(ValueError, match="loss.frame"):
        LossWeights(frame=-0.5)
    with pytest.raises(ValueError, match="frame_ms"):
        LossWeights(frame=1.0, frame_ms=0.0)
    with pytest.raises(ValueError, match="ignore distortion"):
        LossWeights(drl=0.0, frame=0.0)
    assert LossWeights(drl=0.0, frame=1.0).frame == 1.0


def test_objective_measure_is_the_weighted_mean_and_plain_drl_for_plain():
    x, y = slow_gain_pair()
    x, y = join_crops(x), join_crops(torch.tanh(3 * y) / 3)
    plain = distortion_measures(x, y, RATE, LossWeights())
    assert float(plain["objective_drl_db"]) == float(plain["drl_db"])  # exactly: loss=plain selects by DRL
    assert float(plain["drl_db"]) == pytest.approx(float(drl.drl_db(x, y).mean()), abs=1e-6)
    frame = drl.frame_drl_db(x, y, RATE, 50.0).mean()
    assert float(plain["frame_drl_db"]) == pytest.approx(float(frame), abs=1e-6)
    bands = drl.band_drl_db(x, y, RATE, drl.DEFAULT_BANDS).mean(dim=-1)
    for (low, high), value in zip(drl.DEFAULT_BANDS, bands):
        assert float(plain[f"band_drl_db/{drl.band_key(low, high)}"]) == pytest.approx(float(value), abs=1e-6)

    weights = LossWeights(drl=0.25, bands={"300.0_3000": 0.25}, frame=0.5, frame_ms=20.0)
    mixed = distortion_measures(x, y, RATE, weights)
    # a band of the loss is measured too, under the loss's own key and the canonical one
    assert float(mixed["band_drl_db/300.0_3000"]) == float(mixed["band_drl_db/300_3000"])
    frame = drl.frame_drl_db(x, y, RATE, 20.0).mean()
    assert float(mixed["frame_drl_db"]) == pytest.approx(float(frame), abs=1e-6)
    expected = 0.25 * mixed["drl_db"] + 0.25 * mixed["band_drl_db/300_3000"] + 0.5 * mixed["frame_drl_db"]
    # float32 values near -18 dB are 1.9e-6 apart: a few of those for the order of the sums
    assert float(mixed["objective_drl_db"]) == pytest.approx(float(expected), abs=1e-5)
    assert float(mixed["objective_drl_db"]) != pytest.approx(float(mixed["drl_db"]), abs=0.1)
    objective = Objective(RATE, Target(-20, -1), weights)
    assert float(objective.measure(x, y)["objective_drl_db"]) == float(mixed["objective_drl_db"])
