"""``python -m drl REFERENCE PROCESSED --loudness`` (subprocess)."""

import json

import numpy as np
import pytest
import soundfile as sf
from drl_cli import run_drl as run

SR = 48000


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli_loudness")
    t = np.arange(4 * SR) / SR
    sine = 10 ** (-23 / 20) * np.sin(2 * np.pi * 1000 * t)
    paths = {"tone": folder / "tone.wav", "quiet": folder / "quiet.wav", "short": folder / "short.wav"}
    sf.write(paths["tone"], np.stack([sine, sine], axis=1).astype(np.float32), SR, subtype="FLOAT")
    quiet = 10 ** (-90 / 20) * np.random.default_rng(0).uniform(-1, 1, (4 * SR, 2))  # below the -70 LUFS gate
    sf.write(paths["quiet"], quiet.astype(np.float32), SR, subtype="FLOAT")
    sf.write(paths["short"], np.stack([sine, sine], axis=1)[: SR // 5].astype(np.float32), SR, subtype="FLOAT")
    return paths


def test_json_loudness_of_each_file(files):
    result = run(files["tone"], files["quiet"], "--loudness", "--json", "--no-bands")
    assert result.returncode == 0, result.stderr
    loudness = json.loads(result.stdout)["loudness"]
    tone = loudness["reference"]
    assert tone["integrated_lufs"] == pytest.approx(-22.9933, abs=1e-3)
    assert tone["lra"] == pytest.approx(0.0, abs=0.01)
    assert tone["sample_peak_dbfs"] == pytest.approx(-23.0, abs=1e-3)
    assert tone["true_peak_dbtp"] == pytest.approx(-23.0, abs=0.05)
    quiet = loudness["processed"]
    assert quiet["integrated_lufs"] is None and quiet["lra"] == 0.0  # no block passes the gates
    assert -91.0 < quiet["sample_peak_dbfs"] <= -90.0 < quiet["true_peak_dbtp"] < -80.0  # white noise overshoots


def test_text_output_and_absent_without_the_flag(files):
    with_flag = run(files["tone"], files["tone"], "--loudness", "--no-bands")
    assert with_flag.returncode == 0, with_flag.stderr
    assert "loudness" in with_flag.stdout and "integrated_lufs" in with_flag.stdout
    without = run(files["tone"], files["tone"], "--no-bands", "--json")
    assert "loudness" not in json.loads(without.stdout)


def test_too_short_for_loudness_reads_null(files):
    result = run(files["short"], files["short"], "--loudness", "--no-bands", "--json")
    assert result.returncode == 0, result.stderr
    short = json.loads(result.stdout)["loudness"]["reference"]
    assert short["integrated_lufs"] is None and short["lra"] is None
    assert short["sample_peak_dbfs"] == pytest.approx(-23.0, abs=1e-3)


def test_more_than_five_channels_need_channel_weights(tmp_path):
    t = np.arange(SR) / SR
    sine = 10 ** (-23 / 20) * np.sin(2 * np.pi * 1000 * t)
    six = tmp_path / "six.wav"
    sf.write(six, np.stack([sine] * 6, axis=1).astype(np.float32), SR, subtype="FLOAT")
    refused = run(six, six, "--loudness", "--no-bands")
    assert refused.returncode == 2 and "channel_weights" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    weighted = run(
        six, six, "--loudness", "--no-bands", "--json", "--channel-weights", "1", "1", "1", "0", "1.41", "1.41"
    )
    assert weighted.returncode == 0, weighted.stderr
    # five weighted channels of a -23 dBFS 1 kHz sine (LFE at 0): -0.691 + 10 log10(sum G A^2 / 2) + K(1 kHz)
    expected = -0.691 + 10 * np.log10((3 + 2 * 1.41) * 10 ** (-23 / 10) / 2) + 0.6977
    lufs = json.loads(weighted.stdout)["loudness"]["reference"]["integrated_lufs"]
    assert lufs == pytest.approx(expected, abs=0.01)
