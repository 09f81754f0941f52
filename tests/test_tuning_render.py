"""Deliverables: PCM with TPDF dither under the true-peak ceiling, a settings file that rebuilds the chain, the
render-only command, the target's name, and a tuning job rendered again from its tuned_params.yaml."""

import json
import math

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

import drl
import processors
from processors import Chain, Compressor, Gain, Limiter, Processor, Saturator
from tuning.audio import demo_track
from tuning.objective import Target
from tuning.pcm import tpdf_quantise, write_audio
from tuning.render import main as render_main
from tuning.settings import build_chain, chain_settings, read_settings, settings_document, write_settings

RATE = 44100


def at_ceiling(ceiling_dbtp=-1.0, seconds=1.0):
    """A stereo 50 Hz + 997 Hz mix scaled so that its true peak is exactly ``ceiling_dbtp``: hundreds of
    samples lie within one 16-bit LSB of the peak, so dither alone would push it over."""
    t = torch.arange(int(seconds * RATE), dtype=torch.float64) / RATE
    x = torch.stack([torch.sin(2 * math.pi * 50 * t), torch.sin(2 * math.pi * 50 * t + 0.1)])
    x = x + 0.02 * torch.sin(2 * math.pi * 997 * t)
    return x * 10 ** ((ceiling_dbtp - float(drl.true_peak(x, RATE).amax())) / 20)


@pytest.mark.parametrize("fmt, subtype, bits", [("pcm16", "PCM_16", 16), ("pcm24", "PCM_24", 24)])
def test_pcm_keeps_the_true_peak_under_the_ceiling(tmp_path, fmt, subtype, bits):
    x = at_ceiling()
    path = tmp_path / f"{fmt}.wav"
    info = write_audio(path, x, RATE, fmt, ceiling_dbtp=-1.0, seed=3)
    assert sf.info(str(path)).subtype == subtype and info["dither"] == "tpdf"
    written, rate = sf.read(str(path), dtype="float64", always_2d=True)
    written = torch.from_numpy(written.T.copy())
    peak = float(drl.true_peak(written, rate).amax())
    assert peak <= -1.0 and peak == pytest.approx(info["true_peak_dbtp"], abs=1e-9)
    # the trim, if any, is a few LSB: the loudness does not move
    assert -0.01 <= info["trim_db"] <= 0.0
    assert float((written - x).abs().max()) <= 2.0 ** (1 - bits) * (1.5 + 2.5)
    # without the ceiling check the dither pushes the 16-bit file over it
    if bits == 16:
        codes = tpdf_quantise(x.numpy(), 16, 3) / 2.0**15
        assert float(drl.true_peak(torch.from_numpy(codes), RATE).amax()) > -1.0
        assert info["trim_db"] < 0.0


def test_tpdf_dither_statistics():
    bits, n = 16, 200_000
    lsb = 2.0**-15
    # a signal exactly on a code: the dither's triangle shows as codes -1, 0, +1 with 1/8, 3/4, 1/8
    codes = tpdf_quantise(np.zeros((2, n)), bits, seed=0)
    shares = [np.mean(codes == k) for k in (-1, 0, 1)]
    assert shares == pytest.approx([1 / 8, 3 / 4, 1 / 8], abs=0.005) and np.abs(codes).max() == 1
    # TPDF: the total error has mean 0 and power LSB^2 / 4 whatever the signal (no bias, no noise modulation)
    for offset in (0.0, 0.25, 0.5, 0.8):
        x = np.full((1, n), (1000 + offset) * lsb)
        error = (tpdf_quantise(x, bits, seed=1) * lsb - x) / lsb
        assert abs(error.mean()) < 0.01 and error.var() == pytest.approx(0.25, abs=0.01)
        assert np.abs(error).max() <= 1.5 + 1e-9
    # the error of a sine is white and independent between channels
    t = np.arange(n) / RATE
    x = 0.5 * np.stack([np.sin(2 * np.pi * 441 * t), np.sin(2 * np.pi * 441 * t)])
    error = tpdf_quantise(x, bits, seed=2) * lsb - x
    assert abs(np.corrcoef(error[0, 1:], error[0, :-1])[0, 1]) < 0.02
    assert abs(np.corrcoef(error[0], error[1])[0, 1]) < 0.02
    assert abs(np.corrcoef(error[0], x[0])[0, 1]) < 0.02
    # the same seed, the same dither: a render written twice is the same file
    assert np.array_equal(tpdf_quantise(x, bits, seed=2), tpdf_quantise(x, bits, seed=2))


