"""Test signals: pink noise and a dense synthetic music mix (numpy float64), and stereo noise in sections of
set levels (torch float32) for the tuning tests."""

from functools import lru_cache

import numpy as np
import torch


def pink_noise(n: int, seed: int, channels: int = 1, rms: float = 0.1) -> np.ndarray:
    """(channels, n) noise with a 1/f power spectrum (DC and Nyquist empty)."""
    rng = np.random.default_rng(seed)
    bins = n // 2 + 1
    spectrum = rng.standard_normal((channels, bins)) * np.exp(2j * np.pi * rng.random((channels, bins)))
    spectrum[:, 1:] /= np.sqrt(np.arange(1, bins))
    spectrum[:, 0] = 0
    spectrum[:, -1] = 0
    x = np.fft.irfft(spectrum, n)
    return x / x.std(axis=-1, keepdims=True) * rms


def music(seconds: float, sample_rate: int = 44100, seed: int = 0, channels: int = 1, rms: float = 0.1):
    """(channels, n) synthetic mix: bass notes with harmonics, kick, hi-hat noise and chords, 120 bpm 16ths."""
    return _music(seconds, sample_rate, seed, channels, rms).copy()


@lru_cache(maxsize=4)
def _music(seconds, sample_rate, seed, channels, rms):
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    out = np.zeros((channels, n))
    step = 0.25
    for index, start in enumerate(np.arange(0, seconds, step)):
        first = int(start * sample_rate)
        tt = t[: min(n - first, 3 * sample_rate)]  # events last at most 3 s
        note = 55 * 2 ** (rng.integers(0, 12) / 12)
        bass = sum(np.sin(2 * np.pi * note * k * tt + 6 * rng.random()) / k for k in range(1, 8)) * np.exp(-tt / 0.3)
        kick = np.sin(2 * np.pi * (50 + 100 * np.exp(-tt / 0.02)) * tt) * np.exp(-tt / 0.08)
        hat = np.diff(rng.standard_normal(len(tt)) * np.exp(-tt / 0.02), prepend=0.0)
        chord = np.zeros_like(tt)
        if index % 4 == 0:
            for semitone in (0, 4, 7, 11):
                f = 220 * 2 ** ((rng.integers(0, 5) + semitone) / 12)
                chord += sum(np.sin(2 * np.pi * f * k * tt + 6 * rng.random()) / k**1.5 for k in range(1, 6))
            chord *= 0.08 * np.exp(-tt / 1.0)
        for c in range(channels):
            out[c, first : first + len(tt)] += 0.3 * bass + 0.5 * kick + 0.1 * (0.7 + 0.3 * c) * hat + chord
    return out / np.sqrt((out**2).mean(axis=-1, keepdims=True)) * rms


def sectioned_noise(levels_db, block_s: float, sample_rate: int, seed: int = 0, dc_offset: float = 0.0):
    """Stereo noise (2, T), float32, in blocks of ``block_s`` seconds at ``levels_db`` (dBFS RMS each), plus
    ``dc_offset``."""
    gen = torch.Generator().manual_seed(seed)
    n = round(block_s * sample_rate)
    parts = [10 ** (level / 20) * torch.randn(2, n, generator=gen) for level in levels_db]
    return torch.cat(parts, dim=-1) + dc_offset
