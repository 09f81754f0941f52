"""Limiter: the brickwall guarantee (sample and true peak), transparency below the ceiling, ramps, release."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from drl import true_peak
from processors import Limiter, functional

SR = 44100


def music_like(seconds, channels=2, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    beat = (t % 0.5) / 0.5
    kick = np.sin(2 * np.pi * 55 * t * (1 + 0.5 * np.exp(-beat * 20))) * np.exp(-beat * 8)
    chord = sum(np.sin(2 * np.pi * f * t + p) for f, p in zip((220, 277.2, 329.6, 3520), rng.random(4) * 6))
    chord *= 0.15 * (1.2 + np.sin(2 * np.pi * 0.3 * t))
    hats = rng.standard_normal((channels, t.size)) * np.exp(-((t % 0.25) / 0.25) * 30) * 0.3
    out = kick + chord + hats
    return out / np.abs(out).max()


def db(v):
    return 10 ** (v / 20)


@settings(max_examples=40, deadline=None)
@given(
    x=arrays(np.float64, st.integers(1, 300), elements=st.floats(-100, 100, allow_subnormal=False)),
    ceiling_db=st.floats(-24, 0),
    release_ms=st.floats(1, 1000),
    lookahead_ms=st.floats(0.5, 20),
    slow=st.one_of(st.none(), st.floats(50, 5000)),
    float32=st.booleans(),
)
def test_never_exceeds_ceiling(x, ceiling_db, release_ms, lookahead_ms, slow, float32):
    audio = torch.tensor(x, dtype=torch.float32 if float32 else torch.float64)
    lim = Limiter(8000, ceiling_db=ceiling_db, release_ms=release_ms, lookahead_ms=lookahead_ms, slow_release_ms=slow)
    y = lim(audio)
    assert y.shape == audio.shape
    assert float(y.detach().abs().max()) <= db(ceiling_db) * (1 + 1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_music_driven_20_db_over_the_ceiling(dtype):
    x = torch.tensor(music_like(3.0), dtype=dtype) * db(20 - 3)
    for lim in (
        Limiter(SR, ceiling_db=-3, release_ms=30, lookahead_ms=2),
        Limiter(SR, ceiling_db=-3, release_ms=5, lookahead_ms=8, slow_release_ms=400),
    ):
        y = lim(x)
        assert float(y.detach().abs().max()) <= db(-3) * (1 + 1e-6)
        assert float(y.detach().abs().max()) > db(-3) * 0.99  # it limits to the ceiling, not far below


def test_true_peak_mode_keeps_true_peak_under_the_ceiling():
    x = torch.tensor(music_like(3.0, seed=1), dtype=torch.float32) * db(12 - 1)
    assert float(true_peak(x, SR).max()) > 10.0
    y = Limiter(SR, ceiling_db=-1, release_ms=50, lookahead_ms=5, true_peak=True)(x)
    assert float(true_peak(y.detach(), SR).max()) <= -1 + 0.1


def test_below_the_ceiling_passes_unchanged():
    x = torch.tensor(music_like(1.0, seed=2)) * db(-6 - 1.0001)
    for lim in (Limiter(SR, ceiling_db=-6), Limiter(SR, ceiling_db=-6, slow_release_ms=1000, true_peak=True)):
        gain = lim(x).detach() / torch.where(x == 0, torch.ones_like(x), x)
        assert float((gain - 1).abs().max()) <= 1e-6
        assert float(lim.gain_reduction_db(x).detach().max()) <= 1e-5


def test_gain_ramps_down_ahead_of_a_peak_and_releases():
    x = torch.full((1, 4000), 0.1, dtype=torch.float64)
    x[0, 1000] = 2.0
    lim = Limiter(SR, ceiling_db=0, release_ms=5, lookahead_ms=1)  # 44 samples
    window = 44
    gain = 10 ** (-lim.gain_reduction_db(x).detach()[0] / 20)
    assert float(gain[1000]) == pytest.approx(0.5, abs=1e-12)  # exactly the required gain at the peak
    assert float(gain[1000 - window]) == pytest.approx(1.0, abs=1e-12)  # untouched before the window
    steps = gain[1000 - window : 1001].diff()
    assert torch.allclose(steps, torch.full_like(steps, -0.5 / window), atol=1e-12)  # a linear ramp, no step
    after = gain[1001:]
    assert bool((after.diff() >= -1e-15).all()) and float(after[-1]) > 0.999  # recovers towards 1
    # release governs from the peak on (the averaged ramp would rise faster): 1 - g falls by e per time constant
    tau = int(0.005 * SR)
    assert 0.2 < float((1 - gain[1000 + window + tau]) / (1 - gain[1000 + window])) < 0.5


def test_slow_stage_holds_sustained_overs_but_not_transients():
    t = torch.arange(SR * 2, dtype=torch.float64) / SR
    tone = 0.2 * torch.sin(2 * np.pi * 100 * t)
    transient, sustained = tone.clone(), tone.clone()
    transient[SR // 2 : SR // 2 + 50] *= 8  # about 1 ms over
    sustained[:SR] *= 8  # one second over
    fast = Limiter(SR, ceiling_db=-6, release_ms=20)
    dual = Limiter(SR, ceiling_db=-6, release_ms=20, slow_release_ms=1000)
    after_transient = SR // 2 + 50 + int(0.2 * SR)
    after_sustained = SR + int(0.2 * SR)
    gr_t = dual.gain_reduction_db(transient).detach()[after_transient]
    gr_s_fast = fast.gain_reduction_db(sustained).detach()[after_sustained]
    gr_s_dual = dual.gain_reduction_db(sustained).detach()[after_sustained]
    assert float(gr_t) < 0.2  # the transient (10 dB of reduction) has all but recovered 200 ms later
    assert float(gr_s_fast) < 0.01 and float(gr_s_dual) > 2.0  # the sustained over still held down


def test_gradients_reach_input_ceiling_and_releases():
    x = (torch.tensor(music_like(0.2, seed=3)) * 2.0).requires_grad_()
    lim = Limiter(SR, ceiling_db=-3, release_ms=20, lookahead_ms=2, slow_release_ms=200)
    (lim(x) ** 2).sum().backward()
    assert bool(torch.isfinite(x.grad).all()) and float(x.grad.abs().sum()) > 0
    for name in ("ceiling_db", "release_ms", "slow_release_ms"):
        grad = lim.raw[name].grad
        assert grad is not None and bool(torch.isfinite(grad)) and float(grad.abs()) > 0, name


def test_gradcheck_input_ceiling_releases():
    torch.manual_seed(2)
    x = (torch.randn(2, 2, 30, dtype=torch.float64)).requires_grad_()
    ceiling = torch.tensor([-3.0, -6.0], dtype=torch.float64, requires_grad=True)
    release = torch.tensor([0.3, 1.0], dtype=torch.float64, requires_grad=True)
    slow = torch.tensor([2.0, 3.0], dtype=torch.float64, requires_grad=True)

    def run(x, c, r, s):
        return functional.limit(x, 8000, c, r, 0.5, s)

    assert torch.autograd.gradcheck(run, (x, ceiling, release, slow))


def test_silence_and_loud_input():
    silence = torch.zeros(2, 1000, requires_grad=True)
    lim = Limiter(SR, slow_release_ms=300)
    y = lim(silence)
    assert torch.equal(y, torch.zeros_like(y))
    y.sum().backward()
    assert bool(torch.isfinite(silence.grad).all())
    assert all(bool(torch.isfinite(p.grad).all()) for p in lim.parameters() if p.grad is not None)
    loud = torch.randn(2, 3000) * 100
    y = Limiter(SR, ceiling_db=-1, true_peak=True)(loud)
    assert bool(torch.isfinite(y).all()) and float(y.detach().abs().max()) <= db(-1) * (1 + 1e-6)


def test_options_and_validation():
    lim = Limiter(SR)
    assert set(lim.values()) == {"ceiling_db", "release_ms", "lookahead_ms"}
    assert not lim.raw["lookahead_ms"].requires_grad
    assert "slow_release_ms" in Limiter(SR, slow_release_ms=500).values()
    with pytest.raises(ValueError, match=r"ceiling_db.*-24\.\.0"):
        Limiter(SR, ceiling_db=1.0)
    with pytest.raises(ValueError, match="slow_release_ms"):
        Limiter(SR, slow_release_ms=10)
    x = torch.randn(2, 3, 500) * 3
    unlinked = Limiter(SR, stereo_link=False)
    assert unlinked.gain_reduction_db(x).shape == x.shape
    assert Limiter(SR).gain_reduction_db(x).shape == (2, 1, 500)
    y = Limiter(SR, ceiling_db=[-1.0, -12.0])(x)
    assert float(y[1].detach().abs().max()) <= db(-12) * (1 + 1e-6) < float(y[0].detach().abs().max())


@pytest.mark.parametrize("stereo_link", [True, False])
def test_fused_path_renders_what_the_gain_path_renders(stereo_link):
    # limit_bct fuses the sample-peak limiter on the CPU; gain_reduction_db and the tuning shortcut use the gain
    x = torch.tensor(music_like(0.3, seed=4)).float()[None] * 3.0
    lim = Limiter(SR, ceiling_db=-2, release_ms=30, lookahead_ms=3, stereo_link=stereo_link)
    gain = functional.limiter_gain_bct(x, *lim._batched_params(x).values(), sample_rate=SR, stereo_link=stereo_link)
    assert torch.equal(lim(x), x * gain)
