"""Saturator: the formula, unity small-signal gain, oversampling's alias bar and alignment, gradients."""

import numpy as np
import pytest
import torch

from processors import Saturator, functional

SR = 44100


def reference(x, drive_db, bias, mix, output_db, unity=False):
    g, post = 10 ** (drive_db / 20), 10 ** (output_db / 20)
    if unity:
        post /= g * (1 - np.tanh(bias) ** 2)
    return mix * post * (np.tanh(g * x + bias) - np.tanh(bias)) + (1 - mix) * x


@pytest.mark.parametrize("unity", [False, True])
def test_matches_formula(unity):
    x = np.random.default_rng(0).standard_normal((2, 3, 200)) * 0.4
    sat = Saturator(SR, drive_db=[12, 30], bias=[0.3, -0.7], mix=[1.0, 0.25], output_db=[-3, 6], unity_gain=unity)
    y = sat(torch.tensor(x)).detach().numpy()
    for b, (d, bi, m, o) in enumerate([(12, 0.3, 1.0, -3), (30, -0.7, 0.25, 6)]):
        np.testing.assert_allclose(y[b], reference(x[b], d, bi, m, o, unity), atol=1e-12)


def test_unity_gain_keeps_small_signals_at_unity():
    x = torch.randn(2, 1000, dtype=torch.float64) * 1e-7
    y = Saturator(SR, drive_db=36, bias=0.5, unity_gain=True)(x)
    assert torch.allclose(y, x, rtol=1e-4, atol=1e-15)


def test_mix_zero_is_dry_and_silence_is_silent():
    x = torch.randn(2, 500)
    assert torch.equal(Saturator(SR, drive_db=20, mix=0)(x), x)
    silence = torch.zeros(2, 500, requires_grad=True)
    sat = Saturator(SR, drive_db=48, bias=1.0, oversample=4)
    y = sat(silence)
    assert float(y.detach().abs().max()) < 1e-6
    y.sum().backward()
    assert bool(torch.isfinite(silence.grad).all())
    assert all(bool(torch.isfinite(p.grad).all()) for p in sat.parameters())


def test_loud_input_is_finite():
    y = Saturator(SR, drive_db=48, output_db=24, unity_gain=True, oversample=2)(torch.randn(2, 1000) * 100)
    assert bool(torch.isfinite(y).all())


def _alias_db(y):
    """Energy outside the harmonics of 5 kHz relative to the total, from 1 s of steady state (1 Hz bins)."""
    seg = y[SR // 2 : SR // 2 + SR].numpy()
    spectrum = np.abs(np.fft.rfft(seg * np.hanning(seg.size))) ** 2
    f = np.arange(spectrum.size)
    harmonic = np.zeros(spectrum.size, bool)
    for k in range(1, 5):
        harmonic |= np.abs(f - 5000 * k) <= 3
    return 10 * np.log10(spectrum[~harmonic].sum() / spectrum.sum())


def test_oversampling_removes_aliasing():
    t = torch.arange(2 * SR, dtype=torch.float64) / SR
    x = 10 ** (-6 / 20) * torch.sin(2 * np.pi * 5000 * t)
    plain = _alias_db(Saturator(SR, drive_db=24, oversample=1)(x).detach())
    over = _alias_db(Saturator(SR, drive_db=24, oversample=4)(x).detach())
    assert plain > -20  # the plain tanh aliases heavily here
    assert over <= plain - 20


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_oversampled_path_is_aligned(factor):
    """In the linear region the oversampled path equals the plain one (no delay, no smearing in band)."""
    t = torch.arange(4000, dtype=torch.float64) / SR
    x = 1e-4 * (torch.sin(2 * np.pi * 440 * t) + 0.5 * torch.sin(2 * np.pi * 3000 * t + 1))
    plain = Saturator(SR, drive_db=6, unity_gain=True, oversample=1)(x)
    over = Saturator(SR, drive_db=6, unity_gain=True, oversample=factor)(x)
    middle = slice(500, 3500)
    assert float((over - plain).detach()[middle].abs().max()) < 1e-3 * float(x.abs().max())
    lag = np.argmax(np.correlate(over[middle].detach().numpy(), x[middle].numpy(), "full")) - (3000 - 1)
    assert lag == 0


@pytest.mark.parametrize("oversample", [1, 2])
def test_gradcheck_input_and_every_parameter(oversample):
    torch.manual_seed(0)
    x = (torch.randn(2, 1, 12, dtype=torch.float64) * 0.5).requires_grad_()
    params = [
        torch.tensor(v, dtype=torch.float64, requires_grad=True)
        for v in ([6.0, 18.0], [0.2, -0.5], [0.7, 1.0], [-2.0, 3.0])
    ]

    def run(x, *p):
        return functional.saturate(x, *p, oversample=oversample, unity_gain=True)

    assert torch.autograd.gradcheck(run, (x, *params))


def test_bad_options_raise():
    with pytest.raises(ValueError, match="oversample"):
        Saturator(SR, oversample=3)
    with pytest.raises(ValueError, match=r"drive_db.*0\.\.48"):
        Saturator(SR, drive_db=60)
    with pytest.raises(ValueError, match=r"mix.*0\.\.1"):
        Saturator(SR, mix=1.5)
