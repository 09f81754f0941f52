"""ParamSpec mapping and the Processor base: range, exact bounds, gradients, validation, freezing."""

import pytest
import torch

from processors import Compressor, ParamSpec, Saturator

LINEAR = ParamSpec("threshold_db", "dB", -60.0, 0.0, -20.0, "linear")
LOG = ParamSpec("attack_ms", "ms", 0.1, 100.0, 5.0, "log")


@pytest.mark.parametrize("spec", [LINEAR, LOG])
def test_round_trip_and_exact_bounds(spec):
    values = torch.tensor([spec.min, spec.default, spec.max, (spec.min + spec.max) / 3], dtype=torch.float64)
    back = spec.to_physical(spec.to_unconstrained(values))
    assert torch.allclose(back, values, rtol=1e-12, atol=1e-12)
    assert float(back[0]) == spec.min and float(back[2]) == spec.max  # exact, not merely close


@pytest.mark.parametrize("spec", [LINEAR, LOG])
def test_any_unconstrained_value_maps_into_range_with_finite_gradient(spec):
    u = torch.tensor([-1e6, -50.0, -4.6, 0.0, 4.6, 50.0, 1e6], dtype=torch.float64, requires_grad=True)
    value = spec.to_physical(u)
    assert bool(((value >= spec.min) & (value <= spec.max)).all())
    value.sum().backward()
    assert bool(torch.isfinite(u.grad).all())


@pytest.mark.parametrize("spec", [LINEAR, LOG])
def test_a_value_on_a_bound_still_feels_a_gradient(spec):
    for bound in (spec.min, spec.max):
        u = spec.to_unconstrained(torch.tensor(bound, dtype=torch.float64)).requires_grad_()
        spec.to_physical(u).backward()
        assert float(u.grad) > 0


def test_spec_declaration_is_checked():
    with pytest.raises(ValueError, match="scale"):
        ParamSpec("x", "", 0, 1, 0.5, "cubic")
    with pytest.raises(ValueError, match="min"):
        ParamSpec("x", "", 1, 0, 0.5)
    with pytest.raises(ValueError, match="log"):
        ParamSpec("x", "ms", 0, 1, 0.5, "log")
    with pytest.raises(ValueError, match="default"):
        ParamSpec("x", "", 0, 1, 2)


def test_processor_values_and_validation():
    comp = Compressor(44100, threshold_db=-30, ratio=1, knee_db=0)
    values = comp.values()
    assert values["threshold_db"] == -30.0 and values["ratio"] == 1.0 and values["knee_db"] == 0.0
    assert all(type(v) is float for v in values.values())
    with pytest.raises(ValueError, match=r"has no parameter 'thresh'"):
        Compressor(44100, thresh=-3)
    with pytest.raises(ValueError, match=r"threshold_db must be within -60\.\.0 dB, got 3"):
        Compressor(44100, threshold_db=3)
    with pytest.raises(ValueError, match="attack_ms must be within"):
        comp.set_values(attack_ms=float("nan"))
    with pytest.raises(ValueError, match="ratio must be a number"):
        Compressor(44100, ratio="4")
    with pytest.raises(ValueError, match="1-D"):
        Compressor(44100, ratio=[[2.0]])


def test_set_values_batched_values_and_freeze():
    sat = Saturator(48000)
    sat.set_values(drive_db=12.5, mix=[0.5, 1.0])
    assert sat.values()["drive_db"] == 12.5 and sat.values()["mix"] == [0.5, 1.0]
    assert sat.param("mix").shape == (2,)
    sat.freeze("drive_db", "bias")
    trainable = {n for n, p in sat.named_parameters() if p.requires_grad}
    assert trainable == {"raw.mix", "raw.output_db"}
    sat.set_values(drive_db=3.0)
    assert not sat.raw["drive_db"].requires_grad  # set_values keeps the freeze
    sat.unfreeze()
    assert all(p.requires_grad for p in sat.parameters())
    with pytest.raises(ValueError, match="no parameter 'gain_db'"):
        sat.freeze("gain_db")
    with pytest.raises(ValueError, match="disagree"):
        Saturator(48000, drive_db=[1.0, 2.0], bias=[0.0, 0.1, 0.2]).forward(torch.zeros(2, 1, 10))


def test_an_optimiser_never_leaves_the_range():
    comp = Compressor(44100, ratio=19.5, threshold_db=-59)
    optimiser = torch.optim.SGD([p for p in comp.parameters() if p.requires_grad], lr=1e3)
    for _ in range(3):
        optimiser.zero_grad()
        loss = -comp.param("ratio") + comp.param("threshold_db")  # pushes both out of range
        loss.backward()
        optimiser.step()
    values = comp.values()
    assert 1 <= values["ratio"] <= 20 and -60 <= values["threshold_db"] <= 0


def test_spec_of_looks_parameters_up_by_name():
    from processors import Gain, Limiter

    assert Limiter.spec_of("release_ms").min == 1.0 and Gain.spec_of("gain_db").max == 36.0
    with pytest.raises(ValueError, match="Limiter has no parameter 'release'"):
        Limiter.spec_of("release")
