"""The distortion measures every tuning run logs, and selection by the measure the loss optimises."""

import pytest
import torch

import drl
from tuning.baseline import run_baseline
from tuning.objective import LossWeights, Objective, Target
from tuning.results import plain_measures, track_metrics

RATE = 44100
TRANSPARENT = LossWeights(drl=0.25, loudness=2.0, true_peak=10.0, bands={"200_2000": 0.25}, frame=0.5)


def loud_noise(seconds=1.5):
    gen = torch.Generator().manual_seed(3)
    slow = 1.0 + 0.8 * torch.sin(torch.linspace(0, 6.0, int(seconds * RATE)))  # sections of unequal level
    return 0.03 * slow * torch.randn(2, int(seconds * RATE), generator=gen)


def test_track_metrics_holds_every_measure():
    x = loud_noise()
    y = torch.tanh(5 * x) / 5
    out = track_metrics(x, y, RATE, TRANSPARENT)
    assert set(out["band_drl_db"]) == {"20_200", "200_2000", "2000_20000"}
    assert out["frame_drl_db"] == pytest.approx(float(drl.frame_drl_db(x, y, RATE, 50.0).mean()), abs=1e-5)
    expected = 0.25 * out["drl_db"] + 0.25 * out["band_drl_db"]["200_2000"] + 0.5 * out["frame_drl_db"]
    assert out["objective_drl_db"] == pytest.approx(expected, abs=1e-5)
    plain = track_metrics(x, y, RATE)
    assert plain["objective_drl_db"] == plain["drl_db"]
    assert track_metrics(x, x, RATE)["frame_drl_db"] == pytest.approx(-120.0, abs=0.01)


def test_plain_measures_nests_bands_and_drops_non_finite():
    values = {
        "drl_db": torch.tensor(-20.0),
        "band_drl_db/20_200": torch.tensor(-30.0),
        "frame_drl_db": torch.tensor(float("nan")),
    }
    assert plain_measures(values) == {"drl_db": -20.0, "band_drl_db": {"20_200": -30.0}, "frame_drl_db": None}


def test_baseline_is_chosen_by_the_objective_measure():
    x = loud_noise()
    lufs = float(drl.integrated_loudness(x, RATE))
    target = Target(round(lufs) + 13.0, -1.0)  # several dB of peak reduction
    objective = Objective(RATE, target, TRANSPARENT, lufs)
    kwargs = dict(release_ms=[1.0, 100.0], lookahead_ms=[1.0], tol_lu=0.01)
    chosen = run_baseline(x, RATE, target, measure=objective.measure, **kwargs)
    assert {"frame_drl_db", "band_drl_db", "objective_drl_db"} <= set(chosen)
    assert chosen["objective_drl_db"] == min(p["objective_drl_db"] for p in chosen["grid"])
    assert chosen["objective_drl_db"] != pytest.approx(chosen["drl_db"], abs=0.05)
    plain = run_baseline(x, RATE, target, **kwargs)  # without a measure: plain DRL decides, as before
    assert plain["drl_db"] == min(p["drl_db"] for p in plain["grid"])
    assert "frame_drl_db" not in plain


def test_measures_at_a_rate_below_40_khz():
    from tuning.objective import distortion_measures

    x = 0.1 * torch.randn(2, 32000)
    measures = distortion_measures(x, torch.tanh(3 * x) / 3, 32000)
    assert "band_drl_db/2000_16000" in measures
    assert all(torch.isfinite(v) for v in measures.values())


def test_every_run_measures_the_nmr_and_the_perceptual_loss_selects_by_it():
    x = loud_noise()
    y = torch.tanh(5 * x) / 5
    perceptual = LossWeights(drl=0.0, nmr=1.0)
    out = track_metrics(x, y, RATE, perceptual)
    assert out["nmr_db"] == pytest.approx(float(drl.nmr_db(x, y, RATE).mean()), abs=1e-5)
    assert out["objective_drl_db"] == out["nmr_db"]
    assert track_metrics(x, y, RATE)["nmr_db"] == out["nmr_db"]  # logged whatever the loss
    mixed = track_metrics(x, y, RATE, LossWeights(drl=1.0, nmr=3.0))
    assert mixed["objective_drl_db"] == pytest.approx(0.25 * mixed["drl_db"] + 0.75 * mixed["nmr_db"], abs=1e-5)


def test_objective_with_the_nmr_term_has_gradients():
    x = loud_noise(seconds=1.0).reshape(2, 2, -1).transpose(0, 1).contiguous()  # two crops (B, C, L)
    lufs = float(drl.integrated_loudness(x.transpose(0, 1).reshape(2, -1), RATE))
    objective = Objective(RATE, Target(round(lufs) + 6.0, -1.0), LossWeights(drl=0.0, nmr=1.0))
    drive = torch.tensor(4.0, requires_grad=True)
    terms = objective(x, torch.tanh(drive * x) / drive)
    assert "nmr_db" in terms and "frame_drl_db" not in terms
    doubled = Objective(RATE, objective.target, LossWeights(drl=0.0, nmr=2.0))(x, torch.tanh(drive * x) / drive)
    assert float((doubled["loss"] - terms["loss"]).detach()) == pytest.approx(float(terms["nmr_db"].detach()), rel=1e-5)
    terms["nmr_db"].backward()
    assert float(drive.grad) > 0  # more drive, more audible distortion
