"""drl.peak: true-peak oversampling (alignment, accuracy), EBU Tech 3341 true-peak cases, sample peak."""

import math

import numpy as np
import pytest
import torch

from drl import TruePeak, sample_peak, true_peak
from drl.peak import interpolation_phases, oversampling_factor, true_peak_oversample


def faded_sine(sample_rate, frequency, amplitude, phase_deg, seconds=3.0, fade_s=0.02):
    """Sine with raised-cosine fades at both ends, float64 ``(T,)``."""
    n = round(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    x = amplitude * np.sin(2 * np.pi * frequency * t + np.deg2rad(phase_deg))
    fade = round(fade_s * sample_rate)
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(fade) / fade)
    x[:fade] *= ramp
    x[n - fade :] *= ramp[::-1]
    return torch.from_numpy(x)


# EBU Tech 3341 cases 15-19: (frequency as a fraction of fs, amplitude, phase in degrees, expected dBTP)
TP_CASES = {
    15: (1 / 4, 0.5, 0.0, -6.0),
    16: (1 / 4, 0.5, 45.0, -6.0),
    17: (1 / 6, 0.5, 60.0, -6.0),
    18: (1 / 8, 0.5, 67.5, -6.0),
    19: (1 / 4, 1.41, 45.0, 3.0),
}


@pytest.mark.parametrize("sample_rate", [44100, 48000, 96000])
@pytest.mark.parametrize("case", sorted(TP_CASES))
def test_ebu_true_peak_cases(case, sample_rate):
    fraction, amplitude, phase, expected = TP_CASES[case]
    x = faded_sine(sample_rate, fraction * sample_rate, amplitude, phase)
    measured = float(true_peak(x, sample_rate))
    assert expected - 0.4 <= measured <= expected + 0.2
    # a good interpolator reads the analytic peak much closer than the tolerance
    assert measured == pytest.approx(20 * math.log10(amplitude), abs=0.05)


def test_factors():
    assert [oversampling_factor(fs) for fs in (8000, 44100, 48000, 95999, 96000, 192000, 384000)] == [
        4,
        4,
        4,
        4,
        2,
        1,
        1,
    ]
    x = torch.randn(2, 1000, dtype=torch.float64)
    same, factor = true_peak_oversample(x, 192000)
    assert factor == 1 and torch.equal(same, x)


@pytest.mark.parametrize("sample_rate", [48000, 96000])
def test_oversampled_signal_is_time_aligned(sample_rate):
    factor = oversampling_factor(sample_rate)
    n = 4000
    t = np.arange(n) / sample_rate
    fine = np.arange(n * factor) / (sample_rate * factor)
    for frequency_fraction in (0.01, 0.13, 0.27, 0.4):
        f = frequency_fraction * sample_rate
        x = torch.from_numpy(np.cos(2 * np.pi * f * t + 0.3))
        y, got_factor = true_peak_oversample(x, sample_rate)
        assert got_factor == factor and y.shape == (n * factor,)
        expected = np.cos(2 * np.pi * f * fine + 0.3)
        inner = slice(64 * factor, (n - 64) * factor)  # away from the abrupt ends
        assert np.abs(y.numpy()[inner] - expected[inner]).max() < 3e-3
        assert torch.equal(y[::factor], x)  # phase 0 passes the input through


def test_phases_have_unit_dc_gain_and_symmetry():
    phases = interpolation_phases(4)
    assert phases.shape == (4, 33)
    np.testing.assert_allclose(phases.sum(axis=1), 1.0, atol=1e-15)
    np.testing.assert_array_equal(phases[0], np.eye(33)[16])
    # h(k + 1/4) = h(-(k + 1) + 3/4): phase 1 is phase 3 reversed, one tap later
    np.testing.assert_allclose(phases[1][1:], phases[3][::-1][:-1], atol=1e-15)
    assert phases[1][0] == 0.0


def test_true_peak_never_below_sample_peak_and_shapes():
    x = torch.randn(3, 2, 4410, dtype=torch.float64)
    tp = true_peak(x, 44100)
    sp = sample_peak(x)
    assert tp.shape == sp.shape == (3, 2)
    assert bool((tp >= sp).all())
    assert true_peak(x[0], 44100).shape == (2,)
    assert true_peak(x[0, 0], 44100).shape == ()
    np.testing.assert_allclose(sp.numpy(), 20 * np.log10(np.abs(x.numpy()).max(-1)))
    assert torch.equal(TruePeak(44100)(x), tp)
    assert TruePeak(44100)(x.float()).dtype == torch.float32


def test_smooth_peak_is_within_a_tenth_of_a_db_and_spreads_the_gradient():
    x = faded_sine(44100, 997.0, 0.7, 10.0, seconds=10.0).repeat(2, 1).requires_grad_()
    hard = true_peak(x, 44100)
    smooth = true_peak(x, 44100, smooth=True)
    assert bool((smooth >= hard - 1e-9).all()) and bool((smooth <= hard + 0.1).all())
    smooth.sum().backward()
    assert torch.isfinite(x.grad).all()
    assert int((x.grad[0].abs() > 1e-6 * x.grad[0].abs().max()).sum()) > 10  # many peaks contribute
    module = TruePeak(44100, smooth=True)
    assert torch.allclose(module(x.detach()), smooth.detach())


def test_gain_derivative_is_one_db_per_db():
    x = faded_sine(48000, 1234.5, 0.3, 33.0, seconds=1.0)
    for smooth in (False, True):
        gain_db = torch.tensor(-2.0, dtype=torch.float64, requires_grad=True)
        peak = true_peak(x * 10 ** (gain_db / 20), 48000, smooth=smooth)
        peak.backward()
        assert gain_db.grad.item() == pytest.approx(1.0, abs=1e-9)


def test_silence_is_minus_inf_with_zero_gradient():
    x = torch.zeros(2, 4800, dtype=torch.float64, requires_grad=True)
    for smooth in (False, True):
        peak = true_peak(x, 48000, smooth=smooth)
        assert bool(torch.isneginf(peak).all())
        x.grad = None
        peak.sum().backward()
        assert torch.equal(x.grad, torch.zeros_like(x))
    assert bool(torch.isneginf(sample_peak(torch.zeros(4))).all())


def test_bad_input():
    with pytest.raises(ValueError, match="non-finite"):
        true_peak(torch.tensor([0.0, float("nan"), 0.0]), 48000)
    with pytest.raises(ValueError, match="integer"):
        sample_peak(torch.ones(10, dtype=torch.int32))
    with pytest.raises(ValueError, match="sample_rate"):
        true_peak(torch.zeros(10), 4000)
    with pytest.raises(ValueError, match="temperature_db"):
        true_peak(torch.zeros(10), 48000, smooth=True, temperature_db=0.0)
