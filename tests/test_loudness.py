"""drl.loudness: BS.1770-4 filters, EBU Tech 3341/3342 cases, pyloudnorm agreement, gradients, bad input."""

import math

import numpy as np
import pyloudnorm
import pytest
import scipy.signal
import torch

import drl
from drl import Loudness, integrated_loudness, loudness_range, momentary_loudness, short_term_loudness
from drl.loudness import K_WEIGHTING_48K, bilinear_k_weighting, k_weighting_sos, loudness_summary

RATES = [44100, 48000]


def tone(segments, sample_rate, channels=2, frequency=1000.0):
    """A 1 kHz sine of continuous phase whose peak level (dBFS) steps through ``segments``.

    ``segments`` is a list of ``(level_db, seconds)``, or of ``(per_channel_levels, seconds)``. Returns float64
    ``(channels, T)``.
    """
    lengths = [round(seconds * sample_rate) for _, seconds in segments]
    t = np.arange(sum(lengths)) / sample_rate
    carrier = np.sin(2 * np.pi * frequency * t)
    gains = np.empty((channels, t.size))
    start = 0
    for (level, _), n in zip(segments, lengths):
        gains[:, start : start + n] = 10 ** (np.broadcast_to(level, (channels,))[:, None] / 20)
        start += n
    return torch.from_numpy(gains * carrier)


