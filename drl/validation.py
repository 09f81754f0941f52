"""Input checks shared by every layer: audio tensors, sample rates, shapes.

Every check raises ``ValueError`` with a message that names the offending input, so bad audio never turns
into a NaN or a silently wrong number further down.
"""

from __future__ import annotations

import torch

MIN_SAMPLE_RATE = 8_000
MAX_SAMPLE_RATE = 384_000


def check_audio(audio: torch.Tensor, name: str = "audio", *, allow_half: bool = True) -> torch.Tensor:
    """Validate an audio tensor of shape ``(T,)``, ``(C, T)`` or ``(B, C, T)`` and return it as float.

    Half-precision audio is upcast to float32 (sums of squares overflow float16). Integer PCM is refused:
    convert it to float in [-1, 1] first (``soundfile.read(..., dtype="float32")`` does).
    """
    if not isinstance(audio, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(audio).__name__}")
    if not audio.is_floating_point():
        raise ValueError(
            f"{name} has integer dtype {audio.dtype}; pass float audio in [-1, 1] "
            "(e.g. soundfile.read(path, dtype='float32'))"
        )
    if audio.ndim not in (1, 2, 3):
        raise ValueError(f"{name} must have shape (T,), (C, T) or (B, C, T), got shape {tuple(audio.shape)}")
    if audio.shape[-1] == 0:
        raise ValueError(f"{name} is empty (0 samples)")
    if audio.dtype in (torch.float16, torch.bfloat16):
        if not allow_half:
            raise ValueError(f"{name} must be float32 or float64, got {audio.dtype}")
        audio = audio.float()
    check_finite(audio, name)
    return audio


def check_finite(tensor: torch.Tensor, name: str) -> None:
    """Raise ValueError when ``tensor`` holds NaN or Inf."""
    if not bool(torch.isfinite(tensor).all()):
        n_nan = int(torch.isnan(tensor).sum())
        n_inf = int(torch.isinf(tensor).sum())
        raise ValueError(f"{name} contains non-finite values ({n_nan} NaN, {n_inf} Inf)")


def check_sample_rate(sample_rate: float, name: str = "sample_rate") -> int:
    """Return ``sample_rate`` as int after checking it lies in 8 kHz..384 kHz."""
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, float)):
        raise ValueError(f"{name} must be a number in Hz, got {sample_rate!r}")
    if sample_rate != int(sample_rate):
        raise ValueError(f"{name} must be a whole number of Hz, got {sample_rate}")
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise ValueError(
            f"{name} must be within {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz, got {sample_rate}"
        )
    return int(sample_rate)


def check_same_channels(reference: torch.Tensor, processed: torch.Tensor) -> None:
    """Raise ValueError when two signals differ in rank or in channel/batch dimensions."""
    if reference.shape[:-1] != processed.shape[:-1]:
        raise ValueError(
            "reference and processed must have the same channel layout: "
            f"shapes {tuple(reference.shape)} and {tuple(processed.shape)}"
        )


def to_batch_channels_time(audio: torch.Tensor) -> torch.Tensor:
    """View ``(T,)``, ``(C, T)`` or ``(B, C, T)`` audio as ``(B, C, T)``."""
    if audio.ndim == 1:
        return audio[None, None]
    if audio.ndim == 2:
        return audio[None]
    return audio


def from_batch_channels_time(audio: torch.Tensor, like_ndim: int) -> torch.Tensor:
    """Undo :func:`to_batch_channels_time` for a tensor whose leading dims are ``(B, C)``."""
    if like_ndim == 1:
        return audio[0, 0]
    if like_ndim == 2:
        return audio[0]
    return audio
