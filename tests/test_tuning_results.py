"""What a run leaves: files, their contents, the summary table; and the callbacks' helpers."""

import json

import pytest
import soundfile as sf
import torch
import yaml

from tuning.clips import loudest_excerpt
from tuning.figures import spectrum_db
from tuning.results import processed_name, summary_table, track_metrics, write_results

RATE = 44100


def metrics_for(x, y):
    return {
        "input": track_metrics(x, x, RATE),
        "output": track_metrics(x, y, RATE),
        "baseline_drl_db": -20.0,
        "baseline": {"drl_db": -20.0, "release_ms": 50.0, "lookahead_ms": 5.0},
        "target": {"name": "streaming", "lufs": -14.0, "ceiling_dbtp": -1.0},
    }


@pytest.fixture(scope="module")
def signals():
    gen = torch.Generator().manual_seed(0)
    x = 0.1 * torch.randn(2, RATE * 4, generator=gen)
    return x, torch.tanh(3 * x) / 3


def test_track_metrics(signals):
    x, y = signals
    own = track_metrics(x, x, RATE)
    assert own["drl_db"] == pytest.approx(-120.0)
    out = track_metrics(x, y, RATE)
    assert -60 < out["drl_db"] < 0
    assert set(out["band_drl_db"]) == {"20_200", "200_2000", "2000_20000"}
    assert out["true_peak_dbtp"] >= out["sample_peak_dbfs"] - 1e-6
    assert out["lra"] is not None
    json.dumps(out)  # plain values only


def document(values=None, subsonic=None, fmt="float32"):
    """A settings document for a one-stage limiter at ``values``."""
    from processors import Chain, Limiter
    from tuning.objective import Target
    from tuning.settings import settings_document

    chain = Chain({"limiter": Limiter(RATE, **(values or {"release_ms": 40.0}))})
    return settings_document(
        chain, "limiter", {"name": "song"}, Target(-14.0, -1.0, "streaming"), subsonic, {"format": fmt}
    )


def test_write_results(tmp_path, signals):
    x, y = signals
    paths = write_results(tmp_path, "song", y, RATE, document(), metrics_for(x, y))
    params = yaml.safe_load(paths["tuned_params"].read_text())
    assert params["processor"] == "limiter" and params["subsonic"] == {"mode": "off"}
    assert params["target"] == {"name": "streaming", "lufs": -14.0, "ceiling_dbtp": -1.0}
    assert params["stages"]["limiter"]["release_ms"] == 40.0 and params["stages"]["limiter"]["true_peak"] is False
    audio, rate = sf.read(str(paths["processed"]), dtype="float32", always_2d=True)
    assert rate == RATE and paths["processed"] == tmp_path / "processed" / "song.wav"
    assert torch.allclose(torch.from_numpy(audio.T), y, atol=1e-7)
    saved = json.loads(paths["metrics"].read_text())
    assert saved["baseline_drl_db"] == -20.0 and saved["output"]["integrated_lufs"] < 0
    assert saved["file"]["subtype"] == "FLOAT" and saved["file"]["path"] == str(paths["processed"])
    for index, existing in enumerate(("processed/song.wav", "tuned_params.yaml", "metrics.json")):
        folder = tmp_path / f"existing{index}"
        (folder / existing).parent.mkdir(parents=True)
        (folder / existing).write_text("keep me")
        with pytest.raises(ValueError, match="refusing to overwrite"):
            write_results(folder, "song", y, RATE, document(), metrics_for(x, y))
        assert (folder / existing).read_text() == "keep me"
    conditioned = {
        **metrics_for(x, y),
        "conditioning": {"subsonic": True, "cutoff_hz": 20.0, "dc_offset": 0.3, "infrasound_share": 0.4},
    }
    settings = document(subsonic=conditioned["conditioning"])
    paths = write_results(tmp_path / "dc", "song", y, RATE, settings, conditioned, tmp_path / "out" / "a.wav")
    assert yaml.safe_load(paths["tuned_params"].read_text())["subsonic"] == {"mode": "on", "cutoff_hz": 20.0}
    assert (tmp_path / "out" / "a.wav").is_file() and "input below 20 Hz" in summary_table(conditioned, {})


def test_processed_name():
    assert processed_name("{name}", "song", -9.0) == "song.wav"
    assert processed_name("{name}_{lufs}LUFS", "song", -9.0) == "song_-9LUFS.wav"
    assert processed_name("master", "song", -14.5) == "master.wav"
    for bad in ("{title}", "{name", "../{name}", "a/b", ""):
        with pytest.raises(ValueError, match="output.name"):
            processed_name(bad, "song", -9.0)


def test_table(signals):
    x, y = signals
    metrics = metrics_for(x, y)
    metrics["baseline"].update(lufs=-14.0, nmr_db=-31.5, slow_release_ms=1000.0)
    table = summary_table(metrics, {"compressor.ratio": 2.5})
    header, *rows = table.splitlines()
    assert header.split() == ["input", "output", "baseline"]
    nmr = next(row for row in rows if row.startswith("NMR (dB)")).split()
    assert float(nmr[-1]) == -31.5 and float(nmr[-2]) == pytest.approx(metrics["output"]["nmr_db"], abs=0.01)
    assert next(row for row in rows if row.startswith("DRL (dB)")).split()[-1] == "-20.00"
    assert "slow release 1000 ms" in table and "compressor.ratio" in table
    assert "objective (dB)" not in table  # the default objective is the NMR itself
    assert "dBTP: streaming" in table


def test_media_helpers():
    audio = torch.zeros(2, RATE * 6)
    audio[:, RATE * 3 : RATE * 4] = 0.5
    part = loudest_excerpt(audio, RATE, 2.0)
    assert part.stop - part.start == 2 * RATE and part.start <= 3 * RATE < 4 * RATE <= part.stop
    tone = torch.sin(2 * torch.pi * 1000 * torch.arange(RATE) / RATE)[None]
    spectrum = spectrum_db(tone)
    assert int(spectrum.argmax()) == round(1000 / (RATE / 4096))
