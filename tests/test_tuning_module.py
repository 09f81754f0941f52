"""The LightningModule through train(cfg): fast_dev_run, a short real fit on target, a stuck start."""

import json

import pytest
import soundfile as sf
import torch
import yaml

import drl
from train import train

SHORT = [
    "data.track.duration_s=5.0",
    "data.crop_s=1.0",
    "data.crops_per_batch=2",
    "data.batches_per_epoch=4",
    "baseline.release_ms=[50.0]",
    "baseline.lookahead_ms=[5.0]",
]


def check_on_target(metrics, target=(-14.0, -1.0)):
    lufs, ceiling = target
    assert abs(metrics["output"]["integrated_lufs"] - lufs) <= 0.2
    assert metrics["output"]["true_peak_dbtp"] <= ceiling + 0.1
    assert metrics["on_target"] is True


def test_fast_dev_run(compose_config):
    cfg = compose_config([*SHORT, "+trainer.fast_dev_run=true", "~callbacks"])
    metrics = train(cfg)
    check_on_target(metrics)
    assert metrics["steps"] == 1


@pytest.mark.slow
def test_short_fit_meets_target_and_leaves_its_files(compose_config, tmp_path):
    cfg = compose_config([*SHORT, "trainer.max_steps=8", "callbacks.media.excerpt_s=2.0"])
    metrics = train(cfg)
    check_on_target(metrics)
    run = tmp_path / "run"
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["steps"] == 8 and saved["output"]["drl_db"] == pytest.approx(metrics["output"]["drl_db"])
    for side in ("input", "output"):
        assert {"integrated_lufs", "true_peak_dbtp", "lra", "drl_db", "band_drl_db"} <= set(saved[side])
    assert saved["baseline_drl_db"] == saved["baseline"]["drl_db"] < 0
    assert {"release_ms", "lookahead_ms", "gain_db"} <= set(saved["baseline"])
    assert saved["target"]["lufs"] == -14.0
    assert saved["selected"] in ("tuned", "start", "idle")
    # the idle candidate is the baseline inside the chain: by the measure that selects, the result is never
    # worse than it
    assert saved["output"]["objective_drl_db"] <= saved["baseline_objective_drl_db"] + 0.01
    if saved["selected"] == "idle":
        assert saved["output"]["drl_db"] == pytest.approx(saved["baseline_drl_db"], abs=0.01)
    assert saved["output"]["drl_db"] < -3 and saved["input"]["drl_db"] == pytest.approx(-120.0)

    params = yaml.safe_load((run / "tuned_params.yaml").read_text())
    assert params["processor"] == "chain"
    assert set(params["stages"]) == {"gain", "compressor", "saturator", "limiter"}
    assert 1.0 <= params["stages"]["compressor"]["ratio"] <= 20.0

    audio, rate = sf.read(str(run / "processed" / "demo.wav"), dtype="float32", always_2d=True)
    audio = torch.from_numpy(audio.T.copy())
    assert rate == 44100 and audio.shape == (2, 5 * 44100)
    assert abs(float(drl.integrated_loudness(audio, rate)) + 14.0) <= 0.2
    assert float(drl.true_peak(audio, rate).amax()) <= -0.9

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard" / "demo_-14LUFS"), size_guidance={"images": 0, "audio": 0})
    events.Reload()
    tags = events.Tags()
    assert {
        "train/loss",
        "train/drl_db",
        "train/nmr_db",
        "train/lufs",
        "train/true_peak_dbtp",
        "val/lufs",
        "val/drl_db",
        "val/nmr_db",
        "params/compressor.threshold_db",
        "hp/drl_db",
        "hp/nmr_db",
    } <= set(tags["scalars"])
    assert {"audio/input", "audio/output", "audio/residual"} <= set(tags["audio"])
    assert {"figures/compressor_curve", "figures/gain_reduction", "figures/residual_spectrum"} <= set(tags["images"])


@pytest.mark.slow
def test_threshold_above_every_peak_still_reaches_target(compose_config):
    # A quiet target under a low ceiling: the 5 s demo (peak -3 dBFS, about -25 LUFS) must lose ~5 dB of peak.
    # The compressor starts 10 dB above the peak at its input, where it does nothing and gets no gradient.
    from tuning.audio import demo_track
    from tuning.build import level_statistics

    stats = level_statistics(demo_track(duration_s=5.0).audio, 44100)
    gain_db = -34.0 - stats.lufs
    threshold = stats.peak_dbfs + gain_db + 10.0
    assert threshold <= 0.0
    cfg = compose_config(
        [
            *SHORT,
            "trainer.max_steps=4",
            "~callbacks",
            "target.lufs=-34",
            "target.ceiling_dbtp=-17",
            f"processor.stages.compressor.threshold_db={threshold}",
        ]
    )
    metrics = train(cfg)
    check_on_target(metrics, (-34.0, -17.0))


def test_settings_that_cannot_reach_the_target_are_no_candidate(monkeypatch):
    import tuning.module
    from processors import Chain, Gain, Limiter
    from tuning.module import Item, TuningModule
    from tuning.objective import LossWeights, Objective, Target

    audio = 0.1 * torch.randn(2, 44100)
    chain = Chain({"gain": Gain(44100), "limiter": Limiter(44100, release_ms=1000.0, slow_release_ms=5000.0)})
    objective = Objective(44100, Target(-14.0, -1.0), LossWeights())
    module = TuningModule(chain, [Item("noise", audio, objective)], 44100, torch.optim.Adam, 4410, "gain.gain_db")
    logged = []
    monkeypatch.setattr(module, "log", lambda name, value, **kwargs: logged.append((name, value)))

    def unreachable(*args, **kwargs):
        raise ValueError("target cannot be met")

    monkeypatch.setattr(tuning.module, "solve_target", unreachable)
    module.validation_step(None, 0)
    assert logged == [("val/on_target", 0.0)] and module.best[0].state is None
