"""`python train.py` end to end, and its bad-input errors: one line on stderr, exit code 2, before training."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import train as train_script

ROOT = Path(__file__).resolve().parents[1]
QUICK = [
    "experiment=quick",
    "data.track.duration_s=4.0",
    "data.crop_s=1.0",
    "data.crops_per_batch=2",
    "trainer.max_steps=3",
    "data.batches_per_epoch=3",
    "logger=csv",
    "~callbacks",
]


def run_main(monkeypatch, capsys, tmp_path, *overrides):
    """train.main() in this process with argv = overrides; returns (exit code, stdout, stderr)."""
    argv = ["train.py", f"hydra.run.dir={tmp_path / 'run'}", *overrides]
    monkeypatch.setattr(sys, "argv", argv)
    monkeypatch.chdir(ROOT)
    code = 0
    try:
        train_script.main()
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *words):
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    for word in words:
        assert word in lines[0], lines[0]


@pytest.fixture
def audio_file(tmp_path):
    def make(name, data, rate=44100, subtype="FLOAT"):
        path = tmp_path / name
        sf.write(str(path), data, rate, subtype=subtype)
        return path

    return make


def test_missing_file(monkeypatch, capsys, tmp_path):
    code, _, err = run_main(monkeypatch, capsys, tmp_path, "data=file", f"data.path={tmp_path / 'none.flac'}")
    assert_one_line_error(code, err, "not found", "none.flac")
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_path_not_given(monkeypatch, capsys, tmp_path):
    code, _, err = run_main(monkeypatch, capsys, tmp_path, "data=file")
    assert_one_line_error(code, err, "path")


def test_unreadable_empty_silent_nan(monkeypatch, capsys, tmp_path, audio_file):
    junk = tmp_path / "junk.wav"
    junk.write_text("not audio")
    cases = [
        (junk, "cannot read"),
        (audio_file("empty.wav", np.zeros((0, 2), np.float32)), "empty"),
        (audio_file("silent.wav", np.zeros((44100 * 4, 2), np.float32)), "silent"),
        (audio_file("nan.wav", np.where(np.arange(44100 * 4)[:, None] == 7, np.nan, 0.1).repeat(2, 1)), "non-finite"),
    ]
    for path, word in cases:
        code, _, err = run_main(monkeypatch, capsys, tmp_path, "data=file", f"data.path={path}")
        assert_one_line_error(code, err, word)


def test_track_shorter_than_crop(monkeypatch, capsys, tmp_path, audio_file):
    rng = np.random.default_rng(0)
    path = audio_file("short.wav", 0.1 * rng.standard_normal((44100, 2)).astype(np.float32))
    code, _, err = run_main(monkeypatch, capsys, tmp_path, "data=file", f"data.path={path}", "data.crop_s=3")
    assert_one_line_error(code, err, "shorter than the crop length", "at least 3 s")


def test_unknown_processor_and_target(monkeypatch, capsys, tmp_path):
    code, _, err = run_main(monkeypatch, capsys, tmp_path, "processor=reverb")
    assert_one_line_error(code, err, "processor/reverb")
    code, _, err = run_main(monkeypatch, capsys, tmp_path, "target=club")
    assert_one_line_error(code, err, "target/club")


def test_out_of_range_parameter(monkeypatch, capsys, tmp_path):
    code, _, err = run_main(monkeypatch, capsys, tmp_path, *QUICK, "processor.stages.compressor.ratio=50")
    assert_one_line_error(code, err, "ratio", "1..20")


def test_target_that_cannot_be_met(monkeypatch, capsys, tmp_path):
    code, _, err = run_main(monkeypatch, capsys, tmp_path, "target.lufs=-2")
    assert_one_line_error(code, err, "cannot be met")
    # allowed by the ceiling rule, but beyond what the limiter can reach on this track
    code, _, err = run_main(
        monkeypatch,
        capsys,
        tmp_path,
        *QUICK,
        "target.lufs=-4.5",
        "target.ceiling_dbtp=-1",
        "baseline.release_ms=[1000.0]",
        "baseline.lookahead_ms=[20.0]",
    )
    assert_one_line_error(code, err, "cannot be met")


def test_existing_results_are_never_overwritten(monkeypatch, capsys, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.json").write_text("{}")
    code, _, err = run_main(monkeypatch, capsys, tmp_path, *QUICK)
    assert_one_line_error(code, err, "refusing to overwrite")
    assert (tmp_path / "run" / "metrics.json").read_text() == "{}"


@pytest.mark.slow
def test_train_py_subprocess(tmp_path):
    run_dir = tmp_path / "cli run"
    result = subprocess.run(
        [sys.executable, "train.py", *QUICK, f"hydra.run.dir={run_dir}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "loudness (LUFS)" in result.stdout and "gain + limiter: release" in result.stdout
    assert f"output folder: {run_dir}" in result.stdout
    for name in ("metrics.json", "tuned_params.yaml", "processed/demo.wav"):
        assert (run_dir / name).is_file()
    again = subprocess.run(
        [sys.executable, "train.py", "processor=nope"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert again.returncode == 2 and len(again.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "override, words",
    [
        ("solve.tol_lu=nan", ("solve.tol_lu",)),
        ("solve.tol_lu=-1", ("solve.tol_lu",)),
        ("trainer.max_steps=0", ("trainer.max_steps", ">= 1")),
    ],
)
def test_bad_solver_and_step_settings(monkeypatch, capsys, tmp_path, override, words):
    code, _, err = run_main(monkeypatch, capsys, tmp_path, *QUICK, override)
    assert_one_line_error(code, err, *words)


def test_quick_preset_takes_the_start_of_a_file(tmp_path):
    from tuning.audio import load_track

    rng = np.random.default_rng(0)
    path = tmp_path / "song.wav"
    sf.write(str(path), (0.1 * rng.standard_normal((3 * 44100, 2))).astype(np.float32), 44100, subtype="FLOAT")
    assert load_track(path).audio.shape == (2, 3 * 44100)
    assert load_track(path, duration_s=1.5).audio.shape == (2, 66150)
    with pytest.raises(ValueError, match="duration_s"):
        load_track(path, duration_s=0)
