"""drl.filtering: FFT application of biquad cascades against scipy's recursion, and its adjoint."""

import numpy as np
import pytest
import scipy.signal
import torch

from drl.filtering import (
    SOSFilter,
    check_sos,
    frame_length,
    impulse_response_length,
    sosfilt,
)
from drl.loudness import k_weighting_sos

RATES = [8000, 44100, 48000, 192000, 384000]


@pytest.mark.parametrize("sample_rate", RATES)
def test_matches_scipy_recursion_short_and_framed(sample_rate):
    sos = k_weighting_sos(sample_rate)
    rng = np.random.default_rng(sample_rate)
    length = frame_length(impulse_response_length(sos)) * 2 + 123  # forces overlap-save
    x = rng.standard_normal((2, length))
    for signal in (x[:, :1000], x):
        ours = sosfilt(torch.from_numpy(signal), sos).numpy()
        reference = scipy.signal.sosfilt(sos, signal)
        assert np.abs(ours - reference).max() < 1e-10 * np.abs(reference).max()


def test_resonant_butterworth_and_float32():
    sos = scipy.signal.butter(6, [900, 1100], btype="bandpass", fs=44100, output="sos")
    x = np.random.default_rng(1).standard_normal((3, 2, 200_000))
    reference = scipy.signal.sosfilt(sos, x)
    ours = sosfilt(torch.from_numpy(x), sos)
    assert ours.shape == x.shape
    assert np.abs(ours.numpy() - reference).max() < 1e-10
    ours32 = sosfilt(torch.from_numpy(x).float(), sos)
    assert ours32.dtype == torch.float32
    assert np.abs(ours32.numpy() - reference).max() < 1e-4


@pytest.mark.parametrize("sample_rate", [8000, 48000, 384000])
def test_impulse_response_is_negligible_after_its_length(sample_rate):
    sos = k_weighting_sos(sample_rate)
    length = impulse_response_length(sos)
    impulse = np.zeros(2 * length)
    impulse[0] = 1.0
    h = scipy.signal.sosfilt(sos, impulse)
    assert np.abs(h[length:]).max() < 1e-16 * np.abs(h).max()


def test_gradcheck_and_second_order():
    k_weighting = SOSFilter(k_weighting_sos(8000))
    x = torch.randn(2, 48, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(k_weighting, (x,))
    quick = SOSFilter(scipy.signal.butter(2, 0.3, output="sos"))  # short response: fast second order check
    assert torch.autograd.gradgradcheck(quick, (x[:, :16],))


def test_backward_is_time_reversed_filter_on_framed_path():
    sos = k_weighting_sos(8000)
    length = 3 * frame_length(impulse_response_length(sos))
    x = torch.randn(1, length, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(1, length, dtype=torch.float64)
    (sosfilt(x, sos) * weights).sum().backward()
    reference = scipy.signal.sosfilt(sos, weights.numpy()[:, ::-1])[:, ::-1]
    assert np.abs(x.grad.numpy() - reference).max() < 1e-10


def test_module_matches_function_and_keeps_float64_coefficients():
    sos = k_weighting_sos(44100)
    module = SOSFilter(sos).float()
    x = torch.randn(2, 5000, dtype=torch.float64)
    assert torch.equal(module(x), sosfilt(x, sos))
    assert module.sos.dtype == np.float64
    assert module(x[:, :0]).shape == (2, 0)


def test_bad_filters_and_audio_are_refused():
    with pytest.raises(ValueError, match="shape"):
        check_sos(np.ones((2, 5)))
    with pytest.raises(ValueError, match="stable"):
        check_sos([[1.0, 0.0, 0.0, 1.0, -2.0, 1.0]])
    with pytest.raises(ValueError, match="non-finite"):
        check_sos([[np.nan, 0.0, 0.0, 1.0, 0.0, 0.0]])
    with pytest.raises(ValueError, match="a0"):
        check_sos([[1.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    with pytest.raises(ValueError, match="floating-point"):
        sosfilt(torch.ones(10, dtype=torch.int16), k_weighting_sos(48000))


def test_overlap_save_equals_direct_convolution_for_several_responses():
    from drl.fft import fft_length, overlap_save

    rng = np.random.default_rng(3)
    signal = torch.from_numpy(rng.standard_normal((2, 3, 1000)))
    taps = rng.standard_normal((4, 33))
    n_fft = fft_length(200)
    spectrum = torch.fft.rfft(torch.from_numpy(taps), n=n_fft)
    out = overlap_save(signal, spectrum, n_fft, 32)
    assert out.shape == (2, 3, 4, 1000)
    for b, c, p in ((0, 0, 0), (1, 2, 3), (0, 1, 2)):
        expected = np.convolve(signal[b, c].numpy(), taps[p])[:1000]
        np.testing.assert_allclose(out[b, c, p].numpy(), expected, rtol=0, atol=1e-12)
    single = overlap_save(signal, spectrum[1], n_fft, 32)
    assert single.shape == (2, 3, 1000) and torch.allclose(single, out[..., 1, :], atol=1e-12)
