"""Subsonic filter and the infrasound report: zero phase, DC removed without a transient, scipy's sosfiltfilt."""

import math

import numpy as np
import pytest
import scipy.signal
import torch

from drl.infrasound import dc_offset, infrasound_share
from processors import Chain, Gain, Subsonic, functional

RATE = 48000


def test_equals_scipy_sosfiltfilt_in_float64():
    rng = np.random.default_rng(0)
    x = 0.1 * rng.standard_normal((2, 30000)) + 0.4 + np.linspace(0.0, 0.2, 30000)
    sos = scipy.signal.butter(4, 20.0, "highpass", fs=RATE, output="sos")
    ours = functional.highpass_sos(RATE, 20.0)
    _, response = scipy.signal.sosfreqz(sos, worN=4096, fs=RATE)
    _, ours_response = scipy.signal.sosfreqz(ours, worN=4096, fs=RATE)
    assert np.abs(ours_response - response).max() < 1e-9
    expected = scipy.signal.sosfiltfilt(ours, x, padtype="even", padlen=6 * RATE // 20)
    got = Subsonic(RATE)(torch.from_numpy(x)).numpy()
    assert np.abs(got - expected).max() < 1e-9


def test_dc_offset_goes_without_a_transient_and_the_music_stays():
    t = torch.arange(RATE * 2, dtype=torch.float64) / RATE
    music = 0.3 * torch.sin(2 * math.pi * 100.0 * t + 1.0)
    with_offset = Subsonic(RATE)(music + 0.41)
    # 100 Hz at a 20 Hz cutoff: r^8 / (1 + r^8), r = 5: -2e-5 dB
    assert float((with_offset - music)[RATE // 4 : -RATE // 4].abs().max()) < 1e-6
    # the offset leaves no trace, at the ends either (odd reflection would put a step of 0.5 there)
    assert float((with_offset - Subsonic(RATE)(music)).abs().max()) < 1e-9
    assert float(Subsonic(RATE)(torch.full((2, 5000), 0.41, dtype=torch.float64)).abs().max()) < 1e-12


def test_zero_phase_keeps_time_alignment():
    x = torch.randn(1, 2, 20000, dtype=torch.float64)
    y = functional.subsonic(x, RATE, 20.0)
    correlation = torch.fft.irfft(torch.fft.rfft(y, n=40000) * torch.fft.rfft(x, n=40000).conj(), n=40000)
    assert int(correlation.sum(dim=(0, 1)).argmax()) == 0
    assert y.shape == x.shape


def test_gradcheck_and_chain():
    x = torch.randn(2, 64, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a: functional.subsonic(a, 8000, 40.0), (x,))
    chain = Chain([Subsonic(RATE), Gain(RATE, gain_db=-6.0)])
    assert chain.values() == {"gain.gain_db": -6.0}
    assert chain(torch.ones(2, 1000, dtype=torch.float64)).abs().max() < 1e-9


def test_bad_cutoff():
    with pytest.raises(ValueError, match=r"cutoff_hz must be a number in \[1, 40\] Hz, got 100.0"):
        Subsonic(RATE, cutoff_hz=100.0)
    with pytest.raises(ValueError, match="cutoff_hz"):
        functional.subsonic(torch.zeros(10), RATE, True)
    with pytest.raises(ValueError, match="no parameter"):
        Subsonic(RATE, gain_db=1.0)


def test_infrasound_report_on_known_signals():
    t = torch.arange(RATE, dtype=torch.float64) / RATE
    tone = 0.5 * torch.sin(2 * math.pi * 1000.0 * t)  # whole periods: its energy lies in one bin
    x = torch.stack([tone + 0.2, tone - 0.1])
    assert torch.allclose(dc_offset(x), torch.tensor([0.2, -0.1], dtype=torch.float64), atol=1e-12)
    share = (0.2**2 + 0.1**2) / (0.2**2 + 0.1**2 + 2 * 0.125)
    assert float(infrasound_share(x, RATE)) == pytest.approx(share, rel=1e-9)
    assert float(infrasound_share(tone, RATE)) < 1e-20
    assert infrasound_share(torch.stack([x, x]), RATE).shape == (2,)
    with pytest.raises(ValueError, match="below_hz"):
        infrasound_share(x, RATE, below_hz=30000.0)
