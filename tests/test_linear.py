"""Linear-response removal (issue 7): a least-squares reference, the bars of 512 taps on pink noise and music,
delay, alignment, gradients, bad input."""

import numpy as np
import pytest
import torch
from drl_test_signals import music, pink_noise
from scipy import signal as sps

from drl import DRL, drl_db
from drl.linear import project

SR = 44100
SECONDS = 4.0


@pytest.fixture(scope="module", params=["pink", "music"])
def source(request):
    if request.param == "pink":
        return pink_noise(int(SECONDS * SR), seed=11)[0]
    return music(SECONDS, seed=2)[0]


def linear_db(x, y, taps=512, **options):
    return float(DRL(SR, None, linear_taps=taps, **options)(torch.tensor(x), torch.tensor(y))["total_drl_db"])


def test_taps_solve_the_least_squares_problem_over_the_processed_span():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((2, 300)), rng.standard_normal((2, 300))
    taps, half = 8, 4
    fit = project(torch.tensor(x), torch.tensor(y), taps)
    for channel in range(2):
        # columns: x delayed by lags -4..3 and cut to the 300 samples of y (zeros shifted in)
        padded = np.pad(x[channel], (half, half))
        columns = np.stack([padded[half - lag : half - lag + 300] for lag in range(-half, half)], axis=1)
        expected, *_ = np.linalg.lstsq(columns, y[channel], rcond=None)
        np.testing.assert_allclose(fit.taps[channel].numpy(), expected, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(fit.fitted[channel].numpy(), columns @ expected, atol=1e-9)
        np.testing.assert_allclose(fit.residual[channel].numpy(), y[channel] - columns @ expected, atol=1e-9)


def test_causal_chebyshev_low_pass_reads_below_minus_60_db(source):
    processed = sps.sosfilt(sps.cheby1(8, 0.05, 0.9, output="sos"), source)  # scipy's decimation filter
    assert drl_db(torch.tensor(source), torch.tensor(processed)) > -25.0
    assert linear_db(source, processed) <= -60.0


def test_centred_linear_phase_low_pass_reads_below_minus_60_db(source):
    processed = np.convolve(source, sps.firwin(255, 20000, fs=SR), mode="same")
    assert drl_db(torch.tensor(source), torch.tensor(processed)) > -35.0
    assert linear_db(source, processed) <= -60.0


def test_hard_clipping_reads_within_half_a_db_of_plain(source):
    rms = source.std()
    clipped = np.clip(source, -2 * rms, 2 * rms)
    plain = float(drl_db(torch.tensor(source), torch.tensor(clipped)))
    assert linear_db(source, clipped) == pytest.approx(plain, abs=0.5)


def test_delays_within_the_taps_and_gains_are_linear():
    x = pink_noise(SR, seed=12)[0]
    assert linear_db(x, -0.5 * x) < -100.0
    delayed = np.concatenate([np.zeros(100), x[:-100]])
    assert linear_db(x, delayed) < -60.0
    leading = np.concatenate([x[37:], np.zeros(37)])
    assert linear_db(x, leading) < -60.0


def test_combines_with_alignment():
    x = pink_noise(2 * SR, seed=13)[0]
    filtered = sps.sosfilt(sps.cheby1(8, 0.05, 0.9, output="sos"), x)
    processed = np.concatenate([np.zeros(1500), filtered])  # a delay far beyond the 256 causal taps
    assert linear_db(x, processed[: len(x)]) > -20.0
    result = DRL(SR, None, align=True, linear_taps=512)(torch.tensor(x), torch.tensor(processed))
    assert float(result["total_drl_db"]) <= -60.0
    assert float(result["delay_samples"]) == pytest.approx(1500, abs=3)


def test_float32_bands_and_shapes():
    x = torch.tensor(music(1.0, seed=4, channels=2)).float()
    y = torch.tanh(3 * x) / 3
    result = DRL(SR, linear_taps=64)(x[None], y[None])
    assert result["residual"].shape == (1, 2, SR)
    assert result["channel_drl_db"].shape == (1, 2) and result["channel_drl_db"].dtype == torch.float32
    assert set(result["band_drl_db"]) == {"20_200", "200_2000", "2000_20000"}
    plain = DRL(SR)(x[None], y[None])
    # a memoryless saturation is not a filter: removing the linear part changes little
    assert float(result["total_drl_db"]) == pytest.approx(float(plain["total_drl_db"]), abs=1.0)
    assert set(result) == set(plain)


def test_gradients():
    x = torch.randn(1, 48, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    y = (torch.tanh(2 * x) + 0.3 * x.roll(1, -1)).requires_grad_(True)
    metric = DRL(8000, None, linear_taps=4)
    assert torch.autograd.gradcheck(lambda p: metric(x, p)["channel_drl_db"], (y,))
    same = x.clone().requires_grad_(True)
    value = DRL(8000, None, linear_taps=16)(x, same)["total_drl_db"]
    value.backward()
    assert float(value.detach()) < -100.0 and torch.isfinite(same.grad).all()


@pytest.mark.parametrize("bad", [0, 3, -4, 2.0, True])
def test_bad_linear_taps(bad):
    with pytest.raises(ValueError, match="linear_taps"):
        DRL(SR, linear_taps=bad)
