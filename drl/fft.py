"""FFT sizes and overlap-save convolution, shared by every FFT-based part of ``drl``.

One size rule, :func:`fft_length`: the smallest 5-smooth number (only prime factors 2, 3 and 5) at or above a
length, fast on pocketfft and cuFFT alike and never more than 25 % above the length for lengths past 8.
One long convolution, :func:`overlap_save`: frames of ``n_fft`` samples overlapping by the response's length
minus one, transformed, multiplied by the response's spectrum and transformed back, the overlap dropped.
Without a gradient to record the frames go through in blocks of about :data:`BLOCK_SAMPLES` output samples
(:func:`overlap_save_blocks`), so that only the output grows with the signal's length: each frame is
transformed exactly as in one pass, so the result is the same to the bit.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import nn

#: Output samples per block (per signal) of an overlap-save without a gradient: about 22 s at 48 kHz.
BLOCK_SAMPLES = 1 << 20


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


def records_gradient(*tensors: torch.Tensor) -> bool:
    """Whether autograd records operations on any of ``tensors`` here (grad mode on and one requires grad)."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def overlap_save_blocks(
    signal: torch.Tensor,
    spectrum: torch.Tensor,
    n_fft: int,
    overlap: int,
    length: int | None = None,
    block: int | None = None,
) -> Iterator[tuple[int, torch.Tensor]]:
    """:func:`overlap_save` piece by piece: ``(start, piece)`` pairs in order, ``piece`` ``(..., *S, n)`` the
    output samples ``start .. start + n - 1``, whole frames of about ``block`` samples each (at least one;
    default :data:`BLOCK_SAMPLES`)."""
    size = signal.shape[-1]
    length = size if length is None else length
    block = BLOCK_SAMPLES if block is None else block
    hop = n_fft - overlap
    n_frames = -(-length // hop)
    per_block = max(1, block // hop)
    spectrum = spectrum.unsqueeze(-2)
    extra = spectrum.ndim - 2
    for first in range(0, n_frames, per_block):
        count = min(per_block, n_frames - first)
        start = first * hop
        low, high = start - overlap, start + count * hop  # the input these frames read (zeros outside)
        piece = signal[..., max(low, 0) : min(high, size)]
        if low < 0 or high > size:
            piece = nn.functional.pad(piece, (max(0, -low), max(0, high - max(size, low))))
        frames = torch.fft.rfft(piece.unfold(-1, n_fft, hop), dim=-1)  # (..., count, bins)
        frames = frames.reshape(*frames.shape[:-2], *([1] * extra), *frames.shape[-2:])
        out = torch.fft.irfft(frames * spectrum, n=n_fft, dim=-1)[..., overlap:]
        yield start, out.reshape(*out.shape[:-2], count * hop)[..., : min(count * hop, length - start)]


def overlap_save(
    signal: torch.Tensor, spectrum: torch.Tensor, n_fft: int, overlap: int, length: int | None = None
) -> torch.Tensor:
    """The linear convolution of ``signal`` ``(..., T)`` with a response of at most ``overlap + 1`` taps whose
    ``n_fft``-point rfft is ``spectrum`` ``(*S, n_fft // 2 + 1)``, from rest: ``(..., *S, length)`` (default
    ``length`` T; the signal counts as zeros past its end), one output per leading index of ``spectrum``
    (several responses of one signal at the price of one forward transform). Without a gradient to record,
    block by block into one output (:func:`overlap_save_blocks`), the same values."""
    length = signal.shape[-1] if length is None else length
    whole = records_gradient(signal, spectrum)
    pieces = overlap_save_blocks(signal, spectrum, n_fft, overlap, length, length + n_fft if whole else None)
    first = next(pieces, None)
    if first is None:  # an empty output
        return signal.new_zeros(*signal.shape[:-1], *spectrum.shape[:-1], 0)
    start, piece = first
    if piece.shape[-1] == length:
        return piece
    out = piece.new_empty(*piece.shape[:-1], length)
    out[..., : piece.shape[-1]] = piece
    for start, piece in pieces:
        out[..., start : start + piece.shape[-1]] = piece
    return out
