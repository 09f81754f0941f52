"""``python -m drl REFERENCE PROCESSED``: output, JSON, alignment and the error exits (subprocess)."""

import json

import numpy as np
import pytest
import soundfile as sf
from drl_cli import run_drl as run

SR = 44100


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli_drl")
    x = (np.random.default_rng(0).standard_normal((SR, 2)) * 0.1).astype(np.float32)
    y = np.tanh(3 * x) / 3
    paths = {
        "reference": folder / "reference.wav",
        "processed": folder / "processed.flac",
        "delayed": folder / "delayed.wav",
        "mono": folder / "mono.wav",
        "rate": folder / "rate.wav",
        "junk": folder / "junk.wav",
        "low_rate_reference": folder / "low_rate_reference.wav",
        "low_rate_processed": folder / "low_rate_processed.wav",
    }
    sf.write(paths["reference"], x, SR, subtype="FLOAT")
    sf.write(paths["processed"], y, SR, subtype="PCM_24")
    sf.write(paths["delayed"], np.concatenate([np.zeros((150, 2), np.float32), y]), SR, subtype="FLOAT")
    sf.write(paths["mono"], x[:, 0], SR, subtype="FLOAT")
    sf.write(paths["rate"], x, 48000, subtype="FLOAT")
    paths["junk"].write_bytes(b"not audio at all")
    sf.write(paths["low_rate_reference"], x, 16000, subtype="FLOAT")
    sf.write(paths["low_rate_processed"], y, 16000, subtype="FLOAT")
    gains = (x * y).sum(0) / (x * x).sum(0)
    expected = 10 * np.log10(((y - gains * x) ** 2).sum(0) / ((gains * x) ** 2).sum(0))
    return paths, expected


def test_text_report(files):
    paths, expected = files
    result = run(paths["reference"], paths["processed"])
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    total = next(line for line in lines if line.startswith("DRL total"))
    assert float(total.split()[2]) == pytest.approx(expected.mean(), abs=0.01)
    assert sum(line.strip().startswith("channel") for line in lines) == 2
    for band in ("20-200 Hz", "200-2000 Hz", "2000-20000 Hz"):
        assert any(line.strip().startswith(band) for line in lines)
    assert not any(line.startswith("delay") for line in lines)


def test_json_with_alignment_and_custom_bands(files):
    paths, expected = files
    result = run(paths["reference"], paths["delayed"], "--align", "--json", "--bands", "0-100", "100-22050")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["delay_samples"] == pytest.approx(150.0, abs=0.05)
    assert report["total_drl_db"] == pytest.approx(expected.mean(), abs=0.1)
    assert report["channel_drl_db"] == pytest.approx(list(expected), abs=0.1)
    assert set(report["band_drl_db"]) == set(report["band_drl_percent"]) == {"0_100", "100_22050"}
    assert report["sample_rate"] == SR and report["channels"] == 2

    broadband = json.loads(run(paths["reference"], paths["processed"], "--json", "--no-bands").stdout)
    assert broadband["band_drl_db"] == {} and "delay_samples" not in broadband


def check_one_line_error(returncode, stdout, stderr, message):
    assert returncode == 2
    assert stdout == ""
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert message in stderr


@pytest.mark.parametrize(
    "names, message",
    [(("reference", "missing"), "processed file not found"), (("reference", "rate"), "sample rates differ")],
)
def test_errors_exit_2_with_one_line(files, names, message):
    paths, _ = files
    args = [paths.get(name, paths["reference"].parent / f"{name}.wav") for name in names]
    result = run(*args)
    check_one_line_error(result.returncode, result.stdout, result.stderr, message)


@pytest.mark.parametrize(
    "args, message",
    [
        (("junk", "processed"), "cannot read reference file"),
        (("reference", "mono"), "channel counts differ"),
        (("reference", "delayed"), "44100 samples but processed has 44250"),
        (("reference", "processed", "--bands", "20-x"), "LOW-HIGH"),
        (("reference", "processed", "--bands", "20-30000"), "Nyquist"),
        (("reference", "processed", "--align", "--max-delay-ms", "-3"), "max_delay_ms"),
    ],
)
def test_more_errors_in_process(files, args, message, capsys):
    # The same entry point as above without a new interpreter per case (keeps the suite fast).
    from drl.__main__ import main

    paths, _ = files
    argv = [str(paths.get(arg, arg)) for arg in args]
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse exits by itself
        code = exit_.code
    captured = capsys.readouterr()
    check_one_line_error(code, captured.out, captured.err, message)


def test_default_bands_fit_a_16_khz_file(files, capsys):
    from drl.__main__ import main

    paths, expected = files
    assert main([str(paths["low_rate_reference"]), str(paths["low_rate_processed"]), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert list(report["band_drl_db"]) == ["20_200", "200_2000", "2000_8000"]
    assert report["total_drl_db"] == pytest.approx(float(expected.mean()), abs=1e-3)


def test_nmr_in_text_and_json(files, capsys):
    import torch

    import drl
    from drl.__main__ import main

    paths, _ = files
    assert main([str(paths["reference"]), str(paths["processed"]), "--nmr", "--json", "--no-bands"]) == 0
    report = json.loads(capsys.readouterr().out)
    x = torch.from_numpy(sf.read(paths["reference"], dtype="float32")[0].T.copy())
    y = torch.from_numpy(sf.read(paths["processed"], dtype="float32")[0].T.copy())
    expected = drl.nmr_db(x, y, SR)
    assert report["channel_nmr_db"] == pytest.approx(expected.tolist(), abs=1e-4)
    assert report["nmr_db"] == pytest.approx(float(expected.mean()), abs=1e-4)
    assert main([str(paths["reference"]), str(paths["processed"]), "--nmr"]) == 0
    assert any(line.startswith("NMR") for line in capsys.readouterr().out.splitlines())
