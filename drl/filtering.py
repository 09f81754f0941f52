"""Exact, differentiable application of IIR biquad cascades, on the CPU or a GPU, with no loop over samples.

A stable IIR filter's impulse response ``h`` decays geometrically with its largest pole radius ``r``; after
``L`` samples (see :func:`impulse_response_length`) ``|h|`` is below ``1e-34`` of its scale. The filter is
applied by overlap-save: frames of ``N >= 2 L`` samples that overlap by ``L`` are transformed, multiplied by
the filter's exact frequency response ``B(e^jw) / A(e^jw)`` sampled on the ``N``-point grid (the DFT of
``h`` aliased with period ``N``) and transformed back; the last ``N - L`` outputs of each frame are kept.
Short signals use one frame of ``N >= T + L``. The result equals the recursive filter started from rest
(``scipy.signal.sosfilt`` with zero state) to float rounding, since the truncated tail is below float64
noise. Frames of a few times ``L`` keep the FFTs in cache and the rounding local. The gradient is the
same filter run backwards in time (the transpose of a causal convolution), one more filtering pass.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import torch
from torch import nn

from drl.fft import fft_length, overlap_save

# |h[n]| <= C n^(m-1) r^n; running to twice the length where r^n = 1e-17 leaves r^n = 1e-34, which covers the
# polynomial factor of repeated poles for any response shorter than 1e6 samples.
_DECAY = 1e-17
_CACHE_SIZE = 4


def check_sos(sos) -> np.ndarray:
    """Validate second-order sections ``(n_sections, 6)`` rows ``[b0, b1, b2, a0, a1, a2]``; float64 array.

    Raises ValueError for a wrong shape, non-finite or zero ``a0`` coefficients, or poles on or outside the
    unit circle (the filter would not be stable, and an FFT cannot apply it exactly).
    """
    array = np.asarray(sos.detach().cpu() if isinstance(sos, torch.Tensor) else sos, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 6 or array.shape[0] == 0:
        raise ValueError(f"sos must have shape (n_sections, 6), got {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError("sos contains non-finite coefficients")
    if np.any(array[:, 3] == 0):
        raise ValueError("sos has a section with a0 == 0")
    array = array / array[:, 3:4]
    radius = pole_radius(array)
    if radius >= 1.0:
        raise ValueError(f"sos is not stable: largest pole radius {radius:.6f} >= 1")
    return array


def pole_radius(sos: np.ndarray) -> float:
    """Largest pole magnitude of normalised sections (``a0 == 1``)."""
    radii = [np.abs(np.roots([1.0, a1, a2])).max(initial=0.0) for a1, a2 in sos[:, 4:6]]
    return float(max(radii))


def impulse_response_length(sos) -> int:
    """Samples after which the cascade's impulse response is below float64 noise (see module docstring)."""
    sos = check_sos(sos)
    radius = pole_radius(sos)
    if radius == 0.0:  # FIR sections: exactly 2 samples of memory each
        return 2 * sos.shape[0] + 1
    return 2 * math.ceil(math.log(_DECAY) / math.log(radius)) + 4 * sos.shape[0] + 16


