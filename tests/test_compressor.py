"""Compressor: the 5 steps of its model against a float64 per-sample loop, exact gradients, edge cases."""

import math

import numpy as np
import pytest
import torch

from processors import Compressor, functional

SR = 44100


def music_like(seconds, sample_rate=SR, channels=2, seed=0):
    """Kick-like decaying low tones, a slowly swelling chord and hi-hat-like noise bursts, peak about 0.9."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    beat = (t % 0.5) / 0.5
    kick = np.sin(2 * np.pi * 55 * t * (1 + 0.5 * np.exp(-beat * 20))) * np.exp(-beat * 8)
    chord = sum(np.sin(2 * np.pi * f * t + p) for f, p in zip((220, 277.2, 329.6), rng.random(3) * 6))
    chord *= 0.15 * (1.2 + np.sin(2 * np.pi * 0.3 * t))
    hats = rng.standard_normal((channels, t.size)) * np.exp(-((t % 0.25) / 0.25) * 30) * 0.2
    out = kick + chord + hats
    out *= np.linspace(0.3, 1.0, channels)[:, None] if channels > 1 else 1.0
    return out / np.abs(out).max() * 0.9


def reference_gain_db(x, sr, threshold, ratio, knee, attack_ms, release_ms, makeup, detector="peak", rms_ms=10.0):
    """Steps 1-5 of the model, one sample at a time, float64. x: (C, T) linked (max over channels)."""
    a_att = math.exp(-1 / (attack_ms / 1000 * sr))
    a_rel = math.exp(-1 / (release_ms / 1000 * sr))
    a_rms = math.exp(-1 / (rms_ms / 1000 * sr))
    channels = [row.tolist() for row in x]
    ms = [0.0] * len(channels)
    s, out = 0.0, []
    for n in range(len(channels[0])):
        level = -math.inf
        for c, row in enumerate(channels):
            if detector == "peak":
                lc = 20 * math.log10(abs(row[n]) + 1e-12)
            else:
                ms[c] = a_rms * ms[c] + (1 - a_rms) * row[n] * row[n]
                lc = 10 * math.log10(ms[c] + 1e-24)
            level = max(level, lc)
        if 2 * (level - threshold) < -knee:
            y = level
        elif 2 * abs(level - threshold) <= knee:
            y = level + (1 / ratio - 1) * (level - threshold + knee / 2) ** 2 / (2 * knee)
        else:
            y = threshold + (level - threshold) / ratio
        r = level - y
        a = a_att if r > s else a_rel
        s = a * s + (1 - a) * r
        out.append(makeup - s)
    return np.array(out)


@pytest.fixture(scope="module")
def music():
    return music_like(10.0)


@pytest.mark.parametrize(
    "settings",
    [
        dict(threshold_db=-20, ratio=4, knee_db=6, attack_ms=5, release_ms=100, makeup_db=3),
        dict(threshold_db=-30, ratio=20, knee_db=0, attack_ms=0.1, release_ms=5, makeup_db=0),
        dict(threshold_db=-10, ratio=1, knee_db=24, attack_ms=100, release_ms=2000, makeup_db=-12),
        dict(
            threshold_db=-25, ratio=3, knee_db=10, attack_ms=10, release_ms=300, makeup_db=6, detector="rms", rms_ms=20
        ),
    ],
)
def test_matches_per_sample_reference(music, settings):
    x = torch.tensor(music)
    options = {k: settings.pop(k) for k in ("detector", "rms_ms") if k in settings}
    comp = Compressor(SR, **settings, **options)
    y = comp(x).detach().numpy()
    ref = reference_gain_db(
        music,
        SR,
        settings["threshold_db"],
        settings["ratio"],
        settings["knee_db"],
        settings["attack_ms"],
        settings["release_ms"],
        settings["makeup_db"],
        **options,
    )
    nonzero = np.abs(music) > 1e-9
    gain_db = 20 * np.log10(np.abs(y[nonzero] / music[nonzero]))
    assert np.abs(gain_db - np.broadcast_to(ref, music.shape)[nonzero]).max() < 1e-4
    assert (comp.gain_reduction_db(x).detach().numpy() >= -1e-12).all()


def test_unlinked_channels_are_independent():
    x = torch.tensor(music_like(0.3, seed=3))
    comp = Compressor(SR, threshold_db=-30, ratio=5, stereo_link=False)
    y = comp(x)
    for c in range(2):
        assert torch.allclose(y[c], Compressor(SR, threshold_db=-30, ratio=5)(x[c]), atol=1e-12)
    assert comp.gain_reduction_db(x).shape == x.shape
    assert Compressor(SR).gain_reduction_db(x).shape == (1, x.shape[-1])


def test_float32_matches_float64():
    x = torch.tensor(music_like(1.0, seed=4))
    comp = Compressor(SR, threshold_db=-30, ratio=8, knee_db=3, attack_ms=1, release_ms=50)
    y32, y64 = comp(x.float()), comp(x)
    assert y32.dtype == torch.float32
    assert torch.allclose(y32.double(), y64, atol=1e-5)


@pytest.mark.parametrize("knee_db,detector", [(0.0, "peak"), (6.0, "peak"), (4.0, "rms")])
def test_gradcheck_input_and_every_parameter(knee_db, detector):
    torch.manual_seed(1)
    x = (torch.randn(2, 2, 20, dtype=torch.float64) * 0.5).requires_grad_()
    names = ["threshold_db", "ratio", "knee_db", "attack_ms", "release_ms", "makeup_db", "rms_ms"]
    values = [-12.0, 4.0, knee_db, 0.05, 0.3, 2.0, 0.4]  # short times: 20 samples still show ballistics
    params = [torch.tensor([v, v * 1.1 if v else 0.0], dtype=torch.float64, requires_grad=True) for v in values]

    def run(x, *p):
        kwargs = dict(zip(names, p))
        return functional.compress(x, 8000, detector=detector, **kwargs)

    assert torch.autograd.gradcheck(run, (x, *params))


def test_hard_knee_has_finite_gradients_at_threshold():
    comp = Compressor(SR, threshold_db=-6.0206, ratio=4, knee_db=0)
    x = torch.full((1, 64), 0.5, dtype=torch.float64, requires_grad=True)  # level on the threshold
    comp(x).sum().backward()
    grads = [x.grad] + [p.grad for p in comp.parameters() if p.requires_grad]
    assert all(bool(torch.isfinite(g).all()) for g in grads)


def test_static_curve_is_continuous_and_exact_at_bounds():
    comp = Compressor(SR, threshold_db=-20, ratio=4, knee_db=8, makeup_db=2)
    level = torch.tensor([-40.0, -24.0, -20.0, -16.0, 0.0], dtype=torch.float64)
    curve = comp.static_curve_db(level)
    expected = torch.tensor(
        [-38.0, -22.0, -20.0 - 0.75 * 16 / 16 + 2, -20 + 4 / 4 + 2, -20 + 20 / 4 + 2], dtype=torch.float64
    )
    assert torch.allclose(curve, expected, atol=1e-12)
    assert torch.equal(Compressor(SR, ratio=1, knee_db=0).static_curve_db(level), level)
    batched = Compressor(SR, threshold_db=[-20, -10]).static_curve_db(level)
    assert batched.shape == (2, 5)


def test_ratio_one_is_identity_and_silence_is_silent():
    x = torch.tensor(music_like(0.2, seed=5))
    assert torch.allclose(Compressor(SR, ratio=1, knee_db=0)(x), x, atol=1e-12)
    silence = torch.zeros(2, 500, requires_grad=True)
    comp = Compressor(SR, threshold_db=-60, ratio=20, knee_db=0)
    y = comp(silence)
    assert torch.equal(y, torch.zeros_like(y))
    y.sum().backward()
    assert bool(torch.isfinite(silence.grad).all())
    assert all(bool(torch.isfinite(p.grad).all()) for p in comp.parameters() if p.grad is not None)


def test_loud_input_gives_finite_output():
    x = torch.randn(2, 2000) * 100.0  # about +40 dBFS
    y = Compressor(SR, threshold_db=-60, ratio=20, makeup_db=24)(x)
    assert bool(torch.isfinite(y).all())


def test_batched_settings_equal_separate_runs():
    x = torch.tensor(music_like(0.3, seed=6)).unsqueeze(0).repeat(2, 1, 1)
    comp = Compressor(SR, threshold_db=[-30, -15], ratio=[2, 10], attack_ms=[1, 20])
    y = comp(x)
    for b, (t, r, a) in enumerate([(-30, 2, 1), (-15, 10, 20)]):
        assert torch.allclose(y[b], Compressor(SR, threshold_db=t, ratio=r, attack_ms=a)(x[b]), atol=1e-12)


def test_bad_settings_raise():
    with pytest.raises(ValueError, match=r"ratio.*1\.\.20"):
        Compressor(SR, ratio=0.5)
    with pytest.raises(ValueError, match="detector"):
        Compressor(SR, detector="loud")
    with pytest.raises(ValueError, match="x contains non-finite"):
        Compressor(SR)(torch.tensor([0.1, float("nan")]))
    assert not Compressor(SR).raw["rms_ms"].requires_grad  # unused with the peak detector
    assert Compressor(SR, detector="rms").raw["rms_ms"].requires_grad


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda F, x: F.compress(x, 44100, -20.0, ratio=0.5), "ratio"),
        (lambda F, x: F.compress(x, 44100, -20.0, 4.0, attack_ms=-1.0), "attack_ms"),
        (lambda F, x: F.compress(x, 44100, -20.0, 4.0, release_ms=float("nan")), "release_ms"),
        (lambda F, x: F.limit(x, 44100, -1.0, release_ms=-5.0), "release_ms"),
        (lambda F, x: F.limit(x, 44100, -1.0, lookahead_ms=0.0), "lookahead_ms"),
        (lambda F, x: F.compress(x, 44100, -20.0, torch.tensor([4.0, 0.0])), "ratio"),
    ],
)
def test_functional_forms_refuse_parameters_outside_their_domain(call, name):
    import processors.functional as F

    x = 0.5 * torch.randn(2, 2, 4410, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=name):
        call(F, x)


@pytest.mark.parametrize("option", [{"stereo_link": "false"}, {"stereo_link": 0}])
def test_on_off_options_must_be_booleans(option):
    from processors import Compressor, Limiter

    with pytest.raises(ValueError, match="stereo_link"):
        Compressor(44100, **option)
    with pytest.raises(ValueError, match="true_peak"):
        Limiter(44100, true_peak="no")
