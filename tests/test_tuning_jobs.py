"""Jobs beyond one track: a folder per track (one batch), album mode on two DDP processes, a loudness sweep
with its Pareto report, and kill-and-resume equivalence in every mode."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

import train as train_script
from tuning.audio import demo_track

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "experiment=quick",
    "data.crop_s=1.0",
    "data.crops_per_batch=2",
    "data.batches_per_epoch=2",
    "logger=csv",
    "~callbacks.media",
    "solve.gain_alone=false",  # the loudest seconds of the demo need little gain: train all the same
]


@pytest.fixture
def folder(tmp_path):
    """Three short synthetic tracks of different lengths and levels (they need different gains)."""
    path = tmp_path / "tracks"
    path.mkdir()
    for index, (seconds, seed, level) in enumerate(((3.0, 1, 1.0), (4.0, 2, 0.5), (2.5, 3, 0.7))):
        audio = demo_track(44100, seconds, seed=seed).audio * level
        sf.write(str(path / f"song{index}.wav"), audio.T.numpy(), 44100, subtype="FLOAT")
    return path


def read_summary(path: Path) -> dict[str, dict]:
    with path.open() as handle:
        return {row["name"]: row for row in csv.DictReader(handle)}


@pytest.mark.slow
def test_folder_per_track_each_file_meets_its_target(compose_config, tmp_path, folder):
    cfg = compose_config(
        [
            "data=folder",
            f"data.dir={folder}",
            *TINY,
            "trainer.max_steps=2",
            "callbacks.checkpoint.every_n_train_steps=1",
        ]
    )
    results = train_script.train(cfg)
    run = tmp_path / "run"
    rows = read_summary(run / "summary.csv")
    assert set(rows) == set(results) == {"song0", "song1", "song2"}
    gains = []
    for name, metrics in results.items():
        assert metrics["on_target"] and metrics["mode"] == "per_track"
        assert abs(metrics["output"]["integrated_lufs"] - -14.0) < 0.01
        assert metrics["output"]["true_peak_dbtp"] <= -1.0 + 0.05
        # never worse than the baseline by the measure that selects (the idle candidate is the baseline)
        assert metrics["output"]["objective_drl_db"] <= metrics["baseline_objective_drl_db"] + 0.1
        on_disk = json.loads((run / name / "metrics.json").read_text())
        assert on_disk["output"]["integrated_lufs"] == pytest.approx(metrics["output"]["integrated_lufs"])
        # the same keys as a single run's metrics.json (one function writes both)
        assert on_disk["objective_gain_over_baseline_db"] is not None and on_disk["mode"] == "per_track"
        written, rate = sf.read(str(run / name / "processed" / f"{name}.wav"), always_2d=True)
        assert rate == 44100 and written.shape[0] == sf.info(str(folder / f"{name}.wav")).frames
        settings = yaml.safe_load((run / name / "tuned_params.yaml").read_text())["stages"]
        gains.append(settings["gain"]["gain_db"])
        assert float(rows[name]["output_lufs"]) == pytest.approx(-14.0, abs=0.01)
        assert float(rows[name]["nmr_db"]) == pytest.approx(metrics["output"]["nmr_db"], abs=1e-3)
        assert float(rows[name]["baseline_nmr_db"]) == pytest.approx(metrics["baseline"]["nmr_db"], abs=1e-3)
        assert float(rows[name]["gain.gain_db"]) == pytest.approx(settings["gain"]["gain_db"], abs=1e-3)
        assert (run / name / "report.html").is_file()
    assert max(gains) - min(gains) > 2.0  # per-item settings: the quieter files got more gain
    assert (run / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.slow
def test_per_track_logs_hparams_params_and_media_per_file(compose_config, tmp_path, folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = compose_config(
        [
            "data=folder",
            f"data.dir={folder}",
            *TINY,
            "trainer.max_steps=2",
            "logger=tensorboard",
            "+callbacks.media={_target_: tuning.callbacks.MediaLogger, excerpt_s: 1.0}",
        ]
    )
    train_script.train(cfg)
    logs = tmp_path / "run" / "tensorboard" / "tracks_-14LUFS"  # named after the folder and the target
    events = EventAccumulator(str(logs), size_guidance={"images": 0, "audio": 0})
    events.Reload()
    tags = events.Tags()
    assert {"hp/drl_db", "hp/nmr_db", "train/loss", "val/nmr_db", "val/on_target"} <= set(tags["scalars"])
    for name in ("song0", "song1", "song2"):
        assert f"params/compressor.threshold_db/{name}" in tags["scalars"]
        assert f"{name}/audio/output" in tags["audio"]
        assert f"{name}/figures/gain_reduction" in tags["images"]
    assert (logs / "hparams.yaml").is_file()


@pytest.mark.slow
def test_album_mode_on_two_ddp_cpu_processes(tmp_path, folder):
    run = tmp_path / "album"
    result = subprocess.run(
        [
            sys.executable,
            "train.py",
            "data=folder",
            f"data.dir={folder}",
            "data.mode=shared",
            "trainer=ddp_cpu",
            *TINY,
            "trainer.max_steps=2",
            f"hydra.run.dir={run}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (run / "train_ddp_process_1.log").exists()  # a second process ran
    rows = read_summary(run / "summary.csv")
    assert set(rows) == {"song0", "song1", "song2", "album"}
    assert float(rows["album"]["output_lufs"]) == pytest.approx(-14.0, abs=0.01)
    assert rows["album"]["on_target"] == "True"
    settings = [yaml.safe_load((run / f"song{i}" / "tuned_params.yaml").read_text()) for i in range(3)]
    assert all((run / f"song{i}" / "report.html").is_file() for i in range(3))
    assert settings[0]["stages"] == settings[1]["stages"] == settings[2]["stages"]  # one setting for the album
    # the album keeps its relative dynamics: the files' loudness differences survive (within the limiting)
    difference_in = float(rows["song0"]["input_lufs"]) - float(rows["song1"]["input_lufs"])
    difference_out = float(rows["song0"]["output_lufs"]) - float(rows["song1"]["output_lufs"])
    assert difference_in > 4.0 and abs(difference_out - difference_in) < 1.5
    assert len(list(run.glob("*/metrics.json"))) == 3  # written once, by rank 0


@pytest.mark.slow
def test_sweep_of_two_targets_and_its_report(tmp_path):
    sweep = tmp_path / "sweep"
    result = subprocess.run(
        [
            sys.executable,
            "train.py",
            "-m",
            "target.lufs=-16,-12",
            "processor=limiter",
            *TINY,
            "data.track.duration_s=3.0",
            "trainer.max_steps=2",
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = subprocess.run(
        [sys.executable, "-m", "tuning.report", str(sweep)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert report.returncode == 0, report.stderr
    assert (sweep / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with (sweep / "pareto.csv").open() as handle:
        rows = sorted(csv.DictReader(handle), key=lambda row: float(row["target_lufs"]))
    assert [float(r["target_lufs"]) for r in rows] == [-16.0, -12.0]
    for row in rows:
        assert float(row["tuned_lufs"]) == pytest.approx(float(row["target_lufs"]), abs=0.01)
        assert -120 < float(row["tuned_drl_db"]) < 0 and -120 < float(row["baseline_drl_db"]) < 0
    # louder costs distortion
    assert float(rows[1]["baseline_drl_db"]) > float(rows[0]["baseline_drl_db"])


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["single", "per_track", "shared", "population"])
def test_kill_and_resume_ends_like_an_uninterrupted_run(compose_config, tmp_path, folder, mode):
    compose_config()  # clears Hydra's global state afterwards
    data = {
        "single": ["data.track.duration_s=3.0"],
        "per_track": ["data=folder", f"data.dir={folder}"],
        "shared": ["data=folder", f"data.dir={folder}", "data.mode=shared"],
        # the checkpoint at step 4 comes after the exploit step of the validation at step 3
        "population": ["data.track.duration_s=3.0", "search=population", "search.size=3"],
    }[mode]
    base = [*TINY, *data, "data.batches_per_epoch=3", "callbacks.checkpoint.every_n_train_steps=2"]

    def run(name, *overrides):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
            cfg = compose("train", overrides=[*base, *overrides], return_hydra_config=True)
        with open_dict(cfg):
            cfg.hydra.runtime.output_dir = str(tmp_path / name)
            cfg.hydra.job.num = 0
        HydraConfig.instance().set_config(cfg)
        result = train_script.train(cfg)
        return ({"": result} if mode in ("single", "population") else result), tmp_path / name

    whole, whole_dir = run("whole", "trainer.max_steps=6")
    # "killed" after 4 steps (mid-epoch, after a validation): its last checkpoint is at step 4
    _, killed_dir = run("killed", "trainer.max_steps=4")
    checkpoint = killed_dir / "checkpoints" / "last.ckpt"
    resumed, resumed_dir = run("resumed", "trainer.max_steps=6", f"ckpt_path={checkpoint}")
    with (resumed_dir / "csv" / "metrics.csv").open() as handle:
        trained = [int(row["step"]) for row in csv.DictReader(handle) if row.get("train/loss")]
    assert trained and min(trained) >= 4  # it did continue from the checkpoint: steps 5 and 6 only
    assert set(resumed) == set(whole)
    for name in whole:
        metrics, again = whole[name], resumed[name]
        metrics, again = metrics.get("album", metrics), again.get("album", again)
        assert again["steps"] == metrics["steps"] == 6
        assert again["best_step"] == metrics["best_step"] and again["selected"] == metrics["selected"]
        assert again["output"]["drl_db"] == pytest.approx(metrics["output"]["drl_db"], abs=1e-4)
        if mode == "population":
            assert again["population"]["winner"] == metrics["population"]["winner"]
            assert again["population"]["best_objective_drl_db"] == pytest.approx(
                metrics["population"]["best_objective_drl_db"], abs=1e-4
            )
        params = Path(name) / "tuned_params.yaml" if name else Path("tuned_params.yaml")
        a = yaml.safe_load((whole_dir / params).read_text())["stages"]
        b = yaml.safe_load((resumed_dir / params).read_text())["stages"]
        for stage, values in a.items():
            for key, value in values.items():
                if isinstance(value, float):
                    assert b[stage][key] == pytest.approx(value, rel=1e-6, abs=1e-6), f"{name} {stage}.{key}"
                else:  # a stage's class and options
                    assert b[stage][key] == value, f"{name} {stage}.{key}"


def test_resume_needs_a_checkpoint(compose_config, tmp_path):
    cfg = compose_config([*TINY, "resume=true"])
    with pytest.raises(ValueError, match="nothing to resume"):
        train_script.train(cfg)
    cfg = compose_config([*TINY, f"ckpt_path={tmp_path / 'none.ckpt'}"])
    with pytest.raises(ValueError, match="checkpoint not found"):
        train_script.train(cfg)


def test_folder_mode_must_be_known(compose_config, folder):
    cfg = compose_config(["data=folder", f"data.dir={folder}", "data.mode=album", *TINY])
    with pytest.raises(ValueError, match="data.mode"):
        train_script.train(cfg)


@pytest.mark.slow
def test_a_track_with_dc_and_infrasound_is_conditioned_and_measured_against_that(compose_config, tmp_path, capsys):
    import torch

    import drl

    track = demo_track(44100, 6.0, seed=4).audio
    t = torch.arange(track.shape[-1]) / 44100
    drifting = 0.5 * track + 0.25 + 0.1 * torch.sin(2 * 3.141592653589793 * 4.0 * t)
    path = tmp_path / "drift.wav"
    sf.write(str(path), drifting.T.numpy(), 44100, subtype="FLOAT")
    cfg = compose_config(["data=file", f"data.path={path}", *TINY, "trainer.max_steps=2"])
    metrics = train_script.train(cfg)
    assert "warning: 'drift' has" in capsys.readouterr().err
    conditioning = metrics["conditioning"]
    assert conditioning["subsonic"] and conditioning["infrasound_share"] > 0.3
    assert conditioning["dc_offset"] == pytest.approx(0.25, abs=0.01)
    assert metrics["on_target"]
    output, _ = sf.read(str(tmp_path / "run" / "processed" / "drift.wav"), dtype="float32", always_2d=True)
    output = torch.from_numpy(output.T.copy())
    assert float(drl.infrasound_share(output, 44100)) < 0.01
    # every measure compares the output with the conditioned input: the removed drift is not distortion
    against_raw = float(drl.drl_db(drifting, output).mean())
    assert metrics["output"]["drl_db"] < against_raw - 5.0
    params = yaml.safe_load((tmp_path / "run" / "tuned_params.yaml").read_text())
    assert params["subsonic"] == {"mode": "on", "cutoff_hz": 20.0}


def test_a_target_met_by_a_gain_alone_is_answered_without_training(compose_config, tmp_path, capsys):
    import torch

    import drl

    t = torch.arange(5 * 44100) / 44100
    quiet = 0.03 * torch.stack([torch.sin(2 * torch.pi * 440 * t), torch.sin(2 * torch.pi * 660 * t)])
    path = tmp_path / "quiet.wav"
    sf.write(str(path), quiet.T.numpy(), 44100, subtype="FLOAT")
    cfg = compose_config(["data=file", f"data.path={path}", "logger=csv", "~callbacks.media"])
    metrics = train_script.train(cfg)
    assert metrics["selected"] == "gain" and metrics["steps"] == 0 and metrics["on_target"]
    gain_db = -14.0 - float(drl.integrated_loudness(quiet, 44100))
    assert "nothing was trained" in metrics["reason"] and f"{gain_db:+.2f} dB" in metrics["reason"]
    assert metrics["output"]["integrated_lufs"] == pytest.approx(-14.0, abs=1e-3)
    assert metrics["output"]["drl_db"] == pytest.approx(-120.0, abs=0.1)
    run = tmp_path / "run"
    output, _ = sf.read(str(run / "processed" / "quiet.wav"), dtype="float32", always_2d=True)
    assert torch.allclose(torch.from_numpy(output.T.copy()), quiet * 10 ** (gain_db / 20), atol=1e-6)
    # the output's levels follow from the input's reading: they agree with the written file measured afresh
    written = drl.loudness_summary(torch.from_numpy(output.T.copy()).double(), 44100)
    for key in ("integrated_lufs", "true_peak_dbtp", "sample_peak_dbfs", "lra"):
        assert metrics["output"][key] == pytest.approx(written[key], abs=1e-4)
    file = json.loads((run / "metrics.json").read_text())["file"]
    assert file["true_peak_dbtp"] == pytest.approx(written["true_peak_dbtp"], abs=1e-4)
    assert metrics["output"]["nmr_db"] == metrics["input"]["nmr_db"] == pytest.approx(-120.0, abs=0.1)
    params = yaml.safe_load((run / "tuned_params.yaml").read_text())["stages"]
    assert params["gain"]["gain_db"] == pytest.approx(gain_db, abs=1e-4)
    assert params["compressor"]["ratio"] == 1.0 and params["saturator"]["mix"] == 0.0
    assert not (run / "checkpoints").exists()
    assert "nothing was trained" in capsys.readouterr().out
    page = (run / "report.html").read_text()  # the idle stages' figures left out, the clips and spectra kept
    assert "No run: a gain alone met the target." in page and "gain reduction over time" not in page
    assert "power spectra of input, output and residual" in page and page.count("<audio") == 3


def test_a_gain_alone_never_imports_lightning(tmp_path):
    t = np.arange(3 * 44100) / 44100
    path = tmp_path / "quiet.wav"
    sf.write(str(path), 0.03 * np.sin(2 * np.pi * 440 * t), 44100, subtype="FLOAT")
    probe = (
        "import runpy, sys\n"
        f"sys.argv = ['train.py', 'data.path={path}', 'hydra.run.dir={tmp_path / 'run'}']\n"
        "try:\n"
        f"    runpy.run_path({str(ROOT / 'train.py')!r}, run_name='__main__')\n"
        "finally:\n"
        "    print('lightning' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "nothing to train" in result.stdout and result.stdout.strip().endswith("False")
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["selected"] == "gain"


@pytest.mark.slow
def test_gain_alone_can_be_turned_off(compose_config, tmp_path):
    import torch

    t = torch.arange(3 * 44100) / 44100
    path = tmp_path / "quiet.wav"
    sf.write(str(path), (0.03 * torch.sin(2 * torch.pi * 440 * t)).numpy(), 44100, subtype="FLOAT")
    cfg = compose_config(["data=file", f"data.path={path}", *TINY, "solve.gain_alone=false"])
    metrics = train_script.train(cfg)
    assert metrics["selected"] != "gain" and metrics["steps"] > 0 and metrics["on_target"]
