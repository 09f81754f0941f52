"""Input checks shared by every layer: audio tensors, sample rates, shapes.

Every check raises ``ValueError`` with a message that names the offending input, so bad audio never turns
into a NaN or a silently wrong number further down.
"""

from __future__ import annotations

import math

import torch

MIN_SAMPLE_RATE = 8_000
MAX_SAMPLE_RATE = 384_000
# Audio laid out (samples, channels), as soundfile reads it, would pass as thousands of channels of a few
# samples. A last axis this short beside a channel axis this long is refused as that layout (7.1 has 8
# channels; no measure or effect here means anything on 8 samples, nor does any (C, T) audio have 16 channels
# of so few).
LAYOUT_MAX_LAST = 8
LAYOUT_MIN_CHANNELS = 16


def check_number(
    name: str,
    value,
    low: float | None = None,
    high: float | None = None,
    *,
    unit: str = "",
    low_open: bool = False,
    high_open: bool = False,
    integer: bool = False,
) -> float:
    """``value`` as a float (an int with ``integer``) after checking it is a finite number (not a bool) within
    ``low``..``high`` (either end open with ``low_open``/``high_open``, absent when None). The ValueError names
    ``name``, the range and the ``unit``."""
    kind = "a whole number" if integer else "a number"
    if low is not None and high is not None:
        what = (
            f"{kind} {'in' if not (low_open or high_open) else 'within'} "
            f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        )
    elif low is not None:
        what = f"{kind} {'>' if low_open else '>='} {low:g}"
    elif high is not None:
        what = f"{kind} {'<' if high_open else '<='} {high:g}"
    else:
        what = f"a finite {kind[2:]}"
    what += f" {unit}" if unit else ""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (not integer or float(value).is_integer())
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        if isinstance(value, float) and not math.isfinite(value):
            what = what.replace("a number", "a finite number", 1)
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return int(value) if integer else float(value)


def check_audio(
    audio: torch.Tensor, name: str = "audio", *, allow_half: bool = True, finite: bool = True
) -> torch.Tensor:
    """Validate an audio tensor of shape ``(T,)``, ``(C, T)`` or ``(B, C, T)`` and return it as float.

    Half-precision audio is upcast to float32 (sums of squares overflow float16). Integer PCM is refused:
    convert it to float in [-1, 1] first (``soundfile.read(..., dtype="float32")`` does). So is audio that
    looks transposed (see :func:`check_layout`). ``finite=False`` leaves the NaN/Inf scan to the caller (one
    that computes energies anyway can spot them there).
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
    check_layout(audio, name)
    if audio.shape[-1] == 0:
        raise ValueError(f"{name} is empty (0 samples)")
    if audio.dtype in (torch.float16, torch.bfloat16):
        if not allow_half:
            raise ValueError(f"{name} must be float32 or float64, got {audio.dtype}")
        audio = audio.float()
    if finite:
        check_finite(audio, name)
    return audio


def check_layout(audio: torch.Tensor, name: str = "audio") -> None:
    """Raise ValueError when ``(C, T)`` or ``(B, C, T)`` audio looks laid out ``(samples, channels)``: a last
    axis of at most :data:`LAYOUT_MAX_LAST` (8) beside a channel axis of :data:`LAYOUT_MIN_CHANNELS` (16) or
    more. The message names the transpose that fixes it."""
    if audio.ndim < 2 or audio.shape[-1] > LAYOUT_MAX_LAST or audio.shape[-2] < LAYOUT_MIN_CHANNELS:
        return
    shape = tuple(audio.shape)
    fixed = shape[:-2] + (shape[-1], shape[-2])
    if audio.ndim == 2:
        looks, wanted, fix = "(samples, channels)", "(channels, samples)", f"{name}.T"
    else:
        looks, wanted, fix = "(batch, samples, channels)", "(batch, channels, samples)", f"{name}.transpose(1, 2)"
    raise ValueError(
        f"{name} of shape {shape} looks like {looks} (the layout soundfile reads); pass {fix}, of shape {fixed} "
        f"{wanted}"
    )


def check_finite(tensor: torch.Tensor, name: str) -> None:
    """Raise ValueError when ``tensor`` holds NaN or Inf."""
    # Any NaN or Inf makes the sum non-finite, so a finite sum (one cheap reduction, no boolean tensor)
    # settles the common case; only a non-finite sum (or a finite overflow) needs the full scan.
    if tensor.dtype.is_floating_point and bool(torch.isfinite(tensor.sum())):
        return
    if not bool(torch.isfinite(tensor).all()):
        n_nan = int(torch.isnan(tensor).sum())
        n_inf = int(torch.isinf(tensor).sum())
        raise ValueError(f"{name} contains non-finite values ({n_nan} NaN, {n_inf} Inf)")


def check_sample_rate(sample_rate: float, name: str = "sample_rate") -> int:
    """Return ``sample_rate`` as int after checking it is a whole number of Hz in 8 kHz..384 kHz."""
    return check_number(name, sample_rate, MIN_SAMPLE_RATE, MAX_SAMPLE_RATE, unit="Hz", integer=True)


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


def check_pair(
    reference: torch.Tensor, processed: torch.Tensor, *, same_length: bool = True, finite: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate a (reference, processed) pair and return both as floats of one common dtype.

    Checks each with :func:`check_audio`, then device, channel layout and (unless ``same_length=False``) length.
    """
    reference = check_audio(reference, "reference", finite=finite)
    processed = check_audio(processed, "processed", finite=finite)
    if reference.device != processed.device:
        raise ValueError(
            f"reference and processed must be on the same device, got {reference.device} and {processed.device}"
        )
    check_same_channels(reference, processed)
    if same_length and reference.shape[-1] != processed.shape[-1]:
        raise ValueError(
            f"reference has {reference.shape[-1]} samples but processed has {processed.shape[-1]}; "
            "pass signals of equal length (or align them first)"
        )
    dtype = torch.promote_types(reference.dtype, processed.dtype)
    return reference.to(dtype), processed.to(dtype)


def energy(signal: torch.Tensor) -> torch.Tensor:
    """``sum_t signal^2`` over the last axis, in float64 (the sum itself in the signal's dtype, which
    accumulates in cascades: see :func:`drl.metric.dot`)."""
    return signal.square().sum(dim=-1).double()


def check_energies(
    named: dict[str, torch.Tensor], known: dict[str, torch.Tensor] | None = None
) -> dict[str, torch.Tensor]:
    """Per-channel energies ``sum_t audio^2`` (shape ``audio.shape[:-1]``, float64, differentiable) of named
    signals, after checking with one host sync that each channel's energy is positive and finite.

    ``known`` supplies energies computed already (for instance ``||y||^2 = ||d||^2 + ||g x||^2``). Raises
    ValueError naming the signal: NaN/Inf samples, a silent channel (or one too quiet to square in its dtype),
    or an energy that overflows. Replaces :func:`check_finite` for callers that need energies anyway.
    """
    known = known or {}
    energies = {name: known[name] if name in known else energy(audio) for name, audio in named.items()}
    counts = torch.stack(
        [torch.stack([(~torch.isfinite(e.detach())).sum(), (e.detach() <= 0).sum()]) for e in energies.values()]
    ).tolist()
    for (name, audio), (not_finite, silent) in zip(named.items(), counts):
        if not_finite:
            check_finite(audio, name)
            raise ValueError(f"{name} is too loud: its energy overflows {audio.dtype} in {not_finite} channel(s)")
        if silent:
            raise ValueError(
                f"{name} is silent in {silent} channel(s) (or too quiet for {audio.dtype}); DRL is undefined"
            )
    return energies
