"""help() shows real docstrings: shapes, units, and each parameter's declared range, generated from the specs."""

import inspect

import pytest
import torch
from drl_test_signals import music
from torch import nn

import drl
import processors
from processors import Compressor, Processor
from processors import functional as Fn
from processors.params import ParamSpec

EFFECTS = [processors.Gain, processors.Saturator, processors.Compressor, processors.Limiter, processors.Subsonic]
MODULES = sorted(
    {
        obj
        for package in (drl, processors)
        for obj in (getattr(package, name) for name in package.__all__)
        if inspect.isclass(obj) and issubclass(obj, nn.Module)
    },
    key=lambda cls: cls.__name__,
)


@pytest.mark.parametrize("cls", MODULES, ids=lambda cls: cls.__name__)
def test_no_module_shows_torch_generic_docstrings(cls):
    for method, generic in (("__init__", nn.Module.__init__), ("forward", nn.Module.forward)):
        doc = inspect.getdoc(getattr(cls, method))
        assert doc and doc != inspect.getdoc(generic), f"{cls.__name__}.{method}"


def test_compressor_init_lists_the_threshold_and_its_range():
    doc = Compressor.__init__.__doc__
    assert "threshold_db: -60..0 dB, default -20" in doc
    assert "ratio: 1..20 :1, log scale" in doc
    assert "sample_rate: in Hz, a whole number in 8000..384000" in doc


@pytest.mark.parametrize("cls", EFFECTS, ids=lambda cls: cls.__name__)
def test_every_declared_parameter_and_its_range_is_documented(cls):
    for doc in (cls.__doc__, cls.__init__.__doc__, inspect.getdoc(cls.__init__)):
        for spec in cls.specs:
            line = next(line.strip() for line in doc.splitlines() if line.strip().startswith(f"{spec.name}:"))
            assert f"{spec.min:g}..{spec.max:g} {spec.unit}".rstrip() in line
            assert f"default {spec.default:g}" in line
            assert ("log scale" in line) == (spec.scale == "log")


def test_the_documentation_follows_the_specs():
    class Tremolo(Processor):
        """Amplitude modulation."""

        specs = (ParamSpec("depth_db", "dB", 0.0, 12.5, 3.0), ParamSpec("rate_hz", "Hz", 0.1, 20.0, 5.0, "log"))

        def __init__(self, sample_rate, depth_db=3.0, rate_hz=5.0):
            """``shape`` is fixed: a sine."""
            super().__init__(sample_rate, depth_db=depth_db, rate_hz=rate_hz)

    for doc in (Tremolo.__doc__, Tremolo.__init__.__doc__):
        assert "depth_db: 0..12.5 dB, default 3" in doc
        assert "rate_hz: 0.1..20 Hz, log scale, default 5" in doc
    assert Tremolo.__doc__.startswith("Amplitude modulation.")
    assert Tremolo.__init__.__doc__.endswith("``shape`` is fixed: a sine.")


def test_options_are_documented_with_their_choices():
    assert all(f"{factor}" in processors.Saturator.__init__.__doc__ for factor in Fn.OVERSAMPLE_FACTORS)
    assert all(f'"{name}"' in Compressor.__init__.__doc__ for name in Fn.DETECTORS)
    low, high = Fn.SUBSONIC_CUTOFF_RANGE_HZ
    assert f"{low:g}..{high:g} Hz" in processors.Subsonic.__init__.__doc__
    for option in ("true_peak", "stereo_link", "slow_release_ms"):
        assert option in processors.Limiter.__init__.__doc__


def test_drl_documents_every_argument_and_every_key():
    init_doc = inspect.getdoc(drl.DRL.__init__)
    for name in inspect.signature(drl.DRL.__init__).parameters:
        if name != "self":
            assert f"{name}:" in init_doc
    assert "8000..384000" in init_doc and "-300..0 dB" in init_doc
    x = torch.tensor(music(0.2, channels=2))
    result = drl.DRL(44100, align=True, frame_ms=50, linear_taps=8, nmr=True)(x, torch.tanh(2 * x))  # every key
    forward_doc = inspect.getdoc(drl.DRL.forward)
    for key in result:
        assert f"``{key}``" in forward_doc, key
    assert "(B, C, T)" in forward_doc
