"""Listening clips of a tuned setting: the input's loudest passage and the output there at one loudness, and the
residual raised to a stated level, so that an A/B is not decided by "louder sounds better".

Loudness is BS.1770 integrated loudness (:func:`drl.integrated_loudness`) of the clip itself; the matched
level is the quieter of the two (the louder one is turned down, nothing is raised into clipping), and all
clips are turned down further together when a sample peak would leave [-1, 1].
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import soundfile as sf
import torch

import drl
from drl.checks import check_number
from drl.fft import BLOCK_SAMPLES
from tuning.audio import loudest_start
from tuning.last_answer import LastAnswer

#: The level the residual is brought to (LUFS): near the matched clips, so that it can be heard at all.
RESIDUAL_LUFS = -23.0
#: The highest sample peak a clip may have: a 16-bit WAV's largest positive sample.
PEAK_CEILING = 1.0 - 2.0**-15


def loudest_excerpt(
    audio: torch.Tensor, sample_rate: int, seconds: float, reading: drl.LevelReading | None = None
) -> slice:
    """The ``seconds``-long passage of ``audio`` (C, T) with the most K-weighted energy (the mean of its
    400 ms momentary loudness windows), starting on the meter's 100 ms grid; the whole track when shorter.
    ``reading``: ``audio``'s :func:`drl.read_levels`, when read already."""
    length = min(audio.shape[-1], max(1, round(seconds * sample_rate)))
    if length < round(0.4 * sample_rate):
        return slice(0, length)
    start = loudest_start(audio.detach().cpu(), sample_rate, length, momentary=True, reading=reading)
    return slice(start, start + length)


