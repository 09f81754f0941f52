"""Every option of every config group composes and instantiates."""

from pathlib import Path

import pytest
import soundfile as sf
import torch
from hydra.utils import instantiate

from processors import Chain
from tuning.audio import Track, demo_track
from tuning.build import ProcessorSpec, suggest_settings
from tuning.objective import LossWeights, Target

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def options(group):
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


def test_every_group_has_options():
    for group in ("processor", "target", "loss", "data", "optim", "trainer", "logger", "experiment"):
        assert options(group), group
    assert {"chain", "limiter", "compressor", "saturator"} <= set(options("processor"))
    assert {"streaming", "apple_music", "ebu_r128", "atsc_a85"} <= set(options("target"))
    assert {"cpu", "gpu", "ddp", "ddp_cpu"} <= set(options("trainer"))


def test_defaults(compose_config):
    cfg = compose_config()
    assert cfg.processor.name == "chain"
    assert cfg.target.lufs == -14.0 and cfg.target.ceiling_dbtp == -1.0
    assert cfg.data.track._target_ == "tuning.audio.demo_track"
    assert cfg.trainer.accelerator == "cpu" and cfg.trainer.devices == 1


@pytest.fixture(scope="module")
def short_track():
    return demo_track(duration_s=4.0, seed=1)


@pytest.mark.parametrize("name", options("processor"))
def test_processor_options_build(compose_config, short_track, name):
    cfg = compose_config([f"processor={name}"])
    spec = instantiate(cfg.processor)
    assert isinstance(spec, ProcessorSpec) and spec.name == name
    target = instantiate(cfg.target)
    suggestions = suggest_settings(
        short_track.audio, short_track.sample_rate, target, {"release_ms": 50.0, "lookahead_ms": 5.0}
    )
    chain = spec.build(short_track.sample_rate, suggestions)
    values = chain.values()
    assert spec.level_param in values
    assert values["limiter.ceiling_db"] == pytest.approx(target.ceiling_dbtp)
    for frozen in spec.frozen:
        stage, _, param = frozen.partition(".")
        assert not chain[stage].raw[param].requires_grad
    y = chain(short_track.audio)
    assert y.shape == short_track.audio.shape and torch.isfinite(y).all()
    if spec.idle:  # the idle values make every stage but gain + limiter transparent
        chain.set_values(**spec.idle)
        reference = Chain({"gain": chain["gain"], "limiter": chain["limiter"]})
        assert torch.allclose(chain(short_track.audio), reference(short_track.audio), atol=1e-5)


@pytest.mark.parametrize("name", options("target"))
def test_target_options(compose_config, name):
    target = instantiate(compose_config([f"target={name}"]).target)
    assert isinstance(target, Target) and target.name == name
    assert target.lufs < target.ceiling_dbtp


def test_target_override(compose_config):
    assert instantiate(compose_config(["target.lufs=-9"]).target).lufs == -9.0


@pytest.mark.parametrize("name", options("loss"))
def test_loss_options(compose_config, name):
    assert isinstance(instantiate(compose_config([f"loss={name}"]).loss), LossWeights)


def test_data_options(compose_config, tmp_path):
    demo = instantiate(compose_config(["data=demo", "data.track.duration_s=2"]).data.track)
    assert isinstance(demo, Track) and demo.audio.shape == (2, 88200)
    path = tmp_path / "song.wav"
    sf.write(str(path), demo.audio.numpy().T, demo.sample_rate)
    loaded = instantiate(compose_config(["data=file", f"data.path={path}"]).data.track)
    assert loaded.name == "song" and loaded.audio.shape == demo.audio.shape
    part = instantiate(compose_config(["data=file", f"data.path={path}", "data.track.duration_s=1"]).data.track)
    assert part.excerpt["choice"] == "loudest" and part.audio.shape == (2, 44100)
    start = compose_config(["data=file", f"data.path={path}", "data.track.duration_s=1", "data.excerpt=start"])
    assert instantiate(start.data.track).name == "song_excerpt_0.0-1.0s"
    assert set(options("data")) >= {"demo", "file", "folder"}
    cfg = compose_config(["data=folder", f"data.dir={tmp_path}"])
    assert cfg.data.mode == "per_track"
    from tuning.job import load_tracks

    mode, tracks = load_tracks(cfg)
    assert mode == "per_track" and [t.name for t in tracks] == ["song"]


