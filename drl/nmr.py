"""The noise-to-mask ratio (NMR): the distortion residual weighted by what the reference masks, frame by frame.

DRL counts residual energy; the ear does not. A limiter's gain riding the music leaves a residual shaped like
the music itself, in the same critical bands and moments, where the music masks it; a clipper's harmonics land
in bands where the music is quiet, where nothing masks them. The NMR (the idea of Brandenburg's NMR meter and of
PEAQ's NMR, ITU-R BS.1387) compares the residual with the masking threshold of the reference, per critical band
and short frame. Per channel:

1. Short-time spectra ``X_k``, ``Y_k`` of the reference ``x`` and the processed signal ``y``: periodic Hann
   frames of ``n`` samples (1024 at 44.1 and 48 kHz, about 21 ms; :func:`drl.masking.fft_length`), half a frame
   apart, the first centred on the first sample (every sample lies in two frames).
2. The level matched per frame: ``g_k = Re<X_k, Y_k> / <X_k, X_k>``, residual ``D_k = Y_k - g_k X_k``. Slow
   gain changes (a limiter's or compressor's gain riding the music, fades) are not distortion here; what a
   frame's spectrum gains or loses in shape is. A frame cannot be turned down by more than 40 dB against the
   channel's gain ``g = <x, y> / <x, x>``: ``|g_k| >= 0.01 |g|`` (a muted frame is distortion, as loud as the
   music it lost), and a frame where the reference is silent takes ``g``.
3. Band powers: the bins summed into critical bands of 0.5 Bark up to the Nyquist frequency, as mean squares
   (Parseval), ``P_kb`` of the reference and ``R_kb`` of the residual, calibrated so that the reference plays
   at ``listening_level_db`` dB SPL RMS (75 by default; over all channels of the signal).
4. The masking threshold ``M_kb`` of the reference (:func:`drl.masking.masking_threshold`): ``P_kb`` spread
   across bands, lowered by the masking offset, held by forward masking, plus the threshold in quiet.
5. ``NMR = 10 log10(mean_{k, b} R_kb / (g_k^2 M_kb))``: the residual's power in the reference's scale against
   what the reference masks, averaged over frames and bands (0 dB: on average at the threshold; PEAQ's "total
   NMR"), floored softly like DRL (identical signals, or any gain of them, read ``floor_db``).

Lower is cleaner. The bands reach the Nyquist frequency: what the masking and the threshold in quiet let
through at 16 kHz counts as it does at 1 kHz. The frames are transformed in chunks, so memory stays bounded
on long signals; the gradient flows to both signals.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from drl import masking
from drl.checks import (
    check_audio,
    check_energies,
    check_number,
    check_pair,
    check_sample_rate,
    energy,
    to_batch_channels_time,
)

#: The reference's presentation level, dB SPL RMS.
DEFAULT_LISTENING_LEVEL_DB = 75.0
#: Frames transformed at once (about 1 M samples of spectra at 1024 points).
CHUNK_FRAMES = 2048
#: The smallest frame gain, relative to the channel's gain (-40 dB).
MIN_FRAME_GAIN = 0.01


class Analysis:
    """Frames, window and critical bands of one sample rate, dtype and device (see :func:`analysis`)."""

    def __init__(self, sample_rate: int, dtype: torch.dtype, device) -> None:
        self.n_fft = masking.fft_length(sample_rate)
        self.hop = self.n_fft // 2
        self.hop_s = self.hop / sample_rate
        self.window = torch.hann_window(self.n_fft, periodic=True, dtype=dtype, device=device)
        self.bands = masking.Bands(sample_rate, self.n_fft, device=device)
        # Parseval: a frame's mean square is sum_k c_k |X_k|^2 with c = [1, 2, ..., 2, 1] / (n sum(window^2)),
        # folded into the grouping so that band powers come out as mean squares; each bin's row is repeated for
        # its real and imaginary parts, (2 bins, bands).
        weights = torch.full((self.n_fft // 2 + 1,), 2.0, dtype=torch.float64, device=device)
        weights[0] = weights[-1] = 1.0
        weights /= self.n_fft * float(self.window.double().square().sum())
        self.grouping = (self.bands.grouping * weights[:, None]).repeat_interleave(2, dim=0).to(dtype)

    def frames(self, signal: torch.Tensor) -> torch.Tensor:
        """``(N, T)`` -> ``(N, 1 + T // hop, n_fft)`` frames (a view of the zero-padded signal)."""
        zeros = signal.new_zeros(signal.shape[0], self.hop)  # cat, not pad: pad fills the whole copy first
        return torch.cat([zeros, signal, zeros], dim=-1).unfold(-1, self.n_fft, self.hop)


_ANALYSES: dict = {}


def analysis(sample_rate: int, dtype: torch.dtype, device) -> Analysis:
    """The cached :class:`Analysis` of a sample rate, dtype and device."""
    key = (int(sample_rate), dtype, str(device))
    if key not in _ANALYSES:
        _ANALYSES[key] = Analysis(sample_rate, dtype, device)
    return _ANALYSES[key]


def frame_gains(cross: torch.Tensor, power: torch.Tensor, track_gain: torch.Tensor) -> torch.Tensor:
    """``g_k = cross / power`` per frame, ``track_gain`` where the reference frame is silent, and at least
    :data:`MIN_FRAME_GAIN` times the track's in magnitude (the sign of ``g_k``, or the track's where it is 0)."""
    gain = torch.where(power > 0, cross / torch.where(power > 0, power, torch.ones_like(power)), track_gain)
    floor = MIN_FRAME_GAIN * track_gain.abs()
    sign = torch.where(gain != 0, torch.sign(gain), torch.sign(track_gain))
    return torch.where(gain.abs() >= floor, gain, sign * floor)


class ReferenceChunk(NamedTuple):
    """The reference's half of one chunk of frames: its spectra as real rows ``(N, k, 2 bins)``, each frame's
    power ``(N, k, 1)`` and masking threshold ``(N, k, bands)`` (float64, SPL units)."""

    spectrum: torch.Tensor
    power: torch.Tensor
    threshold: torch.Tensor


def _spectra(frames: torch.Tensor, setup: Analysis) -> torch.Tensor:
    """Windowed frames ``(N, k, n_fft)`` -> spectra as real rows ``(N, k, 2 bins)``: re and im of a bin side by
    side, so one matrix product groups them into bands (torch's complex arithmetic and its reductions over a
    last axis of 2 are several times slower)."""
    return torch.view_as_real(torch.fft.rfft(frames * setup.window)).flatten(-2)


def _reference_chunks(x: torch.Tensor, setup: Analysis, calibration: torch.Tensor):
    """The :class:`ReferenceChunk` of every :data:`CHUNK_FRAMES` frames of ``x`` ``(N, T)``, one at a time."""
    frames = setup.frames(x)
    context = masking.FORWARD_FRAMES  # earlier frames whose masking reaches into a chunk
    for start in range(0, frames.shape[1], CHUNK_FRAMES):
        first = max(start - context, 0)
        spectrum = _spectra(frames[:, first : start + CHUNK_FRAMES], setup)
        squares = spectrum.square()
        threshold = masking.masking_threshold(
            (squares @ setup.grouping).double() * calibration, setup.bands, setup.hop_s
        )
        skip = start - first
        yield ReferenceChunk(spectrum[:, skip:], squares[:, skip:].sum(dim=-1, keepdim=True), threshold[:, skip:])


def _kept_chunks(x: torch.Tensor, setup: Analysis, calibration: torch.Tensor) -> list[ReferenceChunk]:
    """Every :class:`ReferenceChunk` of ``x`` ``(N, T)``, copied into three tensors allocated once: views of
    them, which go back to the system as a whole when freed (the allocator keeps chunk-sized pieces)."""
    n_frames = 1 + x.shape[-1] // setup.hop  # as Analysis.frames cuts them
    store, kept = None, []
    for start, chunk in zip(range(0, n_frames, CHUNK_FRAMES), _reference_chunks(x, setup, calibration)):
        if store is None:
            store = ReferenceChunk(*(t.new_empty(t.shape[0], n_frames, t.shape[-1]) for t in chunk))
        views = ReferenceChunk(*(whole[:, start : start + chunk.spectrum.shape[1]] for whole in store))
        for view, value in zip(views, chunk):
            view.copy_(value)
        kept.append(views)
    return kept


def _ratio_sum(
    reference: ReferenceChunk,
    frames_y: torch.Tensor,
    setup: Analysis,
    track_gain: torch.Tensor,
    calibration: torch.Tensor,
) -> torch.Tensor:
    """``sum_{k,b} R_kb / (g_k^2 M_kb)`` over one chunk, ``(N,)`` float64."""
    spectrum_y = _spectra(frames_y, setup)
    cross = (reference.spectrum * spectrum_y).sum(dim=-1, keepdim=True)  # summed as power is: 1 for y = x
    gain = frame_gains(cross, reference.power, track_gain)
    residual = torch.addcmul(spectrum_y, reference.spectrum, gain, value=-1.0).square() @ setup.grouping
    tiny = torch.finfo(torch.float64).tiny
    return (residual.double() * calibration / (gain.double().square() * reference.threshold + tiny)).sum(dim=(-1, -2))


class MaskedReference:
    """The reference's half of the NMR computed once, to score many processed signals against one reference
    (a baseline grid, starting points, validations, a population): its frames' spectra and masking threshold.

    ``MaskedReference(reference, sample_rate)`` with ``reference`` of shape ``(T,)``, ``(C, T)`` or
    ``(B, C, T)`` (checked as :func:`nmr_db` checks it); ``nmr_db(processed)`` takes a signal of the same shape
    and returns what :func:`nmr_db` returns. Holds about ``2.1 T`` values per channel (a 3-minute stereo track at
    48 kHz: 140 MB in float32), where :func:`nmr_db` streams the same computation chunk by chunk.
    """

    def __init__(
        self, reference: torch.Tensor, sample_rate: int, listening_level_db: float = DEFAULT_LISTENING_LEVEL_DB
    ) -> None:
        reference = check_audio(reference, "reference", finite=False)
        check_energies({"reference": reference})
        self.shape, self.dtype = reference.shape, reference.dtype
        reference = to_batch_channels_time(reference)
        self.setup = analysis(check_sample_rate(sample_rate), reference.dtype, reference.device)
        self.x = reference.reshape(-1, reference.shape[-1])
        self.energy = energy(self.x)
        self.calibration = _calibration(reference, check_listening_level(listening_level_db))
        self.chunks = _kept_chunks(self.x, self.setup, self.calibration)

    def noise_to_mask(self, processed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean_{k,b} R_kb / (g_k^2 M_kb), 1)`` of ``processed`` (the reference's shape), float64, unchecked."""
        y = processed.reshape(-1, processed.shape[-1])
        track_gain = _track_gain(self.x, y, self.energy)
        frames_y = self.setup.frames(y)
        total = sum(
            _ratio_sum(chunk, frames_y[:, start : start + CHUNK_FRAMES], self.setup, track_gain, self.calibration)
            for chunk, start in zip(self.chunks, range(0, frames_y.shape[1], CHUNK_FRAMES))
        )
        return _mean(total, frames_y.shape[1], self.setup, self.shape[:-1])

    def nmr_db(self, processed: torch.Tensor, *, floor_db: float = -120.0) -> torch.Tensor:
        """The NMR of ``processed`` against the reference in dB per channel, as :func:`nmr_db`."""
        from drl.metric import check_floor_db, floored_ratio, ratio_to_db  # drl.metric imports this module

        floor_db = check_floor_db(floor_db)
        processed = check_audio(processed, "processed", finite=False)
        if processed.shape != self.shape:
            raise ValueError(f"processed has shape {tuple(processed.shape)}, the reference {tuple(self.shape)}")
        check_energies({"processed": processed})
        weighted, one = self.noise_to_mask(processed.to(self.dtype))
        return ratio_to_db(floored_ratio(weighted, one, floor_db)).to(self.dtype).reshape(self.shape[:-1])


def check_listening_level(listening_level_db) -> float:
    """``listening_level_db`` as a float after checking it lies within 20..120 dB SPL."""
    return check_number("listening_level_db", listening_level_db, 20.0, 120.0, unit="dB SPL")


def _calibration(reference: torch.Tensor, listening_level_db: float) -> torch.Tensor:
    """``(B*C, 1, 1)`` float64 factors putting the reference at ``listening_level_db`` dB SPL RMS over all
    channels of each item (band powers then read in SPL units)."""
    mean_square = energy(reference).mean(dim=-1, keepdim=True) / reference.shape[-1]  # (B, 1)
    return (10.0 ** (listening_level_db / 10.0) / mean_square).expand(reference.shape[:-1]).reshape(-1, 1, 1)


def _track_gain(x: torch.Tensor, y: torch.Tensor, x_energy: torch.Tensor) -> torch.Tensor:
    """The least-squares gain of each channel, ``(N, 1, 1)`` in the signals' dtype."""
    return ((x * y).sum(dim=-1).double() / x_energy).to(x.dtype)[:, None, None]


def _mean(total: torch.Tensor, n_frames: int, setup: Analysis, shape) -> tuple[torch.Tensor, torch.Tensor]:
    value = (total / (n_frames * setup.bands.count)).reshape(shape)
    return value, torch.ones_like(value)


def noise_to_mask(
    reference: torch.Tensor,
    processed: torch.Tensor,
    sample_rate: int,
    listening_level_db: float = DEFAULT_LISTENING_LEVEL_DB,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Unchecked core of :func:`nmr_db` on ``(B, C, T)`` signals: ``(mean_{k,b} R_kb / (g_k^2 M_kb), 1)``, both
    float64 ``(B, C)``, whose ratio is the NMR (a pair, so that :func:`drl.metric.floored_ratio` applies).
    Streams chunk by chunk: memory stays bounded on long signals."""
    setup = analysis(sample_rate, reference.dtype, reference.device)
    x = reference.reshape(-1, reference.shape[-1])
    y = processed.reshape(-1, processed.shape[-1])
    calibration = _calibration(reference, listening_level_db)
    track_gain = _track_gain(x, y, energy(x))
    frames_y = setup.frames(y)
    total = sum(
        _ratio_sum(chunk, frames_y[:, start : start + CHUNK_FRAMES], setup, track_gain, calibration)
        for chunk, start in zip(_reference_chunks(x, setup, calibration), range(0, frames_y.shape[1], CHUNK_FRAMES))
    )
    return _mean(total, frames_y.shape[1], setup, reference.shape[:-1])


def nmr_db(
    reference: torch.Tensor,
    processed: torch.Tensor,
    sample_rate: int,
    *,
    listening_level_db: float = DEFAULT_LISTENING_LEVEL_DB,
    floor_db: float = -120.0,
) -> torch.Tensor:
    """Noise-to-mask ratio in dB per channel (see the module docstring), shape ``reference.shape[:-1]``;
    differentiable in both signals, CPU or CUDA. Identical signals (or any gain of them) read ``floor_db``.

    ``reference`` and ``processed``: ``(T,)``, ``(C, T)`` or ``(B, C, T)`` of equal shapes, with the checks of
    :func:`drl.drl_db` (NaN/Inf, silent channels, lengths). ``listening_level_db``: the reference's level in
    dB SPL RMS (the threshold in quiet depends on it; nothing else does).
    """
    from drl.metric import check_floor_db, floored_ratio, ratio_to_db  # drl.metric imports this module

    floor_db = check_floor_db(floor_db)
    sample_rate = check_sample_rate(sample_rate)
    listening_level_db = check_listening_level(listening_level_db)
    reference, processed = check_pair(reference, processed, finite=False)
    check_energies({"reference": reference, "processed": processed})
    shape = reference.shape[:-1]
    x, y = to_batch_channels_time(reference), to_batch_channels_time(processed)
    weighted, one = noise_to_mask(x, y, sample_rate, listening_level_db)
    return ratio_to_db(floored_ratio(weighted, one, floor_db)).to(reference.dtype).reshape(shape)
