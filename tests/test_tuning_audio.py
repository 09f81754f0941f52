"""Tracks in: loading, validation, the demo track, crops."""

import numpy as np
import pytest
import soundfile as sf
import torch

import drl
from tuning.audio import (
    Track,
    check_crop_length,
    crop_loaders,
    demo_track,
    draw_crop_starts,
    join_tracks,
    load_folder,
    load_track,
    loudest_start,
    step_generator,
    take_crops,
)


@pytest.fixture(scope="module")
def demo():
    return demo_track(duration_s=8.0)


def test_demo_is_deterministic_stereo_music(demo):
    again = demo_track(duration_s=8.0)
    assert torch.equal(demo.audio, again.audio)
    assert not torch.equal(demo.audio, demo_track(duration_s=8.0, seed=3).audio)
    assert demo.audio.shape == (2, 8 * 44100) and demo.audio.dtype == torch.float32
    assert demo.sample_rate == 44100 and demo.name == "demo"
    peak = float(drl.sample_peak(demo.audio).amax())
    assert peak == pytest.approx(-3.0, abs=0.01)
    lufs = float(drl.integrated_loudness(demo.audio, 44100))
    assert -28.0 < lufs < -16.0  # an unmastered mix: far below streaming loudness
    assert not torch.allclose(demo.audio[0], demo.audio[1])  # panned parts: real stereo


