"""Exact bands: Parseval weights, the brick-wall bars (10 s of white and pink noise), tones, DC."""

import math

import numpy as np
import pytest
import torch
from scipy import signal as sps

from drl import DEFAULT_BANDS, DRL, band_drl_db, band_key, default_bands
from drl.bands import band_energies, band_weights, check_bands
from drl.fft import fft_length

SR = 44100
N = 10 * SR
BANDS = DEFAULT_BANDS + [(50, 60), (1000, 1010), (300, 3000), (10000, 22050)]


def white(n, seed, scale=0.2):
    return np.random.default_rng(seed).standard_normal(n) * scale


def pink(n, seed, scale=0.2):
    spectrum = np.random.default_rng(seed).standard_normal(n // 2 + 1) * (1 + 0j)
    spectrum *= np.exp(2j * np.pi * np.random.default_rng(seed + 1).random(n // 2 + 1))
    freqs = np.arange(n // 2 + 1, dtype=float)
    spectrum[1:] /= np.sqrt(freqs[1:])
    spectrum[0] = 0
    x = np.fft.irfft(spectrum, n)
    return x / x.std() * scale


def brickwall_band_db(x, y, sample_rate, bands):
    """Float64 band DRL from the FFT bins with low <= f < high (the ideal band split), one value per band."""
    gain = (x * y).sum() / (x * x).sum()
    residual_power = np.abs(np.fft.rfft(y - gain * x)) ** 2
    signal_power = np.abs(np.fft.rfft(gain * x)) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / sample_rate)
    masks = [(freqs >= low) & (freqs < high) for low, high in bands]
    return [10 * np.log10(residual_power[mask].sum() / signal_power[mask].sum()) for mask in masks]


@pytest.mark.parametrize("n", [N, 442368])  # N = 2^3 3^2 5^3 7^2 is zero-padded to 442368 = 2^14 3^3
@pytest.mark.parametrize("make_reference", [white, pink])
def test_bands_match_the_brickwall_split_within_0p1_db(make_reference, n):
    x = make_reference(n, seed=1)
    sos = sps.butter(4, [300, 3000], btype="bandpass", fs=SR, output="sos")
    residual = sps.sosfilt(sos, white(n, seed=2))
    y = x + residual * 0.03 * x.std() / residual.std()
    values = band_drl_db(torch.tensor(x), torch.tensor(y), SR, BANDS)
    for band, value, expected in zip(BANDS, values.tolist(), brickwall_band_db(x, y, SR, BANDS)):
        assert value == pytest.approx(expected, abs=0.1), band
    in_float32 = band_drl_db(torch.tensor(x).float(), torch.tensor(y).float(), SR, BANDS)
    torch.testing.assert_close(in_float32.double(), values, rtol=0, atol=0.01)
    # the module reports the same values, averaged over channels
    result = DRL(SR, BANDS)(torch.tensor(np.stack([x, x])), torch.tensor(np.stack([y, y])))
    for (low, high), value in zip(BANDS, values.tolist()):
        assert float(result["band_drl_db"][band_key(low, high)]) == pytest.approx(value, abs=1e-3)


def test_residual_tone_at_100_hz_stays_in_its_band():
    x = white(N, seed=3)
    t = np.arange(N) / SR
    y = x + 0.01 * np.sin(2 * np.pi * 100.03 * t + 0.3)  # off the FFT bin grid on purpose
    low, mid, high = band_drl_db(torch.tensor(x), torch.tensor(y), SR, DEFAULT_BANDS).tolist()
    assert low - mid >= 40.0
    assert low - high >= 40.0


def test_dc_offset_does_not_leak_into_bands_above_0_hz():
    x = white(2 * SR, seed=4)
    x -= x.mean()  # so level matching sees no DC in the reference and the residual is the offset alone
    y = x + 0.05
    for dtype in (torch.float64, torch.float32):
        reference, processed = torch.tensor(x, dtype=dtype), torch.tensor(y, dtype=dtype)
        broadband = DRL(SR, None)(reference, processed)["total_drl_db"]
        assert float(broadband) == pytest.approx(20 * math.log10(0.05 / x.std()), abs=0.01)
        bands = band_drl_db(reference, processed, SR, [(0, 20)] + DEFAULT_BANDS).tolist()
        assert bands[0] > float(broadband)  # 0-20 Hz holds all of it
        assert max(bands[1:]) < -100.0, bands


@pytest.mark.parametrize("n", [1000, 1001, 4096, 4097, 4125])
def test_weights_are_parseval_and_tiling_bands_partition_the_energy(n):
    sample_rate = 8000
    n_fft = fft_length(n)  # 1001 -> 1024, 4097 -> 4320, 4125 = 3 * 5^3 * 11 -> 4320; 1000 and 4096 as they are
    full = band_weights(n, sample_rate, [(0, 4000)], dtype=torch.float64)[0]
    expected = torch.ones(n_fft // 2 + 1, dtype=torch.float64) * 2.0
    expected[0] = 1.0
    if n_fft % 2 == 0:
        expected[-1] = 1.0
    torch.testing.assert_close(full, expected)

    x = torch.tensor(white(n, seed=n))
    tiles = [(0, 37.5), (37.5, 200), (200, 1234.5), (1234.5, 4000)]
    energies = band_energies(x, band_weights(n, sample_rate, tiles, dtype=torch.float64))
    torch.testing.assert_close(energies.sum(), x.square().sum())
    assert energies.shape == (4,)


@pytest.mark.parametrize("n", [90000, 88201])  # 5-smooth, and 88201 = 193 * 457 zero-padded to 90000
def test_a_dc_offset_stays_in_bin_0_however_the_padding_falls(n):
    x = white(n, seed=5)
    x -= x.mean()
    bands = [(0, 20), (20, 200), (200, 22050)]
    weights = band_weights(n, SR, bands, dtype=torch.float64)
    clean = band_energies(torch.tensor(x), weights)
    offset = band_energies(torch.tensor(x + 0.05), weights)
    torch.testing.assert_close(offset[0] - clean[0], torch.tensor(n * 0.05**2, dtype=torch.float64), rtol=1e-9, atol=0)
    torch.testing.assert_close(offset[1:], clean[1:], rtol=1e-9, atol=0)
    torch.testing.assert_close(offset.sum(), torch.tensor(x + 0.05).square().sum(), rtol=1e-12, atol=0)


def test_a_band_reads_the_same_whichever_bands_come_with_it():
    x = torch.tensor(white(2 * 24001, seed=6), dtype=torch.float32).reshape(2, 24001)
    alone = band_energies(x, band_weights(24001, 8000, [(100, 1000)]))[0]
    among = band_energies(x, band_weights(24001, 8000, [(0, 100), (100, 1000), (1000, 4000), (50, 60)]))[1]
    assert torch.equal(alone, among)


@pytest.mark.parametrize("n", [40, 37])  # 37 is zero-padded to 40
def test_band_energies_are_differentiable_padded_or_not(n):
    weights = band_weights(n, 8000, [(0, 500), (500, 4000)], dtype=torch.float64)
    x = torch.randn(2, n, dtype=torch.float64, generator=torch.Generator().manual_seed(n)).add_(0.3).requires_grad_()
    assert torch.autograd.gradcheck(lambda signal: band_energies(signal, weights), (x,))
    # the path without a gradient (centred and padded in place) gives the same values
    recorded, plain = band_energies(x, weights).detach(), band_energies(x.detach(), weights)
    torch.testing.assert_close(recorded, plain, rtol=1e-14, atol=0)


def test_weights_of_another_length_are_refused():
    with pytest.raises(ValueError, match=r"band_weights\(1001"):
        band_energies(torch.zeros(1001), band_weights(1000, 8000, [(0, 100)]))


def test_a_tone_on_a_band_edge_is_split_half_and_half():
    n, sample_rate = 1000, 8000  # 8 Hz bins: 400 Hz is bin 50
    x = torch.sin(2 * math.pi * 400 * torch.arange(n, dtype=torch.float64) / sample_rate)
    below, above = band_energies(x, band_weights(n, sample_rate, [(0, 400), (400, 4000)], dtype=torch.float64))
    torch.testing.assert_close(below, above)
    torch.testing.assert_close(below + above, x.square().sum())


def test_band_energies_keep_leading_dimensions():
    x = torch.randn(3, 2, 500)
    weights = band_weights(500, 8000, DEFAULT_BANDS[:2])
    assert band_energies(x, weights).shape == (2, 3, 2)
    assert band_drl_db(x, torch.tanh(x), 8000, DEFAULT_BANDS[:2]).shape == (2, 3, 2)


def test_band_keys():
    assert band_key(20, 200) == "20_200"
    assert band_key(20.0, 200.7) == "20_200"
    assert [band_key(*band) for band in DEFAULT_BANDS] == ["20_200", "200_2000", "2000_20000"]


@pytest.mark.parametrize(
    "bands, message",
    [
        ([(200, 20)], "low_hz < high_hz"),
        ([(-5, 20)], "low_hz < high_hz"),
        ([(20, 30000)], "Nyquist"),
        ([(20, 200), (20.5, 200.2)], "share the key"),
        ([(20, 200, 300)], "pair"),
        (["20-200"], "pair"),
        ([(20, float("nan"))], "finite"),
    ],
)
def test_bad_bands_are_refused(bands, message):
    with pytest.raises(ValueError, match=message):
        check_bands(bands, SR)
    with pytest.raises(ValueError, match=message):
        DRL(SR, bands)


def test_no_bands():
    assert check_bands(None, SR) == []
    with pytest.raises(ValueError, match="at least one"):
        band_drl_db(torch.randn(100), torch.randn(100), SR, [])


@pytest.mark.parametrize(
    "sample_rate, expected",
    [
        (44100, DEFAULT_BANDS),
        (16000, [(20, 200), (200, 2000), (2000, 8000.0)]),
        (8000, [(20, 200), (200, 2000), (2000, 4000.0)]),
    ],
)
def test_default_bands_fit_every_sample_rate(sample_rate, expected):
    assert default_bands(sample_rate) == [(float(lo), float(hi)) for lo, hi in expected]
    x = torch.randn(2, sample_rate)
    result = DRL(sample_rate)(x, torch.tanh(3 * x))
    assert list(result["band_drl_db"]) == [band_key(lo, hi) for lo, hi in expected]
    assert all(torch.isfinite(v) for v in result["band_drl_db"].values())
    # bands passed explicitly are still checked as given
    if sample_rate < 40000:
        with pytest.raises(ValueError, match="Nyquist"):
            DRL(sample_rate, list(DEFAULT_BANDS))