def test_default_loss_is_the_perceptual_measure_and_plain_is_the_first_releases(compose_config):
    default = instantiate(compose_config().loss)
    assert default == instantiate(compose_config(["loss=perceptual"]).loss)
    assert default.nmr == 1.0 and default.drl == 0.0 and default.frame == 0.0 and not default.band_weights()
    assert instantiate(compose_config(["loss=plain"]).loss) == LossWeights(drl=1.0, loudness=2.0, true_peak=10.0)


@pytest.mark.parametrize("name", options("optim"))
def test_optim_options(compose_config, name):
    factory = instantiate(compose_config([f"optim={name}"]).optim)
    assert isinstance(factory([torch.nn.Parameter(torch.zeros(1))]), torch.optim.Optimizer)


@pytest.mark.parametrize("name", options("trainer"))
def test_trainer_options(compose_config, name):
    import lightning as L

    cfg = compose_config([f"trainer={name}"])
    if cfg.trainer.accelerator == "gpu" and not torch.cuda.is_available():
        # compose as written, then build it on the CPU (the strategy and the rest stay as configured)
        assert name in ("gpu", "ddp")
        cfg.trainer.accelerator = "cpu"
        cfg.trainer.devices = 2 if name == "ddp" else 1
    trainer = instantiate(cfg.trainer, logger=False)
    assert isinstance(trainer, L.Trainer)


@pytest.mark.parametrize("name", options("logger"))
def test_logger_options(compose_config, name):
    from lightning.pytorch.loggers import Logger

    assert isinstance(instantiate(compose_config([f"logger={name}"]).logger), Logger)


def test_logger_can_be_removed(compose_config):
    assert not compose_config(["~logger"]).get("logger")


@pytest.mark.parametrize("name", options("experiment"))
def test_experiment_options(compose_config, name):
    cfg = compose_config([f"experiment={name}"])
    default = compose_config()
    target, spec = instantiate(cfg.target), instantiate(cfg.processor)
    assert instantiate(cfg.loss) == instantiate(default.loss)  # no preset changes the measure
    if name == "quick":  # 8 s of the demo, 20 steps, a one-point baseline
        assert cfg.data.track.duration_s == 8.0 and cfg.data.crop_s == 2.0 and cfg.trainer.max_steps == 20
        assert list(cfg.baseline.release_ms) == [50.0] and list(cfg.baseline.lookahead_ms) == [5.0]
        assert list(cfg.baseline.slow_release_ms) == [None]
    elif name == "broadcast":  # EBU R128 with the gain + limiter processor
        assert (target.lufs, target.ceiling_dbtp) == (-23.0, -1.0) and spec.name == "limiter"
    elif name == "loud_master":  # -9 LUFS, longer training, the default chain
        assert target.lufs == -9.0 and cfg.trainer.max_steps == 160 and spec.name == "chain"
    else:
        raise AssertionError(f"a new preset {name!r}: say here what it sets")


def test_callbacks_instantiate(compose_config):
    from tuning.callbacks import MediaLogger

    cfg = compose_config()
    assert isinstance(instantiate(cfg.callbacks.media), MediaLogger)
    checkpoint = instantiate(cfg.callbacks.checkpoint)
    from lightning.pytorch.callbacks import ModelCheckpoint

    assert isinstance(checkpoint, ModelCheckpoint) and checkpoint.save_last


def test_quiet_by_default_and_verbose_brings_lightning_back(compose_config):
    from tuning.job import make_trainer

    cfg = compose_config()
    assert cfg.verbose is False
    assert make_trainer(cfg, 0.001).progress_bar_callback is None
    assert make_trainer(compose_config(["verbose=true"]), 0.001).progress_bar_callback is not None
    assert make_trainer(compose_config(["+trainer.enable_progress_bar=true"]), 0.001).progress_bar_callback is not None


def test_the_run_log_is_opened_at_its_first_line(compose_config):
    logging = compose_config().hydra.job_logging
    assert logging.handlers.file.delay is True and logging.handlers.file.filename.endswith(".log")
    assert logging.root.handlers == ["file"] and logging.loggers.tuning.level == "INFO"
