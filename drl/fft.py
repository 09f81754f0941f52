"""FFT sizes and overlap-save convolution, shared by every FFT-based part of ``drl``.

One size rule, :func:`fft_length`: the smallest 5-smooth number (only prime factors 2, 3 and 5) at or above a
length, fast on pocketfft and cuFFT alike and never more than 25 % above the length for lengths past 8.
One long convolution, :func:`overlap_save`: frames of ``n_fft`` samples overlapping by the response's length
minus one, transformed, multiplied by the response's spectrum and transformed back, the overlap dropped.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def fft_length(n: int) -> int:
    """The smallest integer >= ``n`` whose only prime factors are 2, 3 and 5."""
    best = 1 << max(0, math.ceil(math.log2(max(n, 1))))
    power5 = 1
    while power5 < best:
        power35 = power5
        while power35 < best:
            candidate = power35 * (1 << max(0, math.ceil(math.log2(n / power35))))
            best = min(best, candidate)
            power35 *= 3
        power5 *= 5
    return best


def overlap_save(signal: torch.Tensor, spectrum: torch.Tensor, n_fft: int, overlap: int) -> torch.Tensor:
    """The linear convolution of ``signal`` ``(..., T)`` with a response of at most ``overlap + 1`` taps whose
    ``n_fft``-point rfft is ``spectrum`` ``(*S, n_fft // 2 + 1)``, from rest: ``(..., *S, T)``, one output per
    leading index of ``spectrum`` (several responses of one signal at the price of one forward transform)."""
    length = signal.shape[-1]
    hop = n_fft - overlap
    n_frames = -(-length // hop)
    padded = nn.functional.pad(signal, (overlap, n_frames * hop - length))
    frames = torch.fft.rfft(padded.unfold(-1, n_fft, hop), dim=-1)  # (..., n_frames, bins)
    extra = spectrum.ndim - 1
    frames = frames.reshape(*frames.shape[:-2], *([1] * extra), *frames.shape[-2:])
    out = torch.fft.irfft(frames * spectrum.unsqueeze(-2), n=n_fft, dim=-1)[..., overlap:]
    return out.reshape(*out.shape[:-2], n_frames * hop)[..., :length]
