"""Whole-track work without a gradient runs in blocks (drl.fft.BLOCK_SAMPLES) so that memory stays bounded: the
overlap-save convolution, the true peak, the limiter's peak envelope, the loudness meter's squares, band
energies, the listening clips' residual and the PCM dither. Each gives the values of the one-pass computation
(the path taken when a gradient is recorded), checked here with blocks far shorter than the signals."""

import numpy as np
import pytest
import torch

import drl
import drl.bands
import drl.fft
import drl.nmr
import tuning.clips
from drl.bands import band_energies, band_weights
from drl.fft import fft_length, overlap_save, overlap_save_blocks
from drl.loudness import loudness_summary
from drl.nmr import MaskedReference
from drl.peak import interpolated_peak, true_peak_oversample
from processors import functional as Fn
from tuning.baseline import baseline_chain
from tuning.clips import listening_clips, match_gain, matched_residual
from tuning.pcm import tpdf_quantise

BLOCK = 1000  # samples per block in these tests: signals span many blocks


@pytest.fixture
def small_blocks(monkeypatch):
    for module in (drl.fft, drl.bands, tuning.clips):
        monkeypatch.setattr(module, "BLOCK_SAMPLES", BLOCK)


def music(shape, seed=0, dtype=torch.float32) -> torch.Tensor:
    """Noise with a slow envelope and a few loud spikes (so that peaks fall in different blocks)."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(*shape, generator=generator, dtype=torch.float64)
    t = torch.arange(shape[-1], dtype=torch.float64)
    noise = noise * (0.2 + 0.15 * torch.sin(2 * torch.pi * t / 3001.0))
    spikes = torch.randint(0, shape[-1], (5,), generator=generator)
    noise[..., spikes] *= 4.0
    return noise.to(dtype)


def one_pass(fn, x, *args, **kwargs):
    """``fn`` with a gradient recorded on ``x``: the whole signal at once."""
    with torch.enable_grad():
        return fn(x.detach().clone().requires_grad_(True), *args, **kwargs).detach()


@pytest.mark.parametrize("length", [1, 999, 7919])
@pytest.mark.parametrize("n_fft, overlap", [(64, 10), (256, 255), (128, 0)])
def test_overlap_save_blocks_match_one_pass_and_direct_convolution(small_blocks, length, n_fft, overlap):
    x = music((2, length), seed=length)
    taps = torch.randn(3, overlap + 1, generator=torch.Generator().manual_seed(1))
    spectrum = torch.fft.rfft(taps, n=n_fft)
    with torch.no_grad():
        blocked = overlap_save(x, spectrum, n_fft, overlap, length + 5)
    assert torch.equal(blocked, one_pass(overlap_save, x, spectrum, n_fft, overlap, length + 5))
    assert blocked.shape == (2, 3, length + 5)
    # float64 reference: the full convolution, zeros past its end, cut to the output length
    kernel = taps.double().flip(-1)[:, None]
    direct = torch.nn.functional.conv1d(x.double()[:, None], kernel, padding=overlap)[..., : length + 5]
    direct = torch.nn.functional.pad(direct, (0, length + 5 - direct.shape[-1]))
    torch.testing.assert_close(blocked.double(), direct, rtol=0, atol=2e-5 * (overlap + 1))
    pieces = list(overlap_save_blocks(x, spectrum, n_fft, overlap, length + 5))
    assert [start for start, _ in pieces] == np.cumsum([0] + [p.shape[-1] for _, p in pieces[:-1]]).tolist()
    assert torch.equal(torch.cat([p for _, p in pieces], dim=-1), blocked)
    assert len(pieces) == 1 or max(p.shape[-1] for _, p in pieces) <= max(BLOCK, n_fft)


@pytest.mark.parametrize("sample_rate", [44100, 96000, 192000])
def test_true_peak_in_blocks_is_the_one_pass_value(small_blocks, sample_rate):
    x = music((2, 3, 12345), seed=sample_rate)
    with torch.no_grad():
        blocked = drl.true_peak(x, sample_rate)
    assert torch.equal(blocked, one_pass(drl.true_peak, x, sample_rate))
    over, factor = true_peak_oversample(x.double(), sample_rate)  # float64 reference
    expected = 20 * torch.log10(over.abs().amax(dim=-1))
    torch.testing.assert_close(blocked.double(), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("sample_rate", [48000, 96000])
def test_interpolated_peak_in_blocks(small_blocks, sample_rate):
    x = music((1, 2, 9000), seed=3)
    with torch.no_grad():
        blocked = interpolated_peak(x, sample_rate)
        over, factor = true_peak_oversample(x, sample_rate)
    assert torch.equal(blocked, one_pass(interpolated_peak, x, sample_rate))
    assert torch.equal(blocked, over.abs().reshape(1, 2, 9000, factor).amax(dim=-1))


@pytest.mark.parametrize("stereo_link", [True, False])
def test_peak_envelope_in_blocks(small_blocks, stereo_link):
    x = music((2, 2, 8000), seed=4)
    with torch.no_grad():
        blocked = Fn.peak_envelope(x, 48000, True, stereo_link)
        over, factor = true_peak_oversample(x, 48000)  # the envelope's definition, written out
        inter = over.abs().reshape(2, 2, 8000, factor).amax(dim=-1)
        previous = torch.nn.functional.pad(inter[..., :-1], (1, 0))
        expected = torch.maximum(x.abs(), torch.maximum(inter, previous))
        expected = expected.amax(dim=1, keepdim=True) if stereo_link else expected
    assert torch.equal(blocked, expected)
    assert torch.equal(blocked, one_pass(Fn.peak_envelope, x, 48000, True, stereo_link))


def test_limiter_render_in_blocks(small_blocks):
    x = music((2, 20000), seed=5) * 3.0
    chain = baseline_chain(48000, 3.0, -1.0, 10.0, 5.0, True, 1000.0)
    with torch.no_grad():
        blocked = chain(x)
    assert torch.equal(blocked, one_pass(chain, x))
    with torch.no_grad():
        assert float(drl.true_peak(blocked, 48000).amax()) <= -1.0 + 0.05


def test_loudness_in_blocks(small_blocks):
    x = music((2, 48000 * 4), seed=6)
    with torch.no_grad():
        blocked = drl.integrated_loudness(x, 48000)
        momentary = drl.momentary_loudness(x, 48000)
        summary = loudness_summary(x, 48000)
    assert torch.equal(blocked, one_pass(drl.integrated_loudness, x, 48000))
    assert torch.equal(momentary, one_pass(drl.momentary_loudness, x, 48000))
    assert summary["integrated_lufs"] == float(blocked)
    assert summary["true_peak_dbtp"] == float(one_pass(drl.true_peak, x, 48000).max())
    torch.testing.assert_close(blocked.double(), drl.integrated_loudness(x.double(), 48000), atol=1e-5, rtol=0)


def test_band_weights_and_energies_in_blocks(small_blocks):
    bands = [(0.0, 200.0), (200.0, 2000.0), (2000.0, 24000.0)]  # tiling the axis: Parseval
    for n in (4001, 4000):
        weights = band_weights(n, 48000, bands, dtype=torch.float64)
        n_fft = fft_length(n)  # 4001 is padded to 4050
        bin_hz = 48000 / n_fft
        centre = torch.arange(n_fft // 2 + 1, dtype=torch.float64) * bin_hz
        low, high = (centre - bin_hz / 2).clamp_min(0.0), (centre + bin_hz / 2).clamp_max(24000.0)
        edges = torch.tensor(bands, dtype=torch.float64)
        expected = 2.0 * (torch.minimum(high, edges[:, 1:]) - torch.maximum(low, edges[:, :1])).clamp_min(0.0) / bin_hz
        assert torch.equal(weights, expected)
        x = music((2, n), seed=n)
        weights = band_weights(n, 48000, bands)
        with torch.no_grad():
            blocked = band_energies(x, weights)
        assert torch.equal(blocked, one_pass(band_energies, x, weights))
        torch.testing.assert_close(blocked.sum(dim=0).double(), x.double().square().sum(dim=-1), rtol=1e-5, atol=0)


def test_long_rows_transformed_one_at_a_time(monkeypatch):
    x = music((2, 3, 5001), seed=12, dtype=torch.float64)
    weights = band_weights(5001, 48000, [(0.0, 300.0), (300.0, 24000.0)], dtype=torch.float64)
    together = band_energies(x, weights)
    monkeypatch.setattr(drl.bands, "ROW_FFT_SAMPLES", 1000)
    by_row = band_energies(x, weights)
    assert by_row.shape == (2, 2, 3)
    torch.testing.assert_close(by_row, together, rtol=1e-12, atol=0)
    torch.testing.assert_close(by_row.sum(dim=0), x.square().sum(dim=-1), rtol=1e-12, atol=0)


def test_matched_residual_in_blocks(small_blocks):
    track = music((2, 5000), seed=7)
    output = 0.7 * track + 0.01 * music((2, 5000), seed=8)
    _, expected = drl.level_match(track.double(), output.double())
    torch.testing.assert_close(matched_residual(track, output), expected, rtol=0, atol=1e-12)
    part = slice(1234, 4321)
    torch.testing.assert_close(matched_residual(track, output, part), expected[:, part], rtol=0, atol=1e-12)
    single = matched_residual(track, output, dtype=torch.float32)
    assert single.dtype == torch.float32
    torch.testing.assert_close(single, expected.float(), rtol=0, atol=1e-7)


def test_clips_carry_the_level_match_of_their_residual(small_blocks):
    track = music((2, 48000), seed=7)
    output = 0.7 * track + 0.01 * music((2, 48000), seed=8)
    g, _ = drl.level_match(track.double(), output.double())
    torch.testing.assert_close(match_gain(track, output), g.reshape(2, 1), rtol=1e-12, atol=0)
    clips = listening_clips(track, output, 48000, seconds=0.5)
    torch.testing.assert_close(clips.match_gain, match_gain(track, output), rtol=0, atol=0)
    again = matched_residual(track, output, clips.part, gain=clips.match_gain)
    torch.testing.assert_close(again, matched_residual(track, output, clips.part), rtol=0, atol=0)


@pytest.mark.parametrize("bits", [16, 24])
def test_tpdf_quantise_is_the_written_out_formula(bits):
    audio = music((2, 3000), seed=9, dtype=torch.float64).numpy()
    scale = 2.0 ** (bits - 1)
    rng = np.random.default_rng(11)
    dither = rng.random(audio.shape) - rng.random(audio.shape)
    expected = np.clip(np.floor(audio * scale + dither + 0.5), -scale, scale - 1).astype(np.int64)
    np.testing.assert_array_equal(tpdf_quantise(audio, bits, 11), expected)


@pytest.mark.parametrize("oversample", [1, 2])
def test_saturator_in_place_without_a_gradient(oversample):
    x = music((2, 2, 3000), seed=10)
    params = [torch.tensor([6.0, -3.0]), torch.tensor([0.1, 0.0]), torch.tensor([0.3, 1.0]), torch.tensor([0.0, 2.0])]
    with torch.no_grad():
        in_place = Fn.saturate_bct(x, *params, oversample=oversample, unity_gain=True)
    assert torch.equal(
        in_place, one_pass(lambda y: Fn.saturate_bct(y, *params, oversample=oversample, unity_gain=True), x)
    )
    assert torch.equal(x, music((2, 2, 3000), seed=10))  # the input is left alone


def test_masked_reference_kept_in_one_allocation(monkeypatch):
    monkeypatch.setattr(drl.nmr, "CHUNK_FRAMES", 8)  # 60 frames of 1024 samples: 8 chunks
    x = music((2, 30000), seed=13)
    y = 0.8 * x + 0.01 * music((2, 30000), seed=14)
    masked = MaskedReference(x, 48000)
    assert len(masked.chunks) == 8
    assert len({chunk.spectrum.untyped_storage().data_ptr() for chunk in masked.chunks}) == 1
    assert torch.equal(masked.nmr_db(y), drl.nmr_db(x, y, 48000))
