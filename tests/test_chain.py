"""Chain: order, unique dotted names, the Processor interface with dotted names."""

import pytest
import torch

from processors import Chain, Compressor, Gain, Limiter, Saturator


def mastering_chain(sr=44100):
    return Chain([Gain(sr, 6.0), Compressor(sr), Saturator(sr), Limiter(sr)])


def test_names_values_and_indexing():
    chain = mastering_chain()
    assert list(chain.stages) == ["gain", "compressor", "saturator", "limiter"]
    assert isinstance(chain["limiter"], Limiter)
    values = chain.values()
    assert values["gain.gain_db"] == 6.0 and values["compressor.ratio"] == 4.0
    assert [s.name for s in chain.specs] == list(values)
    twice = Chain([Gain(44100), Gain(44100, 3), Gain(44100, -3)])
    assert list(twice.stages) == ["gain", "gain_2", "gain_3"]
    named = Chain({"drive": Gain(44100, 12), "ceiling": Limiter(44100)})
    assert named.values()["drive.gain_db"] == 12.0
    with pytest.raises(KeyError, match="no processor"):
        chain["eq"]


def test_forward_is_the_stages_in_order():
    x = torch.randn(2, 2, 3000, dtype=torch.float64) * 0.3
    chain = mastering_chain()
    expected = x
    for _, stage in chain:
        expected = stage(expected)
    assert torch.allclose(chain(x), expected, atol=1e-12)
    assert chain(x[0]).shape == (2, 3000) and chain(x[0, 0]).shape == (3000,)


def test_set_values_freeze_and_param_with_dotted_names():
    chain = mastering_chain()
    chain.set_values(**{"compressor.threshold_db": -30, "limiter.ceiling_db": -2})
    assert chain.values()["compressor.threshold_db"] == -30.0
    assert float(chain.param("limiter.ceiling_db").detach()) == -2.0
    chain.freeze("compressor.ratio")
    assert not chain["compressor"].raw["ratio"].requires_grad
    chain.unfreeze("compressor.ratio")
    assert chain["compressor"].raw["ratio"].requires_grad
    chain.freeze()
    assert not any(p.requires_grad for p in chain.parameters())
    with pytest.raises(ValueError, match="unknown chain parameter 'compressor.gain_db'|no parameter"):
        chain.set_values(**{"compressor.gain_db": 1.0})
    with pytest.raises(ValueError, match="unknown chain parameter"):
        chain.freeze("eq.gain_db")
    with pytest.raises(ValueError, match=r"ratio must be within 1\.\.20"):
        chain.set_values(**{"compressor.ratio": 50})


def test_optimising_the_chain_moves_only_unfrozen_parameters():
    chain = mastering_chain()
    chain.freeze("gain.gain_db")
    x = torch.randn(1, 2, 4000) * 0.2
    params = [p for p in chain.parameters() if p.requires_grad]
    optimiser = torch.optim.Adam(params, lr=0.1)
    before = chain.values()
    for _ in range(2):
        optimiser.zero_grad()
        (chain(x) - 0.5 * x).pow(2).mean().backward()
        optimiser.step()
    after = chain.values()
    assert after["gain.gain_db"] == before["gain.gain_db"]
    assert after["saturator.drive_db"] != before["saturator.drive_db"]
    for spec in chain.specs:
        assert spec.min <= after[spec.name] <= spec.max


def test_construction_errors():
    with pytest.raises(ValueError, match="sample_rate"):
        Chain([Gain(44100), Gain(48000)])
    with pytest.raises(ValueError, match="not a processors.Processor"):
        Chain([Gain(44100), torch.nn.Identity()])
    with pytest.raises(ValueError, match="at least one"):
        Chain([])


def test_spec_follows_a_dotted_name_to_its_stage():
    from processors import Chain, Gain, Limiter

    chain = Chain([Gain(44100), Limiter(44100)])
    assert chain.spec("limiter.ceiling_db") == chain["limiter"].spec("ceiling_db")
    with pytest.raises(ValueError, match="no parameter 'drive_db'"):
        chain.spec("limiter.drive_db")
    with pytest.raises(ValueError, match="unknown chain parameter"):
        chain.spec("saturator.mix")
