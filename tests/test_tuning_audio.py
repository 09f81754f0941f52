"""Tracks in: loading, validation, the demo track, crops."""

import numpy as np
import pytest
import soundfile as sf
import torch

import drl
from tuning.audio import CropStarts, Track, check_crop_length, crop_loaders, demo_track, load_track, take_crops


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
    starts = CropStarts(1000, 100, hop=64)
    assert int(starts[len(starts) - 1]) + 100 <= 1000
    with pytest.raises(ValueError):
        CropStarts(10, 20)


def test_crop_loaders_are_seeded():
    first, val = crop_loaders(44100 * 4, 44100, 3, 5, seed=7)
    second, _ = crop_loaders(44100 * 4, 44100, 3, 5, seed=7)
    a = torch.cat(list(first))
    assert a.shape == (15,) and torch.equal(a, torch.cat(list(second)))
    assert int(a.max()) + 44100 <= 44100 * 4
    assert len(list(val)) == 1
    with pytest.raises(ValueError, match="crops_per_batch"):
        crop_loaders(44100 * 4, 44100, 0, 5, seed=0)


def test_track_duration(demo):
    assert isinstance(demo, Track) and demo.duration_s == pytest.approx(8.0)
