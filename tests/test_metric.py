"""DRL metric and loss: agreement with distortion-residual 0.1.0, invariances, floor, gradients, bad input."""

import math

import numpy as np
import pytest
import torch
from distortion_residual import DRL as OriginalDRL
from hypothesis import given, settings
from hypothesis import strategies as st

import drl
from drl import DRL, band_drl_db, drl_db, drl_ratio

KEYS = {
    "total_drl_db",
    "total_drl_percent",
    "total_drl_ratio",
    "channel_drl_db",
    "channel_drl_percent",
    "channel_drl_ratio",
    "band_drl_db",
    "band_drl_percent",
    "residual",
    "residual_rms",
    "signal_rms",
}


def noise(*shape, seed=0, dtype=torch.float32, scale=0.2):
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=generator, dtype=torch.float64) * scale).to(dtype)


def sine(freq_hz=440.0, n=44100, sample_rate=44100, phase=0.0, dtype=torch.float64):
    t = torch.arange(n, dtype=torch.float64) / sample_rate
    return torch.sin(2 * math.pi * freq_hz * t + phase).to(dtype)


def reference_drl_db(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Float64 DRL per channel straight from the definition."""
    x = x.astype(np.float64)
    y = y.astype(np.float64)
    gain = (x * y).sum(-1, keepdims=True) / (x * x).sum(-1, keepdims=True)
    d = y - gain * x
    return 10 * np.log10((d * d).sum(-1) / ((gain * x) ** 2).sum(-1))


DISTORTIONS = {
    "tanh": lambda x: torch.tanh(4 * x) / 4,
    "hard_clip": lambda x: x.clamp(-0.25, 0.25),
    "quantise": lambda x: torch.round(x * 64) / 64,
    "cubic": lambda x: x - 0.3 * x**3,
    "asymmetric": lambda x: torch.where(x > 0, x, 0.5 * x),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", sorted(DISTORTIONS))
@pytest.mark.parametrize("shape", [(8000,), (2, 8000), (3, 2, 8000)])
def test_broadband_matches_distortion_residual(name, shape, dtype):
    x = noise(*shape, seed=len(shape), dtype=dtype)
    y = DISTORTIONS[name](x)
    ours = DRL(frequency_bands=None)(x, y)
    original = OriginalDRL(frequency_bands=None, device=torch.device("cpu"))(x, y)
    for key in ("total_drl_db", "channel_drl_db"):
        assert ours[key].shape == original[key].shape
        torch.testing.assert_close(ours[key].double(), original[key].double(), rtol=0, atol=1e-4)
    for key in ("total_drl_percent", "channel_drl_percent", "residual_rms", "signal_rms"):
        torch.testing.assert_close(ours[key].double(), original[key].double(), rtol=1e-4, atol=1e-9)
    torch.testing.assert_close(ours["residual"], original["residual"], rtol=1e-5, atol=1e-6)
    expected = reference_drl_db(x.numpy(), y.numpy())
    np.testing.assert_allclose(drl_db(x, y).double().numpy(), expected, atol=1e-4)


@pytest.mark.parametrize("shape, channel_shape", [((4000,), ()), ((2, 4000), (2,)), ((3, 2, 4000), (3, 2))])
def test_output_contract(shape, channel_shape):
    x = noise(*shape)
    y = torch.tanh(3 * x)
    result = DRL()(x, y)
    assert set(result) == KEYS
    for key in ("total_drl_db", "total_drl_percent", "total_drl_ratio"):
        assert result[key].shape == ()
    for key in ("channel_drl_db", "channel_drl_percent", "channel_drl_ratio", "residual_rms", "signal_rms"):
        assert result[key].shape == channel_shape
    assert result["residual"].shape == shape
    assert list(result["band_drl_db"]) == ["20_200", "200_2000", "2000_20000"]
    assert list(result["band_drl_percent"]) == ["20_200", "200_2000", "2000_20000"]
    for value in result["band_drl_db"].values():
        assert value.shape == ()
    torch.testing.assert_close(result["total_drl_db"], result["channel_drl_db"].mean())
    torch.testing.assert_close(result["total_drl_percent"], (100 * 10 ** (result["channel_drl_db"] / 20)).mean())
    torch.testing.assert_close(result["channel_drl_ratio"], 10 ** (result["channel_drl_db"] / 10))
    torch.testing.assert_close(result["total_drl_ratio"], result["channel_drl_ratio"].mean())
    assert set(DRL(frequency_bands=None)(x, y)["band_drl_db"]) == set()


def test_per_channel_level_matching_and_percent():
    x = noise(2, 6000)
    y = torch.stack([0.5 * x[0], -2.0 * torch.tanh(3 * x[1])])
    result = DRL(frequency_bands=None)(x, y)
    assert result["channel_drl_db"][0] < -80
    assert -40 < result["channel_drl_db"][1] < -10
    percent = 100 * result["residual_rms"][1] / result["signal_rms"][1]
    torch.testing.assert_close(result["channel_drl_percent"][1], percent, rtol=1e-4, atol=0)
    assert float(result["channel_drl_percent"][0]) < 1e-3  # an exact null reads the floor, 1e-4 %


@pytest.mark.parametrize("gain", [1.0, 0.5, 3.0, 1e-3, -1.0, -0.25])
def test_gain_and_polarity_read_below_minus_80_db(gain):
    x = noise(2, 44100)
    values = drl_db(x, gain * x)
    assert bool((values < -80).all()), values
    assert bool((values >= -120.0 - 1e-3).all())


def test_identical_signals_read_the_floor_with_finite_gradients():
    x = noise(2, 4000, dtype=torch.float64)
    y = x.clone().requires_grad_(True)
    value = DRL()(x, y)["total_drl_db"]
    assert float(value.detach()) == pytest.approx(-120.0, abs=1e-6)
    value.backward()
    assert torch.isfinite(y.grad).all()
    for floor in (-60.0, -200.0):
        assert float(drl_db(x, x, floor_db=floor).mean()) == pytest.approx(floor, abs=1e-6)


def test_orthogonal_signals_read_minus_floor():
    x = sine(100.0, n=44100)
    y = sine(100.0, n=44100, phase=math.pi / 2)
    assert float(drl_db(x, y)) == pytest.approx(120.0, abs=0.5)


@pytest.mark.parametrize("degrees", [1.0, 10.0, 45.0, 80.0])
def test_phase_shift_reads_tangent_of_the_angle(degrees):
    # Whole periods: a sine shifted by phi makes the angle phi with the original, so DRL = 20 log10 tan(phi).
    x = sine(441.0, n=44100)
    y = sine(441.0, n=44100, phase=math.radians(degrees))
    assert float(drl_db(x, y)) == pytest.approx(20 * math.log10(math.tan(math.radians(degrees))), abs=1e-6)


def test_symmetric_and_scale_invariant():
    x = noise(2, 5000, dtype=torch.float64)
    y = torch.tanh(3 * x) + 0.01 * noise(2, 5000, seed=1, dtype=torch.float64)
    base = drl_db(x, y)
    torch.testing.assert_close(drl_db(y, x), base)
    torch.testing.assert_close(drl_db(1e-4 * x, 30 * y), base)
    torch.testing.assert_close(drl_db(x.float(), y.float()).double(), base, rtol=0, atol=1e-4)


@settings(max_examples=25, deadline=None)
@given(
    gain=st.floats(min_value=1e-3, max_value=1e3) | st.floats(min_value=-1e3, max_value=-1e-3),
    seed=st.integers(0, 2**16),
)
def test_property_gain_never_changes_drl(gain, seed):
    x = noise(1, 512, seed=seed, dtype=torch.float64)
    y = x + 0.1 * noise(1, 512, seed=seed + 1, dtype=torch.float64)
    torch.testing.assert_close(drl_db(x, gain * y), drl_db(x, y), rtol=0, atol=1e-9)


def test_harder_clipping_reads_higher_and_soft_reads_lower_than_hard():
    x = sine(440.0)
    readings = [float(drl_db(x, x.clamp(-t, t))) for t in (0.9, 0.7, 0.5, 0.3)]
    assert readings == sorted(readings)
    for t in (0.5, 0.3):
        assert float(drl_db(x, t * torch.tanh(x / t))) < float(drl_db(x, x.clamp(-t, t))) - 1.0
        original = OriginalDRL(frequency_bands=None, device=torch.device("cpu"))
        assert float(original(x, t * torch.tanh(x / t))["total_drl_db"]) < float(
            original(x, x.clamp(-t, t))["total_drl_db"]
        )


def test_gradients_reach_upstream_parameters():
    x = noise(2, 3, 4000)
    drive = torch.tensor(2.0, requires_grad=True)
    y = torch.tanh(drive * x) / drive
    loss = DRL()(x, y)["total_drl_db"]
    loss.backward()
    assert torch.isfinite(drive.grad) and float(drive.grad) > 0  # more drive, more distortion

    processed = torch.tanh(2 * x).requires_grad_(True)
    bands = band_drl_db(x, processed, 44100, drl.DEFAULT_BANDS)
    bands.sum().backward()
    assert torch.isfinite(processed.grad).all() and processed.grad.abs().sum() > 0


def test_ratio_is_the_energy_ratio_of_the_definition():
    x = noise(3, 2, 6000, dtype=torch.float64)
    y = torch.tanh(4 * x) / 4
    expected = 10 ** (reference_drl_db(x.numpy(), y.numpy()) / 10)
    np.testing.assert_allclose(drl_ratio(x, y).numpy(), expected, rtol=1e-9)
    assert drl_ratio(x.float(), y.float()).dtype == torch.float32
    assert float(drl_ratio(x, x).max()) == pytest.approx(1e-12, rel=1e-6)  # the floor, as a ratio
    assert float(drl_ratio(x, x, floor_db=-40).max()) == pytest.approx(1e-4, rel=1e-6)


def test_gradcheck_broadband_and_bands():
    x = noise(1, 64, dtype=torch.float64)
    y = (torch.tanh(3 * x) / 3).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda p: drl_db(x, p), (y,))
    assert torch.autograd.gradcheck(lambda p: drl_ratio(x, p), (y,))
    assert torch.autograd.gradcheck(lambda p: DRL(8000, None)(x, p)["total_drl_ratio"], (y,))
    assert torch.autograd.gradcheck(lambda p: band_drl_db(x, p, 8000, [(0, 1000), (1000, 4000)]), (y,))


def test_half_precision_is_computed_in_float32():
    x = noise(2, 8000, dtype=torch.float16)
    y = torch.tanh(3 * x.float()).half()
    result = DRL()(x, y)
    assert result["total_drl_db"].dtype == torch.float32
    expected = DRL()(x.float(), y.float())
    torch.testing.assert_close(result["total_drl_db"], expected["total_drl_db"])
    assert drl_db(x, y).dtype == torch.float32


def test_module_settings_are_checked():
    with pytest.raises(ValueError, match="Nyquist"):
        DRL(sample_rate=32000, frequency_bands=[(2000, 20000)])
    with pytest.raises(ValueError, match="sample_rate"):
        DRL(sample_rate=1000)
    with pytest.raises(ValueError, match="floor_db"):
        DRL(floor_db=0.0)
    with pytest.raises(ValueError, match="max_delay_ms"):
        DRL(align=True, max_delay_ms=-1.0)
    assert DRL(sample_rate=32000, frequency_bands=[(20, 200), (200, 16000)]).frequency_bands == [
        (20.0, 200.0),
        (200.0, 16000.0),
    ]


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize("which", ["reference", "processed"])
def test_non_finite_input_names_the_input(bad, which):
    x = noise(2, 1000)
    y = x.clone()
    (x if which == "reference" else y)[1, 10] = bad
    with pytest.raises(ValueError, match=which):
        DRL()(x, y)
    with pytest.raises(ValueError, match=which):
        drl_db(x, y)


def test_bad_shapes_and_silence():
    x = noise(2, 1000)
    with pytest.raises(ValueError, match="reference is silent"):
        DRL()(torch.zeros(2, 1000), x)
    with pytest.raises(ValueError, match="reference is silent in 1 channel"):
        drl_db(torch.stack([x[0], torch.zeros(1000)]), x)
    with pytest.raises(ValueError, match="processed is silent"):
        drl_db(x, torch.zeros(2, 1000))
    with pytest.raises(ValueError, match="channel layout"):
        DRL()(x, x[:1])
    with pytest.raises(ValueError, match="1000 samples but processed has 900"):
        DRL()(x, x[:, :900])
    with pytest.raises(ValueError, match="shape"):
        drl_db(x[None, None], x[None, None])
    with pytest.raises(ValueError, match="integer"):
        drl_db(torch.ones(1000, dtype=torch.int16), torch.ones(1000, dtype=torch.int16))
    with pytest.raises(ValueError, match="torch.Tensor"):
        drl_db(x.numpy(), x)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    x = noise(2, 2, 44100)
    y = torch.tanh(3 * x)
    for options in ({"align": True}, {"frame_ms": 50.0}, {"linear_taps": 512}):
        metric = DRL(**options)
        cpu = metric(x, y)
        processed = y.cuda().requires_grad_(True)
        gpu = metric(x.cuda(), processed)
        gpu["total_drl_db"].backward()
        assert torch.isfinite(processed.grad).all()
        for key, value in cpu.items():
            if key.startswith("band"):
                for band in value:
                    torch.testing.assert_close(gpu[key][band].cpu(), value[band], rtol=1e-3, atol=1e-3)
            elif key != "residual":
                torch.testing.assert_close(gpu[key].cpu().to(value.dtype), value, rtol=1e-3, atol=1e-3)


def test_check_number_names_the_value_its_range_and_unit():
    from drl.checks import check_number

    assert check_number("x", 3, 1, 5) == 3.0 and check_number("n", 4.0, 1, integer=True) == 4
    for value in (True, "3", None, 0.5, 6, float("inf")):
        with pytest.raises(ValueError, match="^x must be a"):
            check_number("x", value, 1, 5, unit="ms")
    with pytest.raises(ValueError, match=r"x must be a number within \(0, 1\] ms, got 0"):
        check_number("x", 0, 0, 1, unit="ms", low_open=True)
    with pytest.raises(ValueError, match="x must be a finite number >= 0, got nan"):
        check_number("x", float("nan"), 0)
    with pytest.raises(ValueError, match="n must be a whole number >= 1, got 2.5"):
        check_number("n", 2.5, 1, integer=True)