def test_write_audio_refuses_what_it_cannot_do(tmp_path):
    x = at_ceiling()
    (tmp_path / "a.wav").write_bytes(b"keep")
    with pytest.raises(ValueError, match="refusing to overwrite"):
        write_audio(tmp_path / "a.wav", x, RATE, "pcm16", -1.0)
    assert (tmp_path / "a.wav").read_bytes() == b"keep"
    with pytest.raises(ValueError, match="float32, pcm24, pcm16"):
        write_audio(tmp_path / "b.wav", x, RATE, "mp3")


def options_chain(rate=RATE):
    """A chain whose every option differs from its default."""
    return Chain(
        {
            "drive": Gain(rate, gain_db=7.123456789),
            "comp": Compressor(
                rate,
                threshold_db=-17.48392018,
                ratio=1.7345678912,
                attack_ms=8.7654321987,
                release_ms=234.56789123,
                detector="rms",
                rms_ms=12.345678,
                stereo_link=False,
            ),
            "sat": Saturator(
                rate, drive_db=3.45678912, bias=0.0123456789, mix=0.0876543219, oversample=2, unity_gain=True
            ),
            "limiter": Limiter(
                rate, ceiling_db=-1.02345678912, release_ms=57.654321987, slow_release_ms=987.654321, true_peak=True
            ),
        }
    )


def test_settings_keep_every_option_and_reproduce_the_render():
    chain = options_chain()
    stages = yaml.safe_load(yaml.safe_dump(chain_settings(chain), sort_keys=False))  # as in the file
    assert stages["comp"]["detector"] == "rms" and stages["comp"]["stereo_link"] is False
    assert stages["sat"]["oversample"] == 2 and stages["sat"]["unity_gain"] is True
    assert stages["limiter"]["true_peak"] is True and stages["limiter"]["slow_release_ms"] == pytest.approx(987.654321)
    assert stages["drive"]["gain_db"] == 7.123457  # short: the float32 the chain renders with
    rebuilt = build_chain(stages, RATE)
    assert chain_settings(rebuilt) == stages and list(rebuilt.stages) == ["drive", "comp", "sat", "limiter"]
    audio = demo_track(RATE, 3.0).audio
    with torch.no_grad():
        assert torch.equal(rebuilt(audio), chain(audio))
    # a limiter without its slow stage stays without it
    single = build_chain(chain_settings(Chain({"limiter": Limiter(RATE)})), RATE)
    assert "limiter.slow_release_ms" not in single.values()


def test_every_processor_can_be_saved():
    """A processor added to the package with an option it does not keep would make settings files incomplete."""
    for name in processors.__all__:
        cls = getattr(processors, name)
        if isinstance(cls, type) and issubclass(cls, Processor) and cls is not Processor:
            stage = cls(RATE)
            settings = chain_settings(Chain({"stage": stage}))
            assert chain_settings(build_chain(settings, RATE)) == settings, name


def test_build_chain_refuses_foreign_classes():
    for target in ("os.system", "processors.Chain", "processors.functional"):
        with pytest.raises(ValueError, match="not a processor"):
            build_chain({"x": {"_target_": target}}, RATE)
    with pytest.raises(ValueError, match="'x'.*ratio"):
        build_chain({"x": {"_target_": "processors.Compressor", "ratio": 0.1}}, RATE)


def test_target_label_names_an_override(compose_config):
    from hydra.utils import instantiate

    assert Target(-14.0, -1.0, "streaming", -14.0, -1.0).label == "streaming"
    assert Target(-9.0, -1.0, "streaming", -14.0, -1.0).label == "streaming (lufs=-9)"
    assert Target(-9.0, -2.0, "streaming", -14.0, -1.0).label == "streaming (lufs=-9, ceiling_dbtp=-2)"
    assert Target(-9.0, -1.0).label == "custom"
    assert instantiate(compose_config([]).target).label == "streaming"
    assert instantiate(compose_config(["target.lufs=-9"]).target).label == "streaming (lufs=-9)"
    assert instantiate(compose_config(["experiment=loud_master"]).target).label == "streaming (lufs=-9)"
    assert instantiate(compose_config(["target=ebu_r128"]).target).label == "ebu_r128"


def write_song(path, seconds=3.0, seed=3, offset=0.0):
    audio = demo_track(RATE, seconds, seed=seed).audio + offset
    sf.write(str(path), audio.T.numpy(), RATE, subtype="FLOAT")
    return path


def saved_settings(tmp_path, chain=None, **document):
    chain = chain or options_chain()
    target = Target(-14.0, -1.0, "streaming", -14.0, -1.0)
    doc = settings_document(
        chain, "chain", {"name": "song"}, target, None, {"format": "float32", "dither_seed": 0}, **document
    )
    return write_settings(tmp_path / "tuned_params.yaml", doc)


