"""Gain: formula, shapes, batched settings, validation, gradient."""

import math

import pytest
import torch

from processors import Gain, functional


@pytest.mark.parametrize("shape", [(100,), (2, 100), (3, 2, 100)])
def test_shapes_and_formula(shape):
    x = torch.randn(shape, dtype=torch.float64)
    y = Gain(48000, gain_db=6.0)(x)
    assert y.shape == x.shape
    assert torch.allclose(y, x * 10 ** (6 / 20), rtol=1e-14)
    assert torch.allclose(functional.gain(x, 6.0), y, rtol=1e-14)


def test_bounds_are_exact():
    x = torch.ones(10, dtype=torch.float64)
    assert Gain(48000, -24).values() == {"gain_db": -24.0}
    assert torch.allclose(Gain(48000, 36)(x), x * 10 ** (36 / 20), rtol=1e-14)
    assert torch.equal(Gain(48000, 0.0)(x), x)


def test_batched_gain_and_mismatch():
    x = torch.ones(2, 1, 5, dtype=torch.float64)
    y = Gain(48000, [0.0, -20.0])(x)
    assert torch.allclose(y[:, 0, 0], torch.tensor([1.0, 0.1], dtype=torch.float64))
    with pytest.raises(ValueError, match="batch of 2"):
        Gain(48000, [0.0, -20.0])(torch.ones(3, 1, 5))
    # K = 3 crops of each of 2 settings, crop-major: item k * 2 + b takes setting b
    tiled = Gain(48000, [0.0, -20.0])(torch.ones(6, 1, 5, dtype=torch.float64))
    assert torch.allclose(tiled[:, 0, 0], torch.tensor([1.0, 0.1] * 3, dtype=torch.float64))


def test_gradient_is_exact():
    gain = Gain(48000, 3.0)
    x = torch.randn(2, 50, dtype=torch.float64)
    gain(x).sum().backward()
    # d/d(gain_db) of sum(x 10^(g/20)) = ln(10)/20 sum(y); times d(gain_db)/du
    u = gain.raw["gain_db"].detach().requires_grad_()
    gain.spec("gain_db").to_physical(u).backward()
    expected = float(x.sum()) * 10 ** (3 / 20) * math.log(10) / 20 * float(u.grad)
    assert float(gain.raw["gain_db"].grad) == pytest.approx(float(expected), rel=1e-10)


def test_bad_input_raises():
    with pytest.raises(ValueError, match=r"gain_db must be within -24\.\.36 dB"):
        Gain(48000, gain_db=40)
    with pytest.raises(ValueError, match="x contains non-finite"):
        Gain(48000)(torch.tensor([1.0, float("inf")]))
    with pytest.raises(ValueError, match="sample_rate"):
        Gain(100)
    with pytest.raises(ValueError, match="integer dtype"):
        Gain(48000)(torch.ones(5, dtype=torch.int16))
