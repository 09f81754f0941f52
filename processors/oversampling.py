"""Zero-phase polyphase resampling by an integer factor with a Kaiser-windowed sinc (for nonlinear stages).

``upsample(x, L)`` has length T L with sample ``n L`` at time ``n`` (aligned, no delay); ``downsample(v, L)``
band-limits to below the original Nyquist and keeps every L-th sample, aligned the same way. Both are linear,
differentiable (FFT convolution) and run on any device.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

TAPS_PER_SIDE = 32  # low-rate samples on each side of the centre
KAISER_BETA = 10.0  # about -100 dB side lobes
PASSBAND = 0.92  # cutoff as a fraction of the original Nyquist: stopband starts close to it


@functools.lru_cache(maxsize=16)
def _kernel_np(factor: int) -> np.ndarray:
    n_taps = 2 * TAPS_PER_SIDE * factor + 1
    t = np.arange(n_taps) - (n_taps - 1) / 2
    cutoff = PASSBAND * 0.5 / factor  # cycles per high-rate sample
    h = 2 * cutoff * np.sinc(2 * cutoff * t) * np.kaiser(n_taps, KAISER_BETA)
    return h / h.sum()


def _kernel(factor: int, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(_kernel_np(factor), dtype=like.dtype, device=like.device)


def _fft_filter(v: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Zero-phase FIR filtering of v (..., N) by the symmetric kernel h (odd length), same length, zeros
    outside the signal; FFT convolution (a direct conv1d with hundreds of taps at the high rate is slow)."""
    n, taps = v.shape[-1], h.shape[-1]
    size = 1 << (n + taps - 1 - 1).bit_length()
    spectrum = torch.fft.rfft(v, size) * torch.fft.rfft(h, size)
    centre = (taps - 1) // 2
    return torch.fft.irfft(spectrum, size)[..., centre : centre + n]


def upsample(x: torch.Tensor, factor: int) -> torch.Tensor:
    """(B, C, T) -> (B, C, T factor), band-limited interpolation aligned with x."""
    if factor == 1:
        return x
    b, c, t = x.shape
    stuffed = torch.nn.functional.pad(x.unsqueeze(-1), (0, factor - 1)).reshape(b, c, t * factor)
    return _fft_filter(stuffed, _kernel(factor, x) * factor)


def downsample(v: torch.Tensor, factor: int) -> torch.Tensor:
    """(B, C, T factor) -> (B, C, T): anti-alias low-pass, then every factor-th sample (aligned)."""
    if factor == 1:
        return v
    return _fft_filter(v, _kernel(factor, v))[..., ::factor]
