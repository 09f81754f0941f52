"""`python train.py` end to end, and its bad-input errors: one line on stderr, exit code 2, before training."""

import json
import os
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
    assert_one_line_error(code, err, "processor=reverb is not an option", "chain, compressor, limiter, saturator")
    code, _, err = run_main(monkeypatch, capsys, tmp_path, "target=club")
    assert_one_line_error(code, err, "target=club is not an option")
    code, _, err = run_main(monkeypatch, capsys, tmp_path, "experiment=quik")
    assert_one_line_error(code, err, "did you mean 'experiment=quick'?")


@pytest.mark.parametrize(
    "override, words",
    [
        ("target.luf=-9", ("target.luf is not an option", "did you mean 'target.lufs'?")),
        ("sed=1", ("sed is not an option", "did you mean 'seed'?")),
        ("proccessor=chain", ("did you mean 'processor'?",)),
        ("trainer.max_step=3", ("did you mean 'trainer.max_steps'?",)),
        ("hydra.run.dri=x", ("did you mean 'hydra.run.dir'?",)),
        (
            "target.zzz=1",
            ("target.zzz is not an option", "target has: name, preset_lufs, preset_ceiling_dbtp, lufs, ceiling_dbtp"),
        ),
        ("target.lufs=[1", ("cannot read 'target.lufs=[1'",)),
    ],
)
def test_misspelled_options_in_the_users_words(monkeypatch, capsys, tmp_path, override, words):
    code, _, err = run_main(monkeypatch, capsys, tmp_path, override)
    assert_one_line_error(code, err, *words)
    assert "struct" not in err and "full_key" not in err
    assert not (tmp_path / "run").exists()


def test_data_path_alone_means_a_file_and_a_missing_path_says_which_option(monkeypatch, capsys, tmp_path):
    code, _, err = run_main(monkeypatch, capsys, tmp_path, f"data.path={tmp_path / 'song.flac'}")
    assert_one_line_error(code, err, f"audio file not found: {tmp_path / 'song.flac'}")
    code, _, err = run_main(monkeypatch, capsys, tmp_path, "data=file")
    assert_one_line_error(code, err, "data=file needs the audio file: data.path=")
    code, _, err = run_main(monkeypatch, capsys, tmp_path, "data=folder")
    assert_one_line_error(code, err, "data.dir=")
    code, _, err = run_main(monkeypatch, capsys, tmp_path, "data=demo", "data.path=song.flac")
    assert_one_line_error(code, err, "data.path goes with data=file, not data=demo")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "args, words",
    [
        (["data=file", "data.path=nope.wav"], ("audio file not found:", "nope.wav")),
        (["data.path=junk.wav"], ("cannot read audio file",)),
        (["target.luf=-9"], ("did you mean 'target.lufs'?",)),
        (["processor=reverb"], ("processor=reverb",)),
        (["data=file"], ("data.path=",)),
    ],
)
def test_bad_input_answers_before_torch_and_lightning_are_imported(tmp_path, args, words):
    (tmp_path / "junk.wav").write_text("not audio")
    probe = (
        "import runpy, sys\n"
        f"sys.argv = ['train.py', *{args!r}]\n"
        "try:\n"
        f"    runpy.run_path({str(ROOT / 'train.py')!r}, run_name='__main__')\n"
        "finally:\n"
        "    print(sorted(m for m in ('torch', 'lightning', 'numba') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert_one_line_error(result.returncode, result.stderr, *words)
    assert result.stdout.strip() == "[]"
    assert not (tmp_path / "outputs").exists()  # no run folder left behind


def test_relative_paths_are_taken_from_the_callers_folder(tmp_path):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from train_cli import prepare_arguments

    base = tmp_path / "my music's folder"
    args = ["data.path=song (1).flac", "-m", "hydra.run.dir=runs/a b", "ckpt_path='/abs/it\\'s'", "target.lufs=-9"]
    out = prepare_arguments(args, base)
    assert out[0] == "data=file" and out[2] == "-m" and out[-1] == "target.lufs=-9"
    parse = OverridesParser.create().parse_override
    assert parse(out[1]).value() == str(base / "song (1).flac")
    assert parse(out[3]).value() == str(base / "runs" / "a b")
    assert parse(out[4]).value() == "/abs/it's"
    folder = prepare_arguments(["data.dir=album"], base)
    assert folder[0] == "data=folder" and parse(folder[1]).value() == str(base / "album")
    sweep = prepare_arguments(["-m", "data.path=a.wav,'b c.wav'"], base)
    assert [v.text for v in parse(sweep[2]).value().list] == [str(base / "a.wav"), str(base / "b c.wav")]
    with pytest.raises(ValueError, match="not both"):
        prepare_arguments(["data.path=a.wav", "data.dir=b"], base)


def test_a_failed_run_leaves_no_run_folder(monkeypatch, capsys, tmp_path):
    from train_cli import discard_run_folder

    # fails after the heavy imports, once Hydra has made the run folder
    code, _, err = run_main(monkeypatch, capsys, tmp_path, *QUICK, "target.lufs=-2")
    assert_one_line_error(code, err, "cannot be met")
    assert not (tmp_path / "run").exists()
    # a folder with anything but Hydra's files is kept; empty parents inside `within` go with the run folder
    run = tmp_path / "outputs" / "day" / "time"
    (run / ".hydra").mkdir(parents=True)
    (run / "train.log").write_text("")
    (run / "checkpoints").mkdir()
    assert not discard_run_folder(run, within=tmp_path) and run.is_dir()
    (run / "checkpoints").rmdir()
    assert discard_run_folder(run, within=tmp_path)
    assert not (tmp_path / "outputs").exists() and tmp_path.is_dir()


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
    # Lightning's progress bar, tips and deprecation warnings stay out of the way (verbose=true brings them)
    for noise in ("litlogger", "LeafSpec", "Epoch 0", "GPU available"):
        assert noise not in result.stdout + result.stderr, noise
    assert result.stderr == ""
    record = (run_dir / "train.log").read_text()  # the run's record: what it printed, with times
    assert "loudness (LUFS)" in record and f"output folder: {run_dir}" in record
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


@pytest.mark.slow
def test_quick_run_on_a_file_tunes_its_loudest_part_and_says_which(tmp_path):
    from tuning.audio import demo_track

    music = demo_track(duration_s=16.0).audio.numpy()
    rate = 44100
    loud = (np.arange(music.shape[-1]) >= 7 * rate) & (np.arange(music.shape[-1]) < 11 * rate)
    audio = music * np.where(loud, 1.0, 0.05)  # quiet music, at full level from 7 to 11 s: needs limiting there
    sf.write(str(tmp_path / "song.wav"), audio.T.astype(np.float32), rate, subtype="FLOAT")
    run_dir = tmp_path / "run"
    quick = [*QUICK[:1], *QUICK[2:]]  # without the 4 s: the preset's own length
    result = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *quick, "data.path=song.wav", "hydra.run.dir=run"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    part = metrics["input_excerpt"]
    start, end = part["start_s"], part["end_s"]
    assert 3.0 <= start <= 7.0 and end == pytest.approx(start + 8.0)  # all of the loud 7-11 s
    assert part["file_s"] == 16.0 and part["choice"] == "loudest"
    assert (run_dir / "processed" / f"song_excerpt_{start:.1f}-{end:.1f}s.wav").is_file()
    assert f"the loudest 8.0 s ({start:.1f}-{end:.1f} s of 16.0 s; data.excerpt)" in result.stdout
    assert metrics["on_target"] and metrics["steps"] == 3  # trained: a gain alone could not reach the target