def frequency_response(sos, n_fft: int, *, device=None, dtype=torch.float64) -> torch.Tensor:
    """``H(e^{j 2 pi k / n_fft})`` for ``k = 0 .. n_fft // 2``, complex of ``dtype``'s precision."""
    sos = torch.as_tensor(check_sos(sos), dtype=torch.float64, device=device)
    k = torch.arange(n_fft // 2 + 1, dtype=torch.float64, device=device)
    z1 = torch.polar(torch.ones_like(k), -2.0 * math.pi * k / n_fft)  # e^{-jw}
    z2 = z1 * z1
    response = torch.ones_like(z1)
    for b0, b1, b2, _, a1, a2 in sos:
        response = response * ((b0 + b1 * z1 + b2 * z2) / (1.0 + a1 * z1 + a2 * z2))
    complex_dtype = torch.complex64 if dtype == torch.float32 else torch.complex128
    return response.to(complex_dtype)


def frame_length(response_length: int) -> int:
    """Overlap-save FFT size for a response of ``response_length`` samples (about 8x it, >= 2^15)."""
    return fft_length(max(8 * response_length, 1 << 15))


def _single_frame(audio: torch.Tensor, response: torch.Tensor, n_fft: int) -> torch.Tensor:
    spectrum = torch.fft.rfft(audio, n=n_fft, dim=-1)
    return torch.fft.irfft(spectrum * response, n=n_fft, dim=-1)[..., : audio.shape[-1]]


def _plan(length: int, response_length: int) -> tuple[int, bool]:
    """FFT size and whether to use overlap-save for a signal of ``length`` samples."""
    single = fft_length(length + response_length)
    frame = frame_length(response_length)
    return (single, False) if single <= frame else (frame, True)


def _apply(audio: torch.Tensor, response_of, response_length: int) -> torch.Tensor:
    n_fft, framed = _plan(audio.shape[-1], response_length)
    response = response_of(n_fft, audio.device, audio.dtype)
    if framed:
        return overlap_save(audio, response, n_fft, response_length)
    return _single_frame(audio, response, n_fft)


class _CausalFilter(torch.autograd.Function):
    """Linear time-invariant filtering whose backward is the same filter run backwards in time.

    The operator is a lower-triangular Toeplitz matrix; its transpose is the same matrix conjugated by time
    reversal, so the gradient costs one more filtering pass and keeps no frames alive.
    """

    @staticmethod
    def forward(ctx, audio, response_of, response_length):
        ctx.response_of = response_of
        ctx.response_length = response_length
        return _apply(audio, response_of, response_length)

    @staticmethod
    def backward(ctx, grad):
        grad_audio = _CausalFilter.apply(grad.flip(-1), ctx.response_of, ctx.response_length).flip(-1)
        return grad_audio, None, None


def _filter(audio: torch.Tensor, response_of, response_length: int) -> torch.Tensor:
    if not isinstance(audio, torch.Tensor) or not audio.is_floating_point():
        raise ValueError("audio must be a floating-point torch.Tensor")
    if audio.dtype not in (torch.float32, torch.float64):
        audio = audio.float()
    if audio.shape[-1] == 0:
        return audio
    return _CausalFilter.apply(audio, response_of, response_length)


def sosfilt(audio: torch.Tensor, sos) -> torch.Tensor:
    """Filter ``audio`` ``(..., T)`` along its last axis with the cascade ``sos`` from rest.

    Same result as ``scipy.signal.sosfilt(sos, audio)`` (to float rounding), differentiable with respect to
    ``audio``, on ``audio``'s device. Float32 audio is filtered in float32, float64 in float64.
    """
    sos = check_sos(sos)

    def response_of(n_fft, device, dtype):
        return frequency_response(sos, n_fft, device=device, dtype=dtype)

    return _filter(audio, response_of, impulse_response_length(sos))


class SOSFilter(nn.Module):
    """A fixed biquad cascade as a module; frequency responses are cached per FFT size, device and dtype.

    ``forward(audio)`` filters ``(..., T)`` audio like :func:`sosfilt`.
    """

    def __init__(self, sos) -> None:
        super().__init__()
        self.sos = check_sos(sos)  # float64 numpy: module.float() must not round the coefficients
        self.response_length = impulse_response_length(sos)
        self._cache: OrderedDict = OrderedDict()

    def response(self, n_fft: int, device, dtype) -> torch.Tensor:
        key = (n_fft, str(device), dtype)
        cached = self._cache.get(key)
        if cached is None:
            cached = frequency_response(self.sos, n_fft, device=device, dtype=dtype)
            self._cache[key] = cached
            while len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return cached

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return _filter(audio, self.response, self.response_length)
