"""Delay estimation and compensation: the accuracy bars, signs, batches, trimming, gradients, bad input."""

import math

import numpy as np
import pytest
import torch

import drl
from drl import DRL, drl_db, estimate_delay, fractional_delay
from drl.align import GUARD_SAMPLES
from drl.fft import fft_length

SR = 44100


def periodic_noise(n, seed, *, channels=1, pink=False, delay_samples=0.0):
    """Band-limited periodic noise (Nyquist bin empty) and the same noise delayed by ``delay_samples``.

    Both are exact samples of one continuous signal, so the delayed copy is a true fractional delay.
    """
    rng = np.random.default_rng(seed)
    bins = n // 2 + 1
    spectrum = rng.standard_normal((channels, bins)) + 1j * rng.standard_normal((channels, bins))
    if pink:
        spectrum[:, 1:] /= np.sqrt(np.arange(1, bins))
    spectrum[:, 0] = 0
    spectrum[:, -1] = 0
    shifted = spectrum * np.exp(-2j * np.pi * np.arange(bins) / n * delay_samples)
    x, y = np.fft.irfft(spectrum, n), np.fft.irfft(shifted, n)
    scale = 0.2 / x.std()
    return torch.tensor(x * scale), torch.tensor(y * scale)


def delayed(x, samples):
    """Delay by whole samples, zeros in front, same length."""
    return torch.cat([torch.zeros(*x.shape[:-1], samples, dtype=x.dtype), x[..., : x.shape[-1] - samples]], -1)


def five_smooth(m):
    for prime in (2, 3, 5):
        while m % prime == 0:
            m //= prime
    return m == 1


@pytest.mark.parametrize("n", [1, 2, 7, 11, 97, 1000, 44101, 882001])
def test_fft_length_is_the_next_5_smooth_number(n):
    length = fft_length(n)
    assert length >= n and five_smooth(length)
    assert not any(five_smooth(m) for m in range(n, length))


def test_fractional_delay_by_whole_samples_is_a_roll_and_is_invertible():
    x, _ = periodic_noise(4096, seed=1, channels=2)
    torch.testing.assert_close(fractional_delay(x, 5.0), torch.roll(x, 5, dims=-1))
    back = fractional_delay(fractional_delay(x, 0.37), -0.37)
    torch.testing.assert_close(back, x)
    _, expected = periodic_noise(4096, seed=1, channels=2, delay_samples=0.37)
    torch.testing.assert_close(fractional_delay(x, 0.37), expected)
    per_item = fractional_delay(torch.stack([x, x]), torch.tensor([[0.25], [-3.5]]))
    torch.testing.assert_close(per_item[1], fractional_delay(x, -3.5))


def test_220_samples_and_tanh_read_like_the_undelayed_measurement():
    x, _ = periodic_noise(3 * SR, seed=2, channels=2, pink=True)
    x = x.float()
    y = torch.tanh(4 * x) / 4
    plain = DRL(SR)(x, y)
    aligned = DRL(SR, align=True)(x, delayed(y, 220))
    assert float(aligned["delay_samples"]) == pytest.approx(220.0, abs=0.05)
    assert float(aligned["total_drl_db"]) == pytest.approx(float(plain["total_drl_db"]), abs=0.5)
    for key, value in plain["band_drl_db"].items():
        assert float(aligned["band_drl_db"][key]) == pytest.approx(float(value), abs=0.5)
    assert "delay_samples" not in plain
    assert float(DRL(SR)(x, delayed(y, 220))["total_drl_db"]) > 0.0  # unaligned, the delay reads as distortion


def test_pink_noise_delayed_by_0p37_samples_reads_below_minus_60_db():
    x, y = periodic_noise(10 * SR + 8000, seed=3, pink=True, delay_samples=0.37)
    x, y = x[..., 4000:-4000].float(), y[..., 4000:-4000].float()  # a crop: not periodic any more
    assert float(drl_db(x, y)) > -30.0  # plain nulling calls a 0.37-sample delay distortion
    result = DRL(SR, align=True)(x, y)
    assert float(result["delay_samples"]) == pytest.approx(0.37, abs=1e-3)
    assert float(result["total_drl_db"]) < -60.0