def reference_integrated(x, sample_rate, weights=(1.0, 1.0, 1.0, 1.41, 1.41)):
    """Float64 BS.1770-4 integrated loudness with a loop over blocks (scipy's recursive K-weighting)."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    y = scipy.signal.sosfilt(k_weighting_sos(sample_rate), x)
    block = round(0.4 * sample_rate)
    energies = []
    j = 0
    while (j * sample_rate + 5) // 10 + block <= x.shape[-1]:  # starts at j * 100 ms, halves rounded up
        start = (j * sample_rate + 5) // 10
        z = (y[:, start : start + block] ** 2).mean(axis=1)
        energies.append(float(np.dot(weights[: x.shape[0]], z)))
        j += 1
    energies = np.array(energies)
    with np.errstate(divide="ignore"):
        levels = -0.691 + 10 * np.log10(energies)
    kept = energies[levels > -70]
    if kept.size == 0:
        return -math.inf
    gate = -0.691 + 10 * np.log10(kept.mean()) - 10
    kept = energies[(levels > -70) & (levels > gate)]
    return -0.691 + 10 * np.log10(kept.mean())


# --------------------------------------------------------------------------------------------- filters


def test_bilinear_prototype_reproduces_the_48k_table():
    np.testing.assert_allclose(bilinear_k_weighting(48000), K_WEIGHTING_48K, rtol=0, atol=1e-13)
    np.testing.assert_array_equal(k_weighting_sos(48000), K_WEIGHTING_48K)


@pytest.mark.parametrize(
    ("frequency", "gain_db"),
    [
        (20, -13.2754),
        (50, -3.9341),
        (100, -1.1335),
        (997, 0.6910),
        (1000, 0.6977),
        (2000, 3.0713),
        (5000, 4.0134),
        (10000, 4.0419),
    ],
)
def test_k_weighting_gain(frequency, gain_db):
    _, response = scipy.signal.sosfreqz(k_weighting_sos(48000), worN=[frequency], fs=48000)
    assert 20 * np.log10(np.abs(response[0])) == pytest.approx(gain_db, abs=1e-4)


@pytest.mark.parametrize(("sample_rate", "expected"), [(48000, -22.9933), (44100, -22.9905)])
def test_stereo_sine_reading(sample_rate, expected):
    x = tone([(-23.0, 10.0)], sample_rate)
    assert float(integrated_loudness(x, sample_rate)) == pytest.approx(expected, abs=2e-4)


# ------------------------------------------------------------------------------------ EBU Tech 3341


@pytest.fixture(scope="module", params=RATES)
def rate(request):
    return request.param


INTEGRATED_CASES = {
    "3341-1": [(-23.0, 20.0)],
    "3341-2": [(-33.0, 20.0)],
    "3341-3": [(-36.0, 10.0), (-23.0, 60.0), (-36.0, 10.0)],
    "3341-4": [(-72.0, 10.0), (-36.0, 10.0), (-23.0, 60.0), (-36.0, 10.0), (-72.0, 10.0)],
    "3341-5": [(-26.0, 20.0), (-20.0, 20.1), (-26.0, 20.0)],
}


@pytest.mark.parametrize("case", sorted(INTEGRATED_CASES))
def test_ebu_3341_integrated(case, rate):
    x = tone(INTEGRATED_CASES[case], rate)
    expected = -33.0 if case == "3341-2" else -23.0
    assert float(integrated_loudness(x, rate)) == pytest.approx(expected, abs=0.1)
    if case in ("3341-1", "3341-2"):
        for series in (momentary_loudness(x, rate), short_term_loudness(x, rate)):
            assert series.numel() > 0
            assert torch.allclose(series, torch.full_like(series, expected), atol=0.1)


def test_ebu_3341_case_6_five_channels(rate):
    x = tone([((-28.0, -28.0, -24.0, -30.0, -30.0), 20.0)], rate, channels=5)
    assert float(integrated_loudness(x, rate)) == pytest.approx(-23.0, abs=0.1)


def test_ebu_3341_case_9_short_term(rate):
    x = tone([(-20.0, 1.34), (-30.0, 1.66)] * 5, rate)
    series = short_term_loudness(x, rate)
    assert series.shape == (121,)  # 15 s: windows start at 0 .. 12 s
    assert torch.allclose(series, torch.full_like(series, -23.0), atol=0.1)


def test_ebu_3341_case_12_momentary(rate):
    x = tone([(-20.0, 0.18), (-30.0, 0.22)] * 25, rate)
    series = momentary_loudness(x, rate)
    assert series.shape == (97,)
    after_one_second = series[6:]  # windows ending at >= 1 s
    assert torch.allclose(after_one_second, torch.full_like(after_one_second, -23.0), atol=0.1)


# ------------------------------------------------------------------------------------ EBU Tech 3342

RANGE_CASES = {
    "3342-1": ([(-20.0, 20.0), (-30.0, 20.0)], 10.0),
    "3342-2": ([(-20.0, 20.0), (-15.0, 20.0)], 5.0),
    "3342-3": ([(-40.0, 20.0), (-20.0, 20.0)], 20.0),
    "3342-4": ([(-50.0, 20.0), (-35.0, 20.0), (-20.0, 20.0), (-35.0, 20.0), (-50.0, 20.0)], 15.0),
}


@pytest.mark.parametrize("case", sorted(RANGE_CASES))
def test_ebu_3342_loudness_range(case, rate):
    segments, expected = RANGE_CASES[case]
    x = tone(segments, rate).float()
    assert float(loudness_range(x, rate)) == pytest.approx(expected, abs=1.0)


# --------------------------------------------------------------------------- pyloudnorm and reference


def varied_signals():
    """Ten varied signals of 10-15 s (whole multiples of 100 ms) as ``(name, sample_rate, (C, T) float64)``."""
    rng = np.random.default_rng(1770)
    signals = []

    def add(name, sample_rate, x):
        signals.append((name, sample_rate, np.ascontiguousarray(np.atleast_2d(x))))

    fs = 44100
    t = np.arange(10 * fs) / fs
    add("white noise", fs, 0.1 * rng.standard_normal((2, t.size)))
    pink = np.fft.irfft(
        np.fft.rfft(rng.standard_normal((2, t.size))) / np.sqrt(np.maximum(np.fft.rfftfreq(t.size, 1 / fs), 20.0))
    )
    add("pink noise", fs, 0.5 * pink / np.abs(pink).max())
    add(
        "tone mixture",
        fs,
        np.stack(
            [
                0.2 * np.sin(2 * np.pi * 60 * t) + 0.1 * np.sin(2 * np.pi * 3000 * t + 1),
                0.15 * np.sin(2 * np.pi * 440 * t) + 0.05 * np.sin(2 * np.pi * 12000 * t),
            ]
        ),
    )
    bursts = np.zeros((2, t.size))
    for onset in rng.integers(0, t.size - fs // 2, 40):
        n = fs // 4
        bursts[:, onset : onset + n] += rng.standard_normal((2, n)) * np.exp(-np.arange(n) / (0.03 * fs))
    add("percussive bursts", fs, 0.3 * bursts)
    gaps = 0.2 * rng.standard_normal((2, t.size))
    gaps[:, 2 * fs : 5 * fs] = 0.0
    gaps[:, 7 * fs : 8 * fs] *= 1e-4
    add("silence gaps", fs, gaps)
    add("mono sweep", fs, 0.5 * scipy.signal.chirp(t, 20, t[-1], 20000, method="logarithmic"))
    fs = 48000
    t = np.arange(12 * fs) / fs
    envelope = 0.5 + 0.45 * np.sin(2 * np.pi * 0.3 * t)
    add("amplitude-modulated noise", fs, envelope * 0.2 * rng.standard_normal((2, t.size)))
    add("loud near-clipping", fs, np.clip(1.5 * np.sin(2 * np.pi * 5000 * t), -1, 1) * [[1.0], [0.7]])
    add("five channels", fs, 0.1 * rng.standard_normal((5, t.size)) * [[1], [0.8], [0.5], [0.3], [0.3]])
    levels = np.repeat(rng.uniform(-45, -10, 15), fs)[: 15 * fs]
    add("stepped levels", fs, 10 ** (levels / 20) * rng.standard_normal((2, 15 * fs)))
    return signals


@pytest.fixture(scope="module")
def signals():
    return varied_signals()


def test_agrees_with_pyloudnorm_deman_and_float64_reference(signals):
    assert len(signals) >= 10
    for name, fs, x in signals:
        assert x.shape[-1] >= 10 * fs, name
        meter = pyloudnorm.Meter(fs, filter_class="DeMan")
        theirs = meter.integrated_loudness(x.T if x.shape[0] > 1 else x[0])
        ours = float(integrated_loudness(torch.from_numpy(x), fs))
        assert ours == pytest.approx(theirs, abs=0.01), name
        assert ours == pytest.approx(reference_integrated(x, fs), abs=1e-9), name
        ours32 = float(integrated_loudness(torch.from_numpy(x).float(), fs))
        assert ours32 == pytest.approx(ours, abs=1e-5), name


def test_sample_rate_not_a_multiple_of_ten_hz():
    fs = 11025
    x = np.random.default_rng(3).standard_normal((2, 11 * fs + 17)) * 0.1
    assert float(integrated_loudness(torch.from_numpy(x), fs)) == pytest.approx(reference_integrated(x, fs), abs=1e-9)
    assert momentary_loudness(torch.from_numpy(x), fs).shape == (107,)


# ----------------------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("measure", ["integrated", "momentary", "short_term"])
def test_gain_derivative_is_one(measure, signals):
    name, fs, x = signals[4]
    assert name == "silence gaps"
    x = torch.from_numpy(x[:, : 4 * fs].copy())  # float64: the silent gap reads exactly -inf
    meter = Loudness(fs)
    gain_db = torch.tensor(3.0, dtype=torch.float64, requires_grad=True)
    audio = x * 10 ** (gain_db / 20)
    value = {"integrated": meter, "momentary": meter.momentary, "short_term": meter.short_term}[measure](audio)
    finite = torch.isfinite(value)
    value[finite].sum().backward()
    assert gain_db.grad.item() == pytest.approx(float(finite.sum()), rel=1e-3)
    if measure == "momentary":
        assert 0 < int(finite.sum()) < value.numel()  # the gap's windows are -inf, the others count


def test_float32_gain_derivative():
    x = 0.1 * torch.randn(2, 5 * 16000)
    gain_db = torch.tensor(-6.0, requires_grad=True)
    integrated_loudness(x * 10 ** (gain_db / 20), 16000).backward()
    assert gain_db.grad.item() == pytest.approx(1.0, abs=1e-3)


def test_gradient_reaches_audio_and_gradcheck():
    fs = 8000
    x = (0.1 * torch.randn(2, 3300, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(lambda a: integrated_loudness(a, fs), (x,), fast_mode=True)
    assert torch.autograd.gradcheck(lambda a: momentary_loudness(a, fs), (x,), fast_mode=True)


def test_silence_reads_minus_inf_with_zero_gradient():
    for x in (torch.zeros(2, 48000, requires_grad=True), (1e-5 * torch.randn(2, 48000)).requires_grad_()):
        value = integrated_loudness(x, 48000)
        assert value.item() == -math.inf
        value.backward()
        assert torch.equal(x.grad, torch.zeros_like(x))
        assert float(loudness_range(x.detach().repeat(1, 4), 48000)) == 0.0
        momentary = momentary_loudness(x, 48000)
        assert not bool(torch.isnan(momentary).any())


# ------------------------------------------------------------------------------ shapes and bad input


def test_shapes_batches_and_module():
    fs = 16000
    x = 0.1 * torch.randn(3, 2, 4 * fs)
    batched = integrated_loudness(x, fs)
    assert batched.shape == (3,) and batched.dtype == torch.float32
    for b in range(3):
        assert float(integrated_loudness(x[b], fs)) == pytest.approx(float(batched[b]), abs=1e-5)
    assert integrated_loudness(x[0, 0], fs).shape == ()
    assert momentary_loudness(x, fs).shape == (3, 37)
    assert short_term_loudness(x[0], fs).shape == (11,)
    assert loudness_range(x, fs).shape == (3,)
    assert momentary_loudness(x[..., : fs // 4], fs).shape == (3, 0)
    assert short_term_loudness(x[0, :, : 2 * fs], fs).shape == (0,)
    meter = Loudness(fs)
    assert torch.equal(meter(x), batched)
    assert torch.equal(meter.short_term(x), short_term_loudness(x, fs))


def test_channel_weights():
    fs = 16000
    x = 0.1 * torch.randn(6, 2 * fs, dtype=torch.float64)
    with pytest.raises(ValueError, match="channel_weights"):
        integrated_loudness(x, fs)
    six = integrated_loudness(x, fs, channel_weights=[1, 1, 1, 0, 1.41, 1.41])  # L R C LFE Ls Rs
    five = integrated_loudness(x[[0, 1, 2, 4, 5]], fs)
    assert float(six) == pytest.approx(float(five), abs=1e-9)
    assert float(Loudness(fs, channel_weights=torch.ones(6))(x)) == pytest.approx(
        float(integrated_loudness(x, fs, channel_weights=[1.0] * 6)), abs=1e-9
    )
    with pytest.raises(ValueError, match="channel_weights has 2 values"):
        integrated_loudness(x, fs, channel_weights=[1.0, 1.0])
    with pytest.raises(ValueError, match="channel_weights must be finite"):
        integrated_loudness(x[:2], fs, channel_weights=[1.0, -1.0])
    with pytest.raises(ValueError, match="channel_weights must be a sequence"):
        Loudness(fs, channel_weights=2.0)
    with pytest.raises(ValueError, match="channel_weights must be a sequence"):
        integrated_loudness(x[:2], fs, channel_weights=["left", "right"])


def test_bad_input():
    fs = 48000
    with pytest.raises(ValueError, match="shorter than one 400 ms block"):
        integrated_loudness(torch.zeros(2, fs // 3), fs)
    with pytest.raises(ValueError, match="shorter than one 3 s"):
        loudness_range(torch.zeros(2, fs), fs)
    bad = torch.zeros(2, fs)
    bad[1, 7] = float("inf")
    with pytest.raises(ValueError, match="non-finite"):
        integrated_loudness(bad, fs)
    with pytest.raises(ValueError, match="integer"):
        integrated_loudness(torch.zeros(2, fs, dtype=torch.int16), fs)
    with pytest.raises(ValueError, match="sample_rate"):
        integrated_loudness(torch.zeros(2, fs), 500_000)
    with pytest.raises(ValueError, match="sample_rate"):
        Loudness(7999)


def test_summary():
    fs = 48000
    x = tone([(-23.0, 4.0)], fs).float()
    summary = loudness_summary(x, fs)
    assert set(summary) == {"integrated_lufs", "lra", "true_peak_dbtp", "sample_peak_dbfs"}
    assert all(isinstance(v, float) for v in summary.values())
    assert summary["integrated_lufs"] == pytest.approx(-22.9933, abs=1e-3)
    assert summary["lra"] == pytest.approx(0.0, abs=0.01)
    assert summary["sample_peak_dbfs"] == pytest.approx(-23.0, abs=0.01)
    assert -23.01 < summary["true_peak_dbtp"] < -22.95
    short = loudness_summary(x[0, :fs], fs)
    assert short["lra"] is None
    silent = loudness_summary(torch.zeros(2, fs), fs)
    assert silent["integrated_lufs"] == -math.inf and silent["true_peak_dbtp"] == -math.inf
    with pytest.raises(ValueError, match=r"\(T,\) or \(C, T\)"):
        loudness_summary(x[None], fs)
    assert drl.loudness_summary is loudness_summary


@pytest.mark.parametrize("gain_db", [0.0, -12.0, 9.5])
def test_a_reading_gives_the_summary_of_the_signal_times_any_gain(gain_db):
    fs = 48000
    # passages near -50 and -62 LUFS: 12 dB down, the absolute gate (-70 LUFS) drops the quiet one
    x = tone([(-49.3, 4.0), (-61.3, 5.0)], fs)
    scaled = x * 10 ** (gain_db / 20)
    expected = loudness_summary(scaled, fs)
    got = drl.read_levels(x, fs).summary(gain_db)
    assert got["integrated_lufs"] == pytest.approx(expected["integrated_lufs"], abs=1e-9)
    assert got["lra"] == pytest.approx(expected["lra"], abs=1e-9)
    assert got["true_peak_dbtp"] == pytest.approx(expected["true_peak_dbtp"], abs=1e-9)
    assert got["sample_peak_dbfs"] == pytest.approx(expected["sample_peak_dbfs"], abs=1e-9)
    if gain_db == -12.0:  # the quiet passage fell under -70 LUFS: the gate changed what counts
        assert loudness_summary(x, fs)["lra"] > expected["lra"] + 5.0
    assert drl.read_levels(x, fs).summary() == loudness_summary(x, fs)