def match_gain(track: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
    """The per-channel least-squares gain of ``track`` onto ``output`` (both (C, T)), float64 (C, 1): DRL's
    ``g``, summed block by block in float64 (no float64 copy of a whole track)."""
    track, output = track.detach().cpu(), output.detach().cpu()
    cross = torch.zeros(track.shape[:-1], dtype=torch.float64)
    power = torch.zeros_like(cross)
    for first in range(0, track.shape[-1], BLOCK_SAMPLES):
        x, y = track[..., first : first + BLOCK_SAMPLES].double(), output[..., first : first + BLOCK_SAMPLES].double()
        cross += (x * y).sum(dim=-1)
        power += x.square().sum(dim=-1)
    return (cross / power)[..., None]


def matched_residual(
    track: torch.Tensor,
    output: torch.Tensor,
    part: slice = slice(None),
    dtype: torch.dtype = torch.float64,
    gain: torch.Tensor | None = None,
) -> torch.Tensor:
    """What DRL measures, for listening and figures: ``output`` minus the per-channel least-squares gain times
    ``track`` (both (C, T); the gain over the whole track, :func:`match_gain`, or ``gain`` when it is known),
    on ``part`` of it, in ``dtype``. As :func:`drl.level_match` of float64 copies, but the float64 work runs
    block by block, so its sums round differently in the last bits."""
    track, output = track.detach().cpu(), output.detach().cpu()
    gain = match_gain(track, output) if gain is None else gain
    start, stop, _ = part.indices(track.shape[-1])
    residual = torch.empty(*track.shape[:-1], max(stop - start, 0), dtype=dtype)
    for first in range(start, stop, BLOCK_SAMPLES):
        last = min(first + BLOCK_SAMPLES, stop)
        x, y = track[..., first:last].double(), output[..., first:last].double()
        residual[..., first - start : last - start] = torch.addcmul(y, x, -gain)
    return residual


def _lufs(audio: torch.Tensor, sample_rate: int) -> float:
    return float(drl.integrated_loudness(audio, sample_rate))


def _peak(audio: torch.Tensor) -> float:
    return float(audio.abs().max()) if audio.numel() else 0.0


@dataclass
class Clips:
    """The three clips, float64 (C, T) at ``sample_rate``, from sample ``start`` of the track on, with the
    levels they play at (LUFS) and the gains (dB) that put them there, and the residual's level match over the
    whole track (``match_gain``, (C, 1): pass it to :func:`matched_residual` for more of the residual)."""

    sample_rate: int
    start: int
    input: torch.Tensor
    output: torch.Tensor
    residual: torch.Tensor
    matched_lufs: float
    input_gain_db: float
    output_gain_db: float
    residual_lufs: float | None  # None: the residual is silent (no 400 ms block above the meter's gates)
    residual_gain_db: float
    residual_own_lufs: float | None  # where the residual sits before it is raised
    residual_peak_limited: bool  # its peak kept it below the level asked for
    match_gain: torch.Tensor

    @property
    def part(self) -> slice:
        """Where the clips lie in the track (samples)."""
        return slice(self.start, self.start + self.input.shape[-1])

    @property
    def start_s(self) -> float:
        return self.start / self.sample_rate

    @property
    def seconds(self) -> float:
        return self.input.shape[-1] / self.sample_rate

    @property
    def passage(self) -> str:
        """Which part of the track the clips hold, in words."""
        return f"the loudest {self.seconds:.1f} s (from {self.start_s:.1f} s)"

    def describe(self, which: str) -> str:
        """One sentence on what ``which`` ("input", "output" or "residual") plays and at what level."""
        passage = self.passage
        if which in ("input", "output"):
            gain = self.input_gain_db if which == "input" else self.output_gain_db
            other = "output" if which == "input" else "input"
            change = "as it is" if abs(gain) < 0.005 else f"turned {'down' if gain < 0 else 'up'} {abs(gain):.2f} dB"
            return (
                f"{which.capitalize()}, {passage}, {change}: plays at {self.matched_lufs:.1f} LUFS, "
                f"loudness-matched with the {other} (BS.1770 integrated)."
            )
        if which != "residual":
            raise ValueError(f"no clip named {which!r}: input, output or residual")
        if self.residual_lufs is None:
            return f"Residual (output minus the gain-matched input), {passage}: silent."
        gain = self.residual_gain_db
        change = f"{'raised' if gain >= 0 else 'turned down'} {abs(gain):.1f} dB to {self.residual_lufs:.1f} LUFS"
        limited = " (its peak allows no more)" if self.residual_peak_limited else ""
        return (
            f"Residual (output minus the gain-matched input), {passage}, {change}{limited}; at its own level it "
            f"plays at {self.residual_own_lufs:.1f} LUFS."
        )


#: The last clips made.
_last_clips: LastAnswer[Clips] = LastAnswer()


def listening_clips(
    track: torch.Tensor,
    output: torch.Tensor,
    sample_rate: int,
    seconds: float = 10.0,
    residual_lufs: float = RESIDUAL_LUFS,
    reading: drl.LevelReading | None = None,
) -> Clips:
    """Clips of the loudest ``seconds`` of ``track`` (C, T) and of ``output`` (C, T) there, matched in loudness,
    and of the residual (``output`` minus the per-channel least-squares gain times ``track``, over the whole
    track: what DRL measures) brought to ``residual_lufs`` (lower when its peak would clip: the level reached
    is in :attr:`Clips.residual_lufs`). ``reading``: ``track``'s :func:`drl.read_levels`, when read already
    (the loudest passage is found from it)."""
    seconds = check_number("excerpt length", seconds, 0.4, unit="s")
    residual_lufs = check_number("residual level", residual_lufs, -70.0, 0.0, unit="LUFS")
    # TensorBoard's media and report.html ask for the same clips of the same final render: made once
    return _last_clips(
        (track, output),
        (sample_rate, seconds, residual_lufs),
        lambda: _make_clips(track, output, sample_rate, seconds, residual_lufs, reading),
    )


def _make_clips(track, output, sample_rate: int, seconds: float, residual_lufs: float, reading) -> Clips:
    if track.shape != output.shape or track.ndim != 2:
        raise ValueError(
            f"track and output must be (C, T) audio of one shape, got {tuple(track.shape)} and {tuple(output.shape)}"
        )
    track, output = track.detach().cpu(), output.detach().cpu()
    part = loudest_excerpt(track, sample_rate, seconds, reading)
    gain = match_gain(track, output)
    x, y, d = track[:, part].double(), output[:, part].double(), matched_residual(track, output, part, gain=gain)
    x_lufs, y_lufs = _lufs(x, sample_rate), _lufs(y, sample_rate)
    if not (math.isfinite(x_lufs) and math.isfinite(y_lufs)):
        raise ValueError("the loudest passage of the input or the output is silent: nothing to listen to")
    matched = min(x_lufs, y_lufs)
    peak = max(_peak(x) * 10 ** ((matched - x_lufs) / 20), _peak(y) * 10 ** ((matched - y_lufs) / 20))
    if peak > PEAK_CEILING:
        matched -= 20 * math.log10(peak / PEAK_CEILING)
    x_gain, y_gain = matched - x_lufs, matched - y_lufs

    d_own = _lufs(d, sample_rate)
    if math.isfinite(d_own):
        d_gain = residual_lufs - d_own
        d_peak = _peak(d) * 10 ** (d_gain / 20)
        limited = d_peak > PEAK_CEILING
        if limited:
            d_gain -= 20 * math.log10(d_peak / PEAK_CEILING)
        d_level, d_own_level = d_own + d_gain, d_own
    else:
        d_gain, d_level, d_own_level, limited = 0.0, None, None, False
        d = torch.zeros_like(d)
    return Clips(
        sample_rate,
        part.start,
        x * 10 ** (x_gain / 20),
        y * 10 ** (y_gain / 20),
        d * 10 ** (d_gain / 20),
        matched,
        x_gain,
        y_gain,
        d_level,
        d_gain,
        d_own_level,
        limited,
        gain,
    )


def wav_bytes(audio: torch.Tensor, sample_rate: int, subtype: str = "PCM_16") -> bytes:
    """``audio`` (C, T) in [-1, 1] as the bytes of a WAV file, all its channels (``subtype``: PCM_16, PCM_24)."""
    if audio.ndim != 2:
        raise ValueError(f"expected (C, T) audio, got shape {tuple(audio.shape)}")
    buffer = io.BytesIO()
    sf.write(buffer, audio.detach().double().cpu().numpy().T, sample_rate, format="WAV", subtype=subtype)
    return buffer.getvalue()