def test_5_ms_lookahead_delay_reads_at_the_floor_when_aligned():
    x, _ = periodic_noise(2 * SR, seed=4, channels=2)
    y = delayed(x, int(0.005 * SR))
    assert float(drl_db(x, y).mean()) > 20.0
    result = DRL(SR, None, align=True)(x, y)
    assert float(result["delay_samples"]) == pytest.approx(220.5, abs=0.6)
    assert float(result["total_drl_db"]) < -100.0


def test_sign_polarity_and_lengths():
    x, _ = periodic_noise(SR, seed=5, channels=2)
    leading = x[..., 37:]  # processed starts 37 samples late in the material: it leads, delay -37
    assert float(estimate_delay(x, leading, SR)) == pytest.approx(-37.0, abs=1e-3)
    inverted = -torch.cat([torch.zeros(2, 100, dtype=x.dtype), x], -1)  # longer, delayed, upside down
    delay = estimate_delay(x, inverted, SR)
    assert float(delay) == pytest.approx(100.0, abs=1e-3)
    reference, processed, delay = drl.align(x, inverted, SR)
    assert reference.shape == processed.shape == (2, SR)
    assert float(drl_db(reference, processed).max()) < -80.0
    result = DRL(SR, align=True)(x, inverted)
    assert result["residual"].shape == (2, SR)


def test_batch_items_get_their_own_delays():
    x, y = periodic_noise(SR, seed=6, channels=2, pink=True, delay_samples=50.3)
    x, y = x[..., 2000:-2000], y[..., 2000:-2000]
    reference = torch.stack([x, x])
    processed = torch.stack([delayed(x, 10), y])
    delays = estimate_delay(reference, processed, SR)
    assert delays.shape == (2,)
    torch.testing.assert_close(delays, torch.tensor([10.0, 50.3], dtype=torch.float64), rtol=0, atol=1e-3)
    result = DRL(SR, align=True)(reference, processed)
    assert result["channel_drl_db"].shape == (2, 2)
    assert float(result["channel_drl_db"].max()) < -60.0
    assert result["delay_samples"].shape == (2,)
    assert result["residual"].shape[-1] == x.shape[-1] - round(50.3) - 2 * GUARD_SAMPLES


def test_search_window_limits_the_delay():
    x, _ = periodic_noise(SR, seed=7)
    y = delayed(x, 300)
    assert float(estimate_delay(x, y, SR, max_delay_ms=10.0)) == pytest.approx(300.0, abs=1e-3)
    assert abs(float(estimate_delay(x, y, SR, max_delay_ms=5.0))) <= 5.0 * SR / 1000
    assert float(estimate_delay(x, y, SR, max_delay_ms=0.0)) == 0.0


@pytest.mark.parametrize("shape", [(SR,), (2, SR), (1, 2, SR)])
def test_align_keeps_the_rank_and_is_differentiable_in_processed(shape):
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(8)) * 0.1
    processed = fractional_delay(torch.tanh(3 * x), 12.6).requires_grad_(True)
    reference, aligned, delay = drl.align(x, processed, SR)
    assert reference.ndim == aligned.ndim == len(shape)
    assert delay.shape == (() if len(shape) < 3 else (1,))
    loss = DRL(SR, align=True)(x, processed)["total_drl_db"]
    loss.backward()
    assert torch.isfinite(processed.grad).all() and processed.grad.abs().sum() > 0


def test_bad_input():
    x, _ = periodic_noise(4000, seed=9)
    with pytest.raises(ValueError, match="max_delay_ms"):
        estimate_delay(x, x, SR, max_delay_ms=-1.0)
    with pytest.raises(ValueError, match="max_delay_ms"):
        estimate_delay(x, x, SR, max_delay_ms=math.nan)
    bad = x.clone()
    bad[0, 5] = math.nan
    with pytest.raises(ValueError, match="processed contains non-finite"):
        DRL(SR, align=True)(x, bad)
    with pytest.raises(ValueError, match="reference is silent"):
        drl.align(torch.zeros_like(x), x, SR)
    with pytest.raises(ValueError, match="overlap"):
        DRL(SR, align=True)(x[..., :2000], fractional_delay(x[..., :2000], 0.5))
    with pytest.raises(ValueError, match="channel layout"):
        drl.align(torch.stack([x[0], x[0]]), x, SR)
