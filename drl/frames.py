"""Frame-wise DRL: the level is matched per short frame instead of per channel, so slow gain changes
(compression, fades, automation) stop counting as distortion and what remains is the fast, nonlinear part.

Frames of ``frame_ms`` are cut with a periodic Hann window at a hop of half a frame, so frame edges add
nothing; energies are therefore weighted by the squared window, whose overlapping copies sum to between 0.5 and
1 along each hop (the same weight applies to residual and reference). Per frame k and channel, with sums
weighted by the squared window,

    g_k = <x, y>_k / <x, x>_k,    ||d_k||^2 = <y - g_k x, y - g_k x>_k,    ||g_k x||^2 = g_k^2 <x, x>_k

and the frame-wise DRL of a channel is 10 log10(sum_k ||d_k||^2 / sum_k ||g_k x||^2), floored softly like the
plain DRL. A frame where the reference is silent counts all of ``y`` there as residual.

The windowed sums come from half-frame blocks (a reshape, no copy) times the two halves of the window, so the
cost is three products and three thin matrix products over the signal, starting from the plain nulling's
residual.
"""

from __future__ import annotations

import math

import torch

from drl.checks import check_number, check_sample_rate


def frame_length(sample_rate: int, frame_ms: float) -> int:
    """An even number of samples closest to ``frame_ms`` (at least 2), after checking ``frame_ms``."""
    frame_ms = check_number("frame_ms", frame_ms, 0.0, unit="ms", low_open=True)
    sample_rate = check_sample_rate(sample_rate)
    return max(2, 2 * round(frame_ms * sample_rate / 2000.0))


def _energy_window(length: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The squared periodic Hann window, shape (2, length // 2): its first and second halves."""
    n = torch.arange(length, dtype=torch.float64, device=device)
    window = (0.5 - 0.5 * torch.cos(2 * math.pi * n / length)).square()
    return window.reshape(2, length // 2).to(dtype)


def framed_sums(product: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Sums of ``product (..., T)`` weighted by the squared Hann ``window`` (its two halves, ``(2, length // 2)``
    from :func:`_energy_window`), over frames of the window's length at a half-frame hop, the first frame
    starting half a frame before the signal and the last ending at or past its end (so every sample lies in two
    frames), shape ``(..., n_frames)``, float64.

    The signal is read in place as half-frame blocks (only a partial last block is copied): each block's
    sums under the window's first and second halves, then frame k = first half of block k-1 + second half
    of block k, with empty blocks before the start and after the end.
    """
    half = window.shape[-1]
    n_full = product.shape[-1] // half
    window = window.transpose(0, 1)
    halves = [product[..., : n_full * half].reshape(*product.shape[:-1], n_full, half) @ window]
    if product.shape[-1] > n_full * half:
        rest = product[..., n_full * half :]
        halves.append(torch.nn.functional.pad(rest, (0, half - rest.shape[-1]))[..., None, :] @ window)
    halves = torch.cat(halves, dim=-2) if len(halves) > 1 else halves[0]  # (..., n_blocks, 2)
    halves = torch.nn.functional.pad(halves, (0, 0, 1, 1))
    return (halves[..., :-1, 0] + halves[..., 1:, 1]).double()


def frame_energies(
    reference: torch.Tensor, residual: torch.Tensor, gain: torch.Tensor, length: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Residual and matched-reference energies per channel after frame-wise level matching, float64 ``(...)``.

    Takes the plain (per-channel) nulling ``processed = gain * reference + residual`` rather than ``processed``
    itself: a frame's gain is then ``gain + <x, d>_k / <x, x>_k`` and its residual energy
    ``<d, d>_k - <x, d>_k^2 / <x, x>_k``, whose cancellation is relative to the residual, not to the signal, so
    identical or gain-changed signals still read at the floor in float32. ``length``: see :func:`frame_length`.
    """
    x, d = reference, residual
    window = _energy_window(length, x.dtype, x.device)
    xx = framed_sums(x.square(), window)
    xd = framed_sums(x * d, window)
    dd = framed_sums(d.square(), window)
    has_reference = xx > 0
    correction = torch.where(has_reference, xd / torch.where(has_reference, xx, torch.ones_like(xx)), 0.0)
    frame_residual = (dd - correction * xd).clamp_min(0.0)  # rounding can leave a tiny negative for a null
    matched = torch.where(has_reference, (gain[..., None] + correction).square() * xx, 0.0)
    return frame_residual.sum(dim=-1), matched.sum(dim=-1)
