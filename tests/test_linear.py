"""Linear-response removal: a least-squares reference, the bars of 512 taps on pink noise and music,
delay, alignment, gradients, bad input."""

import numpy as np
import pytest
import torch
from drl_test_signals import music, pink_noise
from scipy import signal as sps

from drl import DRL, drl_db, linear
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


@pytest.fixture
def short_blocks(monkeypatch):
    """Block transforms of 32 samples handled three at a time, so that a short signal spans many blocks and
    chunks of them (4 taps: hop 26)."""
    monkeypatch.setattr(linear, "MIN_BLOCK_FFT", 32)
    monkeypatch.setattr(linear, "CHUNK_LENGTH", 3 * 32)


def lstsq_fit(x, y, taps):
    """Taps and fitted signal of the least-squares fit of ``y`` by copies of ``x`` delayed by lags -N/2..N/2-1 and
    cut to the span of ``y`` (zeros shifted in), one channel, by numpy's lstsq."""
    half, n = taps // 2, len(y)
    padded = np.pad(x, (half, half))
    columns = np.stack([padded[half - lag : half - lag + n] for lag in range(-half, half)], axis=1)
    solution, *_ = np.linalg.lstsq(columns, y, rcond=None)
    return solution, columns @ solution


def assert_fit_matches_lstsq(x, y, taps):
    """``project``'s taps, fitted signal and residual for every channel of ``x, y`` (C, T) against numpy."""
    fit = project(torch.tensor(x), torch.tensor(y), taps)
    for channel in range(len(x)):
        expected, fitted = lstsq_fit(x[channel], y[channel], taps)
        np.testing.assert_allclose(fit.taps[channel].numpy(), expected, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(fit.fitted[channel].numpy(), fitted, atol=1e-9)
        np.testing.assert_allclose(fit.residual[channel].numpy(), y[channel] - fitted, atol=1e-9)


def test_taps_solve_the_least_squares_problem_over_the_processed_span():
    x, y = np.random.default_rng(0).standard_normal((2, 2, 300))
    assert_fit_matches_lstsq(x, y, 8)


@pytest.mark.parametrize("n_samples", [5000, 3 * 2036, 2036 + 1])
def test_block_wise_correlations_match_least_squares_across_blocks(n_samples):
    # 8 taps: 2048-sample blocks of 2036 new samples each; the last block cut short, whole, or one sample (the
    # reference's segments then lie partly within it, wholly within it, or nowhere within it)
    x = np.random.default_rng(1).standard_normal((2, n_samples))
    assert_fit_matches_lstsq(x, np.tanh(2 * x) + 0.3 * np.roll(x, 3, axis=-1), 8)


def test_many_short_blocks_match_least_squares(short_blocks):
    x, y = np.random.default_rng(2).standard_normal((2, 3, 101))
    assert_fit_matches_lstsq(x, y, 4)


def _project_outputs(reference, processed):
    return tuple(project(reference, processed, 4))


def test_hand_written_backward_passes_gradcheck(short_blocks):
    generator = torch.Generator().manual_seed(5)
    x = torch.randn(2, 80, dtype=torch.float64, generator=generator)
    y = (torch.tanh(2 * x) + 0.3 * x.roll(1, -1)).requires_grad_(True)
    assert type(project(x, y, 4).residual.grad_fn).__name__ == "_ProjectProcessedBackward"
    assert torch.autograd.gradcheck(lambda p: _project_outputs(x, p), (y,))
    # each output alone: gradients that are not passed back arrive as None
    for index in range(5):
        assert torch.autograd.gradcheck(lambda p: _project_outputs(x, p)[index], (y,))
    assert torch.autograd.gradgradcheck(lambda p: _project_outputs(x, p)[1:], (y,))


def test_gradients_through_the_reference_pass_gradcheck(short_blocks):
    generator = torch.Generator().manual_seed(6)
    x = torch.randn(1, 60, dtype=torch.float64, generator=generator).requires_grad_(True)
    y = (torch.tanh(2 * x) + 0.3 * x.roll(1, -1)).detach().requires_grad_(True)
    assert torch.autograd.gradcheck(_project_outputs, (x, y))


def test_hand_written_backward_equals_autograd_through_the_fit(short_blocks):
    generator = torch.Generator().manual_seed(7)
    x = torch.randn(2, 300, dtype=torch.float64, generator=generator)
    y = torch.tanh(2 * x) + 0.1 * torch.randn(2, 300, dtype=torch.float64, generator=generator)
    weights = torch.randn(2, 300, dtype=torch.float64, generator=generator)

    def gradient(reference_needs_grad):
        reference = x.clone().requires_grad_(reference_needs_grad)
        processed = y.clone().requires_grad_(True)
        fit = project(reference, processed, 4)
        loss = (fit.residual * weights).sum() + fit.residual_energy.log().sum() - fit.signal_energy.sqrt().sum()
        (loss + fit.taps.square().sum()).backward()
        return processed.grad

    torch.testing.assert_close(gradient(False), gradient(True), rtol=1e-9, atol=1e-12)


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


def brick_wall_low_pass(x, cutoff_hz=16000.0):
    """``x (..., T)`` with every frequency above ``cutoff_hz`` removed, as lossy codecs leave music."""
    spectrum = np.fft.rfft(x)
    spectrum[..., np.fft.rfftfreq(x.shape[-1], 1 / SR) > cutoff_hz] = 0
    return np.fft.irfft(spectrum, x.shape[-1])


@pytest.fixture(scope="module", params=["pink", "music"])
def band_limited(request):
    """1 s of stereo with nothing above 16 kHz, in float32 (the steep spectrum of music made the float32 fit's
    autocorrelation matrix indefinite)."""
    x = pink_noise(SR, seed=4, channels=2) if request.param == "pink" else music(1.0, seed=5, channels=2)
    return torch.tensor(brick_wall_low_pass(x)).float()


def test_float32_band_limited_references_read_as_float64(band_limited):
    x = band_limited
    y = torch.tanh(3 * x) / 3
    metric = DRL(SR, None, linear_taps=512)
    single = metric(x, y)["channel_drl_db"]
    assert single.dtype == torch.float32
    torch.testing.assert_close(single.double(), metric(x.double(), y.double())["channel_drl_db"], atol=1e-3, rtol=0)


def test_linear_filter_of_a_float32_band_limited_reference_reads_below_minus_60_db(band_limited):
    x = band_limited
    filtered = torch.tensor(sps.sosfilt(sps.cheby1(8, 0.05, 0.9, output="sos"), x.double().numpy())).float()
    assert float(DRL(SR, None, linear_taps=512)(x, filtered)["total_drl_db"]) <= -60.0
