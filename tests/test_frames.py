"""Frame-wise DRL: a float64 per-frame reference, the bars on music, shapes, gradients, bad input."""

import math

import numpy as np
import pytest
import torch
from drl_test_signals import music

from drl import DRL, frame_drl_db
from drl.frames import frame_length

SR = 44100


def reference_frame_db(x: np.ndarray, y: np.ndarray, length: int) -> float:
    """Float64 frame-wise DRL of one channel, frame by frame: Hann frames at half-frame hops."""
    half = length // 2
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(length) / length)
    n_blocks = -(-len(x) // half) + 2
    pad = (half, n_blocks * half - len(x) - half)
    xp, yp = np.pad(x, pad), np.pad(y, pad)
    residual = matched = 0.0
    for start in range(0, len(xp) - length + 1, half):
        xf, yf = window * xp[start : start + length], window * yp[start : start + length]
        if xf @ xf == 0:
            residual += yf @ yf
            continue
        gain = (xf @ yf) / (xf @ xf)
        residual += ((yf - gain * xf) ** 2).sum()
        matched += ((gain * xf) ** 2).sum()
    return 10 * math.log10(residual / matched)


@pytest.fixture(scope="module")
def track():
    return music(6.0)[0]


def test_matches_a_frame_by_frame_reference():
    x = music(1.0, seed=3)[0]
    y = np.tanh(3 * x) * np.linspace(0.5, 1.5, len(x))
    y[:3000] = 0.01 * np.sin(np.arange(3000))  # a stretch where the reference is silent counts y as residual
    x[:3000] = 0.0
    for frame_ms in (50, 20.3):
        length = frame_length(SR, frame_ms)
        value = DRL(SR, None, frame_ms=frame_ms)(torch.tensor(x), torch.tensor(y))["frame_drl_db"]
        assert float(value) == pytest.approx(reference_frame_db(x, y, length), abs=1e-6)
    in_float32 = frame_drl_db(torch.tensor(x).float(), torch.tensor(y).float(), SR, 50)
    assert float(in_float32) == pytest.approx(reference_frame_db(x, y, frame_length(SR, 50)), abs=1e-3)


def test_gain_ramp_of_6_db_over_1_s_reads_40_db_lower(track):
    t = np.arange(len(track)) / SR
    ramp = track * 10 ** (np.clip(t - 2.5, 0.0, 1.0) * 6 / 20)
    result = DRL(SR, None, frame_ms=50)(torch.tensor(track), torch.tensor(ramp))
    assert float(result["total_drl_db"] - result["frame_drl_db"]) >= 40.0


def test_gain_modulation_of_1_db_at_2_hz_reads_15_db_lower(track):
    t = np.arange(len(track)) / SR
    modulated = track * 10 ** (np.sin(2 * np.pi * 2 * t) / 20)
    result = DRL(SR, None, frame_ms=50)(torch.tensor(track), torch.tensor(modulated))
    assert float(result["total_drl_db"] - result["frame_drl_db"]) >= 15.0


def test_clipping_and_saturation_read_within_4_db_of_plain(track):
    rms = track.std()
    metric = DRL(SR, None, frame_ms=50)
    for processed in (np.clip(track, -2 * rms, 2 * rms), 2 * rms * np.tanh(track / (2 * rms))):
        result = metric(torch.tensor(track), torch.tensor(processed))
        assert abs(float(result["total_drl_db"] - result["frame_drl_db"])) <= 4.0
        assert float(result["frame_drl_db"]) < -10.0


def test_identical_and_gain_changed_signals_read_the_floor():
    x = torch.tensor(music(1.0, seed=1, channels=2)).float().requires_grad_(False)
    for processed in (x.clone(), 0.3 * x, -2.0 * x):
        processed.requires_grad_(True)
        result = DRL(SR, None, frame_ms=50)(x, processed)
        assert float(result["frame_drl_db"].detach()) < -100.0
        result["frame_drl_db"].backward()
        assert torch.isfinite(processed.grad).all()


@pytest.mark.parametrize("shape, channel_shape", [((3000,), ()), ((2, 3000), (2,)), ((2, 2, 3000), (2, 2))])
def test_keys_and_shapes(shape, channel_shape):
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    y = torch.tanh(2 * x)
    bands = [(0, 1000), (1000, 4000)]
    plain = DRL(8000, bands)(x, y)
    framed = DRL(8000, bands, frame_ms=20)(x, y)
    assert set(framed) - set(plain) == {"frame_drl_db", "frame_drl_percent", "channel_frame_drl_db"}
    assert framed["channel_frame_drl_db"].shape == channel_shape
    assert framed["frame_drl_db"].shape == ()
    for key in plain:  # the plain DRL stays exactly as it was
        if key.startswith("band"):
            assert all(torch.equal(plain[key][k], framed[key][k]) for k in plain[key])
        else:
            assert torch.equal(plain[key], framed[key]), key


def test_gradcheck():
    x = torch.randn(1, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = (torch.tanh(2 * x) + 0.1 * x.roll(3, -1)).requires_grad_(True)
    metric = DRL(8000, None, frame_ms=2)  # 16-sample frames
    assert torch.autograd.gradcheck(lambda p: metric(x, p)["channel_frame_drl_db"], (y,))


@pytest.mark.parametrize("bad", [0, -5.0, float("nan"), "50"])
def test_bad_frame_ms(bad):
    with pytest.raises(ValueError, match="frame_ms"):
        DRL(SR, frame_ms=bad)
