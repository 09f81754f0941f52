"""The noise-to-mask ratio: a float64 loop reference, masking, invariances, gradients, checks."""

import math

import numpy as np
import pytest
import torch

import drl
from drl import masking, nmr
from drl.nmr import nmr_db

RATE = 16000  # n_fft 256: short signals still hold many frames


def reference_nmr(x: np.ndarray, y: np.ndarray, rate: int, level_db: float = 75.0) -> np.ndarray:
    """The NMR per channel of (C, T) float64 arrays, written out frame by frame and band by band."""
    n = masking.fft_length(rate)
    hop = n // 2
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)
    frequency = np.arange(n // 2 + 1) * rate / n
    rate_bark = 13 * np.arctan(0.00076 * frequency) + 3.5 * np.arctan((frequency / 7500) ** 2)
    index = np.floor(rate_bark / 0.5).astype(int)
    index[0] = index[1]
    labels = sorted(set(index.tolist()))
    band_of = [labels.index(i) for i in index]
    bands = len(labels)
    hz = np.array([frequency[[b == k for b in band_of]].mean() for k in range(bands)])
    z = np.array([rate_bark[[b == k for b in band_of]].mean() for k in range(bands)])
    khz = np.maximum(hz, 20.0) / 1000
    quiet = 10 ** ((3.64 * khz**-0.8 - 6.5 * np.exp(-0.6 * (khz - 3.3) ** 2) + 1e-3 * khz**4) / 10)
    tau = 0.008 + 0.022 * 100 / hz
    decay = np.exp(-(hop / rate) / tau)
    bin_weight = np.full(n // 2 + 1, 2.0)
    bin_weight[0] = bin_weight[-1] = 1.0
    bin_weight /= n * np.sum(window**2)
    calibration = 10 ** (level_db / 10) / np.mean(x**2)
    out = []
    for xc, yc in zip(x, y):
        track_gain = np.dot(xc, yc) / np.dot(xc, xc)
        xp = np.concatenate([np.zeros(hop), xc, np.zeros(hop)])
        yp = np.concatenate([np.zeros(hop), yc, np.zeros(hop)])
        frames = 1 + len(xc) // hop
        spread_frames, residuals, gains = [], [], []
        for k in range(frames):
            X = np.fft.rfft(xp[k * hop : k * hop + n] * window)
            Y = np.fft.rfft(yp[k * hop : k * hop + n] * window)
            power = np.sum(np.abs(X) ** 2)
            g = np.sum((np.conj(X) * Y).real) / power if power > 0 else track_gain
            if abs(g) < 0.01 * abs(track_gain):
                g = 0.01 * abs(track_gain) * (np.sign(g) if g != 0 else np.sign(track_gain))
            P = np.zeros(bands)
            R = np.zeros(bands)
            for f in range(n // 2 + 1):
                P[band_of[f]] += bin_weight[f] * abs(X[f]) ** 2 * calibration
                R[band_of[f]] += bin_weight[f] * abs(Y[f] - g * X[f]) ** 2 * calibration
            spread = np.zeros(bands)
            for i in range(bands):
                for j in range(bands):
                    d = z[i] - z[j]
                    slope = max(24 + 230 / hz[j] - 0.2 * 60, 4.0)
                    attenuation = 27 * d if d < 0 else -slope * d
                    offset = 3.0 if z[i] <= 12 else 0.25 * z[i]
                    spread[i] += P[j] * 10 ** ((attenuation - offset) / 10)
            spread_frames.append(spread)
            residuals.append(R)
            gains.append(g)
        ratios = []
        for k in range(frames):
            held = spread_frames[k].copy()
            for m in range(1, min(8, k) + 1):
                held = np.maximum(held, spread_frames[k - m] * decay**m)
            ratios.append(residuals[k] / (gains[k] ** 2 * (held + quiet)))
        out.append(10 * np.log10(np.mean(ratios)))
    return np.array(out)


def music_like(seconds: float, rate: int = RATE, seed: int = 0) -> torch.Tensor:
    """(2, T) float64: a bass line and a few partials under a slowly changing envelope, plus a little noise."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * rate), dtype=torch.float64) / rate
    envelope = 0.6 + 0.4 * torch.sin(2 * math.pi * 1.5 * t) ** 2
    tone = sum(
        a * torch.sin(2 * math.pi * f * t + p)
        for a, f, p in ((0.5, 110, 0.0), (0.25, 220, 1.0), (0.12, 660, 2.0), (0.06, 1320, 0.5))
    )
    left = envelope * tone + 0.01 * torch.randn(t.shape, generator=g, dtype=torch.float64)
    right = 0.8 * envelope * tone + 0.01 * torch.randn(t.shape, generator=g, dtype=torch.float64)
    return torch.stack([left, right])


def test_equals_the_frame_by_frame_reference():
    x = music_like(0.25)
    y = torch.tanh(2.5 * x) / 2.5
    y[:, 1500:1800] *= 1e-4  # frames turned down below the smallest frame gain
    x[:, 3000:3400] = 0.0  # frames where the reference is silent
    expected = reference_nmr(x.numpy(), y.numpy(), RATE)
    assert np.allclose(nmr_db(x, y, RATE).numpy(), expected, atol=1e-9)
    quiet = reference_nmr(x.numpy(), y.numpy(), RATE, level_db=40.0)
    assert np.allclose(nmr_db(x, y, RATE, listening_level_db=40.0).numpy(), quiet, atol=1e-9)


def test_chunks_do_not_change_the_value(monkeypatch):
    x = music_like(0.5)
    y = torch.clamp(x, -0.6, 0.6)
    whole = nmr_db(x, y, RATE)
    monkeypatch.setattr(nmr, "CHUNK_FRAMES", 5)
    assert torch.allclose(nmr_db(x, y, RATE), whole, atol=1e-10)


def test_identical_signals_and_any_gain_read_the_floor():
    x = music_like(0.5)
    for y in (x, 0.5 * x, -2.0 * x):
        assert torch.allclose(nmr_db(x, y, RATE), torch.full((2,), -120.0, dtype=torch.float64))
    assert torch.equal(nmr_db(x.float(), x.float(), RATE), torch.full((2,), -120.0))
    assert float(nmr_db(x, x, RATE, floor_db=-80.0)[0]) == pytest.approx(-80.0)


def test_a_slow_gain_change_is_not_distortion_but_clipping_is():
    x = music_like(1.0)
    t = torch.arange(x.shape[-1], dtype=torch.float64) / RATE
    ridden = x * (1.0 - 0.3 * t)  # 3 dB down over a second: a gain riding the music
    clipped = torch.clamp(x, -0.55, 0.55)
    assert float(drl.drl_db(x, ridden).mean()) > -25.0  # plain DRL counts the ride as distortion
    assert float(nmr_db(x, ridden, RATE).max()) < -50.0
    assert float(nmr_db(x, clipped, RATE).min()) > float(nmr_db(x, ridden, RATE).max()) + 30.0


def test_residual_under_the_mask_reads_lower_than_the_same_energy_above_it():
    # a loud band of noise at 500-700 Hz masks a residual inside it, not one at 4 kHz; plain DRL is the same
    g = torch.Generator().manual_seed(1)
    n = RATE
    spectrum = torch.fft.rfft(torch.randn(n, generator=g, dtype=torch.float64))
    freq = torch.fft.rfftfreq(n, 1 / RATE, dtype=torch.float64)
    masker = torch.fft.irfft(spectrum * ((freq > 500) & (freq < 700)), n=n)
    t = torch.arange(n, dtype=torch.float64) / RATE
    x = 0.3 * masker / masker.std()
    inside = 0.01 * torch.sin(2 * math.pi * 600.0 * t)
    outside = 0.01 * torch.sin(2 * math.pi * 4000.0 * t)
    drl_inside, drl_outside = drl.drl_db(x, x + inside), drl.drl_db(x, x + outside)
    assert float(drl_inside) == pytest.approx(float(drl_outside), abs=0.5)
    assert float(nmr_db(x, x + outside, RATE)) > float(nmr_db(x, x + inside, RATE)) + 15.0


def test_threshold_in_quiet_hides_faint_residual_at_the_band_edges():
    x = music_like(0.5, rate=48000)
    t = torch.arange(x.shape[-1], dtype=torch.float64) / 48000
    faint = 1e-4
    at_19k = nmr_db(x, x + faint * torch.sin(2 * math.pi * 19000.0 * t), 48000)
    at_3k = nmr_db(x, x + faint * torch.sin(2 * math.pi * 3000.0 * t), 48000)
    assert float(at_19k.max()) < float(at_3k.min()) - 20.0


def test_shapes_and_batches():
    x = music_like(0.3)
    y = torch.tanh(2.0 * x)
    per_channel = nmr_db(x, y, RATE)
    assert per_channel.shape == (2,)
    assert nmr_db(x[0], y[0], RATE).shape == ()
    batch = nmr_db(torch.stack([x, 0.5 * x]), torch.stack([y, 0.5 * x]), RATE)
    assert batch.shape == (2, 2)
    assert torch.allclose(batch[0], per_channel)
    assert torch.allclose(batch[1], torch.full((2,), -120.0, dtype=torch.float64))
    assert nmr_db(x.float(), y.float(), RATE).dtype == torch.float32
    assert torch.allclose(nmr_db(x.float(), y.float(), RATE).double(), per_channel, atol=1e-3)


def test_drl_module_and_functional_agree():
    x = music_like(0.3)
    y = torch.clamp(x, -0.5, 0.5)
    result = drl.DRL(RATE, None, nmr=True)(x, y)
    assert torch.allclose(result["channel_nmr_db"], nmr_db(x, y, RATE))
    assert torch.allclose(result["nmr_db"], nmr_db(x, y, RATE).mean())
    assert "nmr_db" not in drl.DRL(RATE, None)(x, y)
    with pytest.raises(ValueError, match="nmr must be True or False"):
        drl.DRL(RATE, nmr="yes")


def test_gradcheck_in_both_signals():
    x = music_like(0.04, rate=8000)[:1]  # n_fft 128, 320 samples
    y = torch.tanh(2.0 * x)
    x, y = x.requires_grad_(True), y.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: nmr_db(a, b, 8000), (x, y), atol=1e-6, rtol=1e-4)


def test_silence_in_one_signal_counts_as_loss_with_finite_gradients():
    x = music_like(0.4)
    muted = x.clone()
    muted[:, 2000:3200] = 0.0  # the output loses 75 ms of music: as loud as the music it lost
    assert float(nmr_db(x, muted, RATE).min()) > -10.0
    gap = x.clone()
    gap[:, 2000:3200] = 0.0
    tail = gap.clone()
    tail[:, 2000:2100] += 1e-3  # a faint tail where the reference is silent: in the track's scale, not 40 dB up
    assert float(nmr_db(gap, tail, RATE).max()) < -20.0
    muted.requires_grad_(True)
    nmr_db(x, muted, RATE).sum().backward()
    assert torch.isfinite(muted.grad).all()


@pytest.mark.parametrize(
    ("reference", "processed", "message"),
    [
        (torch.zeros(2, 4000), torch.ones(2, 4000), "reference is silent"),
        (torch.ones(2, 4000), torch.full((2, 4000), float("nan")), "processed contains non-finite"),
        (torch.ones(2, 4000), torch.ones(2, 3000), "pass signals of equal length"),
        (torch.ones(4000, dtype=torch.int16), torch.ones(4000, dtype=torch.int16), "integer dtype"),
    ],
)
def test_bad_input_is_named(reference, processed, message):
    with pytest.raises(ValueError, match=message):
        nmr_db(reference, processed, RATE)


def test_bad_options_are_named():
    x = music_like(0.2)
    with pytest.raises(ValueError, match="listening_level_db"):
        nmr_db(x, x, RATE, listening_level_db=200.0)
    with pytest.raises(ValueError, match="sample_rate"):
        nmr_db(x, x, 100)
    with pytest.raises(ValueError, match="floor_db"):
        nmr_db(x, x, RATE, floor_db=10.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    x = music_like(0.5)
    y = torch.tanh(2.0 * x)
    assert torch.allclose(nmr_db(x.cuda(), y.cuda(), RATE).cpu(), nmr_db(x, y, RATE), atol=1e-9)


def test_a_masked_reference_scores_many_signals_as_the_function_does():
    x = music_like(0.4)
    masked = nmr.MaskedReference(x, RATE)
    for y in (torch.tanh(2.0 * x), torch.clamp(x, -0.5, 0.5), 0.3 * x):
        assert torch.allclose(masked.nmr_db(y), nmr_db(x, y, RATE), atol=1e-10)
    assert masked.nmr_db(x[None].expand(1, 2, -1).reshape(2, -1)).shape == (2,)
    with pytest.raises(ValueError, match="processed has shape"):
        masked.nmr_db(x[:, :100])
    with pytest.raises(ValueError, match="processed is silent"):
        masked.nmr_db(torch.zeros_like(x))
    with pytest.raises(ValueError, match="reference is silent"):
        nmr.MaskedReference(torch.zeros(2, 100), RATE)