def test_demo_has_dynamics_and_a_bass_region(demo):
    # quiet bars (no kick, no bass) then louder sections: short-term loudness spans several LU
    block = 44100 // 2
    power = demo.audio[:, : demo.audio.shape[1] // block * block].reshape(2, -1, block).square().mean(dim=(0, 2))
    levels = 10 * torch.log10(power)
    assert float(levels.max() - levels.min()) > 4.0
    spectrum = torch.fft.rfft(demo.audio[0].double()).abs().square()
    freq = torch.fft.rfftfreq(demo.audio.shape[1], 1 / 44100)
    low = spectrum[freq < 150].sum() / spectrum.sum()
    high = spectrum[freq > 4000].sum() / spectrum.sum()
    assert 0.05 < float(low) < 0.95 and float(high) > 1e-4


def test_demo_rejects_bad_arguments():
    with pytest.raises(ValueError, match="duration_s"):
        demo_track(duration_s=0)
    with pytest.raises(ValueError, match="sample_rate"):
        demo_track(sample_rate=1000)


def test_load_roundtrip(tmp_path, demo):
    path = tmp_path / "mix.flac"
    sf.write(str(path), demo.audio.numpy().T, 44100, subtype="PCM_24")
    track = load_track(path)
    assert track.name == "mix" and track.sample_rate == 44100
    assert torch.allclose(track.audio, demo.audio, atol=1e-6)
    mono = tmp_path / "mono.wav"
    sf.write(str(mono), demo.audio[0].numpy(), 22050)
    assert load_track(mono).audio.shape == (1, demo.audio.shape[1])


def test_load_errors(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        load_track(tmp_path / "nope.wav")
    with pytest.raises(ValueError, match="not a file"):
        load_track(tmp_path)
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"this is not audio at all")
    with pytest.raises(ValueError, match="cannot read"):
        load_track(junk)
    empty = tmp_path / "empty.wav"
    sf.write(str(empty), np.zeros((0, 2), dtype=np.float32), 44100)
    with pytest.raises(ValueError, match="empty"):
        load_track(empty)
    silent = tmp_path / "silent.wav"
    sf.write(str(silent), np.zeros((44100, 2), dtype=np.float32), 44100)
    with pytest.raises(ValueError, match="silent"):
        load_track(silent)
    bad = tmp_path / "nan.wav"
    data = np.full((44100, 2), 0.1, dtype=np.float32)
    data[100, 1] = np.nan
    data[200, 0] = np.inf
    sf.write(str(bad), data, 44100, subtype="FLOAT")
    with pytest.raises(ValueError, match="non-finite"):
        load_track(bad)


def tone_with_a_loud_middle(path, rate=44100):
    """16 s: a quiet 220 Hz tone throughout, a loud 1 kHz one from 7 to 11 s (stereo, float32 wav)."""
    t = np.arange(16 * rate) / rate
    audio = 0.02 * np.sin(2 * np.pi * 220 * t) + 0.5 * np.sin(2 * np.pi * 1000 * t) * ((t >= 7) & (t < 11))
    sf.write(str(path), np.stack([audio, audio], 1).astype(np.float32), rate, subtype="FLOAT")
    return sf.read(str(path), dtype="float32", always_2d=True)[0].T


def test_a_part_of_a_file_is_its_loudest_or_its_start_and_named_after_its_seconds(tmp_path):
    path = tmp_path / "song.wav"
    audio = tone_with_a_loud_middle(path)
    track = load_track(path, duration_s=8.0)  # the 8 s windows that hold all of 7-11 s: the centred one
    assert track.name == "song_excerpt_5.0-13.0s"
    assert track.excerpt == {"start_s": 5.0, "end_s": 13.0, "file_s": 16.0, "choice": "loudest"}
    assert torch.equal(track.audio, torch.from_numpy(audio[:, 5 * 44100 : 13 * 44100]))
    start = load_track(path, duration_s=1.5, excerpt="start")
    assert start.name == "song_excerpt_0.0-1.5s" and start.audio.shape == (2, 66150)
    short = load_track(path, duration_s=2.0)  # under 3 s: 400 ms momentary windows, all inside 7-11 s
    assert 7.0 <= short.excerpt["start_s"] and short.excerpt["end_s"] <= 11.0
    whole = load_track(path, duration_s=20.0)  # longer than the file: all of it, under its own name
    assert whole.name == "song" and whole.excerpt is None and whole.audio.shape == (2, 16 * 44100)
    assert load_track(path).excerpt is None
    with pytest.raises(ValueError, match="data.excerpt must be one of loudest, start"):
        load_track(path, duration_s=8.0, excerpt="middle")
    with pytest.raises(ValueError, match="duration_s"):
        load_track(path, duration_s=0)
    with pytest.raises(ValueError, match="at least 0.4 s"):
        load_track(path, duration_s=0.2)


@pytest.mark.parametrize("length_s", [4.0, 2.0])
def test_loudest_start_matches_a_float64_reference(length_s):
    from scipy.signal import sosfilt

    from drl.loudness import k_weighting_sos

    rate, rng = 16000, np.random.default_rng(3)
    gains = np.repeat(10 ** (rng.uniform(-30, 0, 24) / 20), rate // 2)  # a new level every 0.5 s, 12 s
    audio = rng.standard_normal((2, 12 * rate)) * gains * 0.3
    squares = (sosfilt(k_weighting_sos(rate), audio, axis=-1) ** 2).sum(0)  # float64, channels weighted 1
    window, hop, length = int((3.0 if length_s >= 3 else 0.4) * rate), rate // 10, int(length_s * rate)
    means = []
    for start in range(0, audio.shape[-1] - length + 1, hop):  # each excerpt: its windows' mean energy
        inside = range(start, start + length - window + 1, hop)
        means.append(np.mean([squares[j : j + window].mean() for j in inside]))
    expected = int(np.argmax(means)) * hop
    assert loudest_start(torch.from_numpy(audio.astype(np.float32)), rate, length) == expected


def test_crop_length_check(demo):
    assert check_crop_length(demo, 2.0) == 88200
    with pytest.raises(ValueError, match=r"shorter than the crop length.*at least 10 s"):
        check_crop_length(demo, 10.0)
    with pytest.raises(ValueError, match="crop_s"):
        check_crop_length(demo, 0.0)


def test_crops_come_from_the_track():
    audio = torch.arange(20.0).reshape(2, 10)
    crops = take_crops(audio, torch.tensor([0, 3]), 4)
    assert crops.shape == (2, 2, 4)
    assert torch.equal(crops[1, 0], torch.tensor([3.0, 4, 5, 6]))
    assert torch.equal(crops[1, 1], torch.tensor([13.0, 14, 15, 16]))


def test_crop_starts_stay_inside_their_segment_and_depend_on_step_rank_seed():
    segments = [(0, 1000), (1500, 300), (2000, 5000)]
    starts = draw_crop_starts(segments, 200, 4000, step_generator(0, 0))
    inside = [any(o <= s and s + 200 <= o + n for o, n in segments) for s in starts.tolist()]
    assert all(inside)
    assert set(starts.tolist()) & set(range(1500, 1601, 64))  # the short segment is drawn from too
    same = draw_crop_starts(segments, 200, 16, step_generator(3, 5, rank=1))
    assert torch.equal(same, draw_crop_starts(segments, 200, 16, step_generator(3, 5, rank=1)))
    for other in (step_generator(3, 6, rank=1), step_generator(3, 5, rank=0), step_generator(4, 5, rank=1)):
        assert not torch.equal(same, draw_crop_starts(segments, 200, 16, other))
    with pytest.raises(ValueError, match="shorter than the crop"):
        draw_crop_starts([(0, 100)], 200, 1, step_generator(0, 0))


def test_crop_loaders():
    train, val = crop_loaders(5)
    assert len(list(train)) == 5 and len(list(val)) == 1
    with pytest.raises(ValueError, match="batches_per_epoch"):
        crop_loaders(0)


def test_folder_and_album(tmp_path):
    rng = np.random.default_rng(0)
    for name, seconds in (("b", 1.0), ("a", 0.5)):
        sf.write(str(tmp_path / f"{name}.wav"), 0.1 * rng.standard_normal((int(seconds * 8000), 2)), 8000)
    (tmp_path / "notes.txt").write_text("not audio")
    tracks = load_folder(tmp_path)
    assert [t.name for t in tracks] == ["a", "b"]
    album, segments = join_tracks(tracks, gap_s=0.25)
    assert segments == [(0, 4000), (6000, 8000)] and album.audio.shape == (2, 14000)
    assert torch.equal(album.audio[:, 6000:], tracks[1].audio) and not album.audio[:, 4000:6000].any()
    sf.write(str(tmp_path / "c.wav"), 0.1 * rng.standard_normal((800, 2)), 16000)
    with pytest.raises(ValueError, match="one sample rate"):
        load_folder(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no audio files"):
        load_folder(tmp_path / "empty")


def test_track_duration(demo):
    assert isinstance(demo, Track) and demo.duration_s == pytest.approx(8.0)


@pytest.mark.parametrize("gap_s", [-1.0, float("nan"), float("inf")])
def test_album_gap_must_be_finite_and_not_negative(gap_s):
    from tuning.audio import demo_track, join_tracks

    tracks = [demo_track(44100, 2.0, seed) for seed in (0, 1)]
    with pytest.raises(ValueError, match="gap_s"):
        join_tracks(tracks, gap_s)


def test_condition_track_removes_dc_and_infrasound_when_the_input_needs_it():
    from tuning.audio import condition_track

    clean = demo_track(duration_s=4.0)
    t = torch.arange(clean.audio.shape[-1]) / clean.sample_rate
    drifting = Track(clean.audio * 0.5 + 0.3 + 0.2 * torch.sin(2 * np.pi * 3.0 * t), clean.sample_rate, "dc")
    kept, report = condition_track(clean)
    assert kept is clean and not report["subsonic"] and report["warning"] is None
    assert report["infrasound_share"] < 0.01 and report["cutoff_hz"] is None
    fixed, report = condition_track(drifting)
    assert report["subsonic"] and report["cutoff_hz"] == 20.0
    assert report["dc_offset"] > 0.29 and report["infrasound_share"] > 0.5
    assert "energy below 20 Hz" in report["warning"] and "removed" in report["warning"]
    assert float(drl.infrasound_share(fixed.audio, fixed.sample_rate)) < 0.01
    assert float(drl.dc_offset(fixed.audio).abs().max()) < 1e-3
    untouched, report = condition_track(drifting, "off")
    assert untouched is drifting and not report["subsonic"] and "kept" in report["warning"]
    assert condition_track(clean, "on")[1]["subsonic"]
    with pytest.raises(ValueError, match="subsonic.mode must be one of auto, on, off"):
        condition_track(clean, "always")
    with pytest.raises(ValueError, match="cutoff_hz"):
        condition_track(clean, "on", 200.0)