def test_render_command(tmp_path, capsys):
    settings = saved_settings(tmp_path)
    songs = [write_song(tmp_path / f"song{i}.wav", 2.0 + i, seed=i) for i in range(2)]
    out = tmp_path / "out"
    assert render_main([str(settings), *map(str, songs), "-o", str(out), "--format", "pcm24"]) == 0
    chain = build_chain(read_settings(settings)["stages"], RATE)
    for song in songs:
        path = out / f"{song.stem}_-14LUFS.wav"
        assert sf.info(str(path)).subtype == "PCM_24"
        written, _ = sf.read(str(path), dtype="float64", always_2d=True)
        source, _ = sf.read(str(song), dtype="float32", always_2d=True)
        with torch.no_grad():
            expected = chain(torch.from_numpy(source.T.copy())).double()
        assert float((torch.from_numpy(written.T.copy()) - expected).abs().max()) < 2.0**-23 * 4
        assert float(drl.true_peak(torch.from_numpy(written.T.copy()), RATE).amax()) <= -1.0
    assert "song0 -> " in capsys.readouterr().out


def test_render_command_bad_input_is_one_line_and_exit_code_2(tmp_path, capsys):
    settings = saved_settings(tmp_path)
    song = write_song(tmp_path / "song.wav")
    (tmp_path / "taken.wav").write_bytes(b"keep")
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("stages: [unclosed")
    foreign = tmp_path / "foreign.yaml"
    document = yaml.safe_load(settings.read_text())
    document["stages"]["gain"] = {"_target_": "os.system", "command": "true"}
    foreign.write_text(yaml.safe_dump(document))
    cases = [
        ([str(tmp_path / "none.yaml"), str(song)], "settings file not found"),
        ([str(bad_yaml), str(song)], "cannot read settings file"),
        ([str(song), str(song)], "cannot read settings file|not a tuned_params.yaml"),
        ([str(foreign), str(song), "-o", str(tmp_path / "f.wav")], "not a processor"),
        ([str(settings), str(tmp_path / "missing.wav")], "audio file not found"),
        ([str(settings), str(song), "-o", str(tmp_path / "taken.wav")], "refusing to overwrite"),
        ([str(settings), str(song), "-o", str(tmp_path), "--name", "{name}"], "refusing to overwrite"),
        ([str(settings), str(song), str(song), "-o", str(tmp_path / "o"), "--name", "x"], "one file"),
        ([str(settings), str(song), "--format", "mp3"], "invalid choice"),
    ]
    for argv, message in cases:
        try:
            code = render_main(argv)
        except SystemExit as exit:  # a usage error, from argparse
            code = exit.code
        assert code == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("python -m tuning.render: error:"), err
        assert any(part in err for part in message.split("|")), err
    assert (tmp_path / "taken.wav").read_bytes() == b"keep"


@pytest.mark.slow
def test_a_job_rendered_again_from_its_settings(compose_config, tmp_path):
    """A short job (subsonic stage on, an overridden target, a chosen output folder and name, TensorBoard), its
    processed file rendered again from tuned_params.yaml alone; and its hparams and run name."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import metadata

    import train

    song = write_song(tmp_path / "song.wav", seconds=4.0, offset=0.02)  # a DC offset: the subsonic stage runs
    masters = tmp_path / "masters"
    cfg = compose_config(
        [
            "data=file",
            f"data.path={song}",
            "data.crop_s=1.0",
            "data.crops_per_batch=2",
            "data.batches_per_epoch=2",
            "trainer.max_steps=2",
            "baseline.release_ms=[50.0]",
            "baseline.lookahead_ms=[5.0]",
            "baseline.slow_release_ms=[null]",
            "target.lufs=-9",
            "~callbacks",
            f"output.dir={masters}",
            "output.name='{name}_{lufs}LUFS'",  # quoted: braces are Hydra syntax
        ]
    )
    metrics = train.train(cfg)
    run = tmp_path / "run"
    processed = masters / "song_-9LUFS.wav"
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["target"]["name"] == "streaming (lufs=-9)" and saved["target"]["preset"] == "streaming"
    assert saved["file"]["path"] == str(processed) and metrics["conditioning"]["subsonic"]
    settings = read_settings(run / "tuned_params.yaml")
    assert settings["subsonic"] == {"mode": "on", "cutoff_hz": 20.0}
    assert settings["input"]["path"] == str(song.resolve()) and settings["target"]["lufs"] == -9.0
    assert settings["stages"]["limiter"]["true_peak"] is True and "oversample" in settings["stages"]["saturator"]

    rendered = tmp_path / "again.wav"
    assert render_main([str(run / "tuned_params.yaml"), str(song), "-o", str(rendered)]) == 0
    job_audio, _ = sf.read(str(processed), dtype="float64", always_2d=True)
    again, _ = sf.read(str(rendered), dtype="float64", always_2d=True)
    assert job_audio.shape == again.shape and np.abs(job_audio - again).max() <= 1e-6

    # 16 bit from the same settings: under the ceiling, loudness unchanged
    assert (
        render_main([str(run / "tuned_params.yaml"), str(song), "-o", str(tmp_path / "cd.wav"), "--format", "pcm16"])
        == 0
    )
    cd, _ = sf.read(str(tmp_path / "cd.wav"), dtype="float64", always_2d=True)
    cd = torch.from_numpy(cd.T.copy())
    assert float(drl.true_peak(cd, RATE).amax()) <= -1.0
    assert float(drl.integrated_loudness(cd, RATE)) == pytest.approx(-9.0, abs=0.01)

    # TensorBoard: the run is named by input and target; the hparams are the target, input, tuned settings
    logs = run / "tensorboard" / "song_-9LUFS"
    events = EventAccumulator(str(logs))
    events.Reload()
    content = events.SummaryMetadata(metadata.SESSION_START_INFO_TAG).plugin_data.content
    hparams = dict(metadata.parse_session_start_info_plugin_data(content).hparams)
    assert hparams["target"].string_value == "streaming (lufs=-9)" and hparams["input"].string_value == "song"
    gain = settings["stages"]["gain"]["gain_db"]
    assert hparams["tuned/gain.gain_db"].number_value == pytest.approx(gain, abs=1e-5)
    assert not any("baseline" in name for name in hparams)


@pytest.mark.slow
def test_an_album_rendered_again_from_its_settings(compose_config, tmp_path):
    """Album mode: one setting for all files; `--album` renders the files joined as the job did, each file
    within 1e-6 of the job's, and every file's tuned_params.yaml holds the one chain."""
    import train

    folder = tmp_path / "album"
    folder.mkdir()
    songs = [write_song(folder / f"song{i}.wav", seconds, seed=i) for i, seconds in enumerate((2.5, 3.0))]
    cfg = compose_config(
        [
            "data=folder",
            f"data.dir={folder}",
            "data.mode=shared",
            "data.crop_s=1.0",
            "data.crops_per_batch=2",
            "data.batches_per_epoch=2",
            "trainer.max_steps=2",
            "baseline.release_ms=[50.0]",
            "baseline.lookahead_ms=[5.0]",
            "baseline.slow_release_ms=[1000.0]",  # a slow release: its state carries from one file into the next
            "~callbacks",
            "logger=csv",
        ]
    )
    train.train(cfg)
    run = tmp_path / "run"
    settings = [read_settings(run / song.stem / "tuned_params.yaml") for song in songs]
    assert settings[0]["stages"] == settings[1]["stages"] and settings[0]["album"]["gap_s"] == 1.0
    assert [entry["name"] for entry in settings[0]["album"]["files"]] == ["song0", "song1"]
    out = tmp_path / "again"
    assert render_main([str(run / "song0" / "tuned_params.yaml"), *map(str, songs), "-o", str(out), "--album"]) == 0
    for song in songs:
        job_audio, _ = sf.read(str(run / song.stem / "processed" / f"{song.stem}.wav"), dtype="float64")
        again, _ = sf.read(str(out / f"{song.stem}_-14LUFS.wav"), dtype="float64")
        assert job_audio.shape == again.shape and np.abs(job_audio - again).max() <= 1e-6


def test_bad_output_options_stop_the_job_before_any_work(compose_config, tmp_path):
    import train

    folder = tmp_path / "songs"
    folder.mkdir()
    for i in range(2):
        write_song(folder / f"song{i}.wav", 2.0, seed=i)
    (tmp_path / "masters").mkdir()
    (tmp_path / "masters" / "demo.wav").write_bytes(b"keep")
    short = "data.track.duration_s=3.0"
    cases = [
        ([short, "output.format=mp3"], "float32, pcm24, pcm16"),
        ([short, "output.name=x/y"], "not a file name"),
        ([short, "output.name='{title}'"], "placeholders"),
        ([short, f"output.dir={tmp_path / 'masters'}"], "refusing to overwrite"),
        (["data=folder", f"data.dir={folder}", f"output.dir={tmp_path / 'all'}", "output.name=master"], "{name}"),
    ]
    for overrides, message in cases:
        with pytest.raises(ValueError, match=message.replace("{", r"\{")):
            train.train(compose_config(overrides))
    assert (tmp_path / "masters" / "demo.wav").read_bytes() == b"keep" and not (tmp_path / "run").exists()
