"""Tracks in: loading and validating audio files, the built-in demo track, random crops.

Audio here is always a float32 tensor of shape ``(C, T)`` with its sample rate in Hz.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from drl.audio_io import load_audio
from drl.checks import check_audio, check_number, check_sample_rate
from drl.infrasound import dc_offset, infrasound_share
from drl.loudness import (
    BLOCK_S,
    LUFS_OFFSET,
    SHORT_TERM_S,
    LevelReading,
    momentary_loudness,
    short_term_loudness,
    window_starts,
)
from processors.functional import check_cutoff_hz, subsonic

# A track whose sample peak is below this is treated as silent (-120 dBFS).
SILENCE_PEAK = 1e-6
#: The input is conditioned (DC and infrasound removed) when more than this share of its energy lies below
#: 20 Hz or a channel's DC offset exceeds DC_LIMIT (-40 dBFS); a run warns above the WARN_ values.
INFRASOUND_LIMIT = 0.01
DC_LIMIT = 0.01
INFRASOUND_WARN = 0.1
DC_WARN = 0.05
#: data.excerpt: which ``duration_s`` seconds of a longer file a run tunes.
EXCERPTS = ("loudest", "start")


@dataclass
class Track:
    """A whole track: ``audio`` (C, T) float32 in [-1, 1]-ish, ``sample_rate`` in Hz, ``name`` for outputs;
    ``excerpt`` when it is part of a file: {"start_s", "end_s" (in the file, s), "file_s" (its length, s),
    "choice" (one of :data:`EXCERPTS`)}."""

    audio: torch.Tensor
    sample_rate: int
    name: str
    excerpt: dict | None = None

    @property
    def duration_s(self) -> float:
        return self.audio.shape[-1] / self.sample_rate


def validate_track(audio: torch.Tensor, sample_rate: int, name: str) -> torch.Tensor:
    """Check a (C, T) track: finite, not empty, not silent; return it as float32."""
    audio = check_audio(audio, name)
    if audio.ndim != 2:
        raise ValueError(f"{name} must have shape (C, T), got {tuple(audio.shape)}")
    check_sample_rate(sample_rate, f"sample rate of {name}")
    peak = float(audio.abs().max())
    if peak < SILENCE_PEAK:
        raise ValueError(f"{name} is silent (sample peak {20 * math.log10(max(peak, 1e-30)):.1f} dBFS)")
    return audio.float().contiguous()


def load_track(path: str | Path, duration_s: float | None = None, excerpt: str = "loudest") -> Track:
    """Read an audio file (anything libsndfile reads: wav, flac, ogg, mp3...) into a :class:`Track`; with
    ``duration_s``, only that many seconds of it: the loudest part (``excerpt="loudest"``,
    :func:`loudest_start`) or the start (``"start"``). A part is named ``<name>_excerpt_<start>-<end>s``
    after its seconds in the file, so its outputs say which part was tuned."""
    path = Path(path).expanduser()
    audio, sample_rate = load_audio(path, role="audio")
    audio = validate_track(audio, sample_rate, f"audio file {path.name}")
    if duration_s is None:
        return Track(audio, sample_rate, path.stem)
    duration_s = check_number("data.track.duration_s", duration_s, 0.0, unit="s", low_open=True)
    if excerpt not in EXCERPTS:
        raise ValueError(f"data.excerpt must be one of {', '.join(EXCERPTS)}, got {excerpt!r}")
    length, total = int(round(duration_s * sample_rate)), audio.shape[-1]
    if length >= total:  # the whole file
        return Track(audio, sample_rate, path.stem)
    start = loudest_start(audio, sample_rate, length) if excerpt == "loudest" else 0
    start_s, end_s = start / sample_rate, (start + length) / sample_rate
    part = validate_track(audio[..., start : start + length], sample_rate, f"{duration_s:g} s of {path.name}")
    info = {"start_s": start_s, "end_s": end_s, "file_s": total / sample_rate, "choice": excerpt}
    return Track(part, sample_rate, f"{path.stem}_excerpt_{start_s:.1f}-{end_s:.1f}s", info)


def loudest_start(
    audio: torch.Tensor, sample_rate: int, length: int, momentary: bool = False, reading: LevelReading | None = None
) -> int:
    """The start (in samples, on BS.1770's 100 ms grid) of the loudest ``length`` samples of ``audio`` (C, T):
    the excerpt whose short-term loudness windows (3 s; 400 ms momentary ones for excerpts under 3 s, or always
    with ``momentary``), averaged as energy over the windows inside it, are loudest. The earliest such start on
    a tie. ``reading``: ``audio``'s :func:`drl.read_levels`, when read already (its window energies are used
    instead of measuring them again)."""
    short = not momentary and length >= round(SHORT_TERM_S * sample_rate)
    window = round((SHORT_TERM_S if short else BLOCK_S) * sample_rate)
    if length < window:
        raise ValueError(
            f"an excerpt of {length / sample_rate:g} s is too short to measure its loudness: "
            f"data.track.duration_s must be at least {BLOCK_S:g} s"
        )
    known = None if reading is None else reading.short_term_energies if short else reading.block_energies
    if known is not None:
        energies = known.double()
    else:
        measure = short_term_loudness if short else momentary_loudness
        with torch.no_grad():
            levels = measure(audio, sample_rate).double()  # LUFS every 100 ms, -inf for silence
        energies = torch.where(
            torch.isfinite(levels), 10.0 ** ((levels - LUFS_OFFSET) / 10.0), torch.zeros_like(levels)
        )
    starts = window_starts(audio.shape[-1], window, sample_rate)
    # windows j inside the excerpt that starts with window k: starts[j] - starts[k] <= length - window
    inside = int(torch.searchsorted(starts, starts[0] + length - window, right=True))
    candidates = min(int((starts + length <= audio.shape[-1]).sum()), energies.numel() - inside + 1)
    sums = torch.nn.functional.pad(energies.cumsum(0), (1, 0))
    means = (sums[inside : inside + candidates] - sums[:candidates]) / inside
    return int(starts[int(torch.argmax(means))])


def check_crop_length(track: Track, crop_s: float) -> int:
    """Return the crop length in samples after checking the track is at least that long."""
    crop_s = check_number("data.crop_s", crop_s, 0.0, unit="s", low_open=True)
    crop_samples = int(round(crop_s * track.sample_rate))
    if track.audio.shape[-1] < crop_samples:
        raise ValueError(
            f"track '{track.name}' is {track.duration_s:.2f} s long, shorter than the crop length: "
            f"it must be at least {crop_s:g} s (data.crop_s)"
        )
    return crop_samples


def take_crops(audio: torch.Tensor, starts: torch.Tensor, crop_samples: int) -> torch.Tensor:
    """Slice crops ``(B, C, crop_samples)`` out of ``audio`` (C, T) at ``starts`` (B,), on audio's device."""
    offsets = torch.arange(crop_samples, device=audio.device)
    index = starts.to(audio.device)[:, None] + offsets[None, :]  # (B, L)
    return audio[:, index].transpose(0, 1)


# --- the built-in demo track -------------------------------------------------------------------------------


def _decay(n: int, sample_rate: int, time_ms: float) -> np.ndarray:
    return np.exp(-np.arange(n) / (time_ms * 1e-3 * sample_rate))


def _one_shots(sample_rate: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Kick, snare and hat samples (mono, float64)."""
    n_kick = int(0.35 * sample_rate)
    t = np.arange(n_kick) / sample_rate
    # Pitch sweep 110 -> 45 Hz; phase is the integral of the frequency.
    freq = 45.0 + 65.0 * np.exp(-t / 0.04)
    kick = np.sin(2 * np.pi * np.cumsum(freq) / sample_rate) * _decay(n_kick, sample_rate, 90.0)
    kick[: int(0.002 * sample_rate)] += rng.standard_normal(int(0.002 * sample_rate)) * 0.1  # beater click

    n_snare = int(0.25 * sample_rate)
    t = np.arange(n_snare) / sample_rate
    noise = rng.standard_normal(n_snare)
    noise = np.diff(noise, prepend=0.0) * 0.5  # tilt towards the highs
    snare = 0.4 * noise * _decay(n_snare, sample_rate, 60.0)
    snare += 0.5 * np.sin(2 * np.pi * 190.0 * t) * _decay(n_snare, sample_rate, 35.0)

    n_hat = int(0.06 * sample_rate)
    hat = np.diff(np.diff(rng.standard_normal(n_hat), prepend=0.0), prepend=0.0) * 0.25
    hat *= _decay(n_hat, sample_rate, 12.0)
    return {"kick": kick, "snare": snare, "hat": hat}


def _place(out: np.ndarray, sample: np.ndarray, start: int, gain: float) -> None:
    end = min(out.shape[-1], start + sample.shape[-1])
    if start < end:
        out[..., start:end] += gain * sample[..., : end - start]


def demo_track(sample_rate: int = 44_100, duration_s: float = 30.0, seed: int = 0) -> Track:
    """Synthesise a music-like stereo track: kick, snare, hats, bass and chords at 120 BPM, with dynamics.

    Deterministic for a given (sample_rate, duration_s, seed). Sections alternate quiet (breakdown: chords and
    hats only) and loud (full groove, accented), so the loudness range is a few LU and the crest factor is that
    of an unmastered mix: peaks at -3 dBFS, integrated loudness around -22 LUFS (30 s, seed 0).
    """
    sample_rate = check_sample_rate(sample_rate)
    duration_s = check_number("demo duration_s", duration_s, 0.0, unit="s", low_open=True)
    rng = np.random.default_rng(seed)
    n = int(round(duration_s * sample_rate))
    beat = 0.5  # s, 120 BPM
    bar = 4 * beat
    out = np.zeros((2, n))
    shots = _one_shots(sample_rate, rng)

    n_beats = int(math.ceil(duration_s / beat))
    # Section level per bar: 2 bars quiet, 4 bars groove, 4 bars loud, repeating.
    pattern = ["quiet"] * 2 + ["groove"] * 4 + ["loud"] * 4
    level = {"quiet": 0.45, "groove": 0.75, "loud": 1.0}

    def section(time_s: float) -> str:
        return pattern[int(time_s // bar) % len(pattern)]

    for i in range(n_beats):  # a loop over beats (events), not samples
        time_s = i * beat
        part = section(time_s)
        vel = level[part] * (1.0 + 0.08 * rng.standard_normal())
        start = int(time_s * sample_rate)
        if part != "quiet":
            _place(out, np.stack([shots["kick"]] * 2), start, 0.5 * vel)
            if i % 4 == 3 and part == "loud":  # a pickup kick on the off-beat before each bar
                _place(out, np.stack([shots["kick"]] * 2), start + int(0.75 * beat * sample_rate), 0.6 * vel)
            if i % 2 == 1:
                _place(out, np.stack([shots["snare"] * 0.9, shots["snare"]]), start, 0.55 * vel)
        for k in range(2):  # eighth-note hats, panned right, off-beats softer
            pan = np.array([0.55, 1.0])[:, None]
            accent = 1.0 if k == 0 else 0.6
            _place(out, pan * shots["hat"][None], start + int(k * beat / 2 * sample_rate), 0.2 * accent * vel)

    t = np.arange(n) / sample_rate
    # Chords: one per bar, i - vi - IV - V in C, three detuned partials per note, slow attack.
    roots = [261.63, 220.00, 174.61, 196.00]
    chord_index = (t // bar).astype(int) % 4
    section_gain = np.array([level[section(s)] for s in np.arange(0, duration_s + bar, bar)])
    bar_index = (t // bar).astype(int)
    env_level = section_gain[bar_index]
    bar_phase = (t % bar) / bar
    chord_env = env_level * (1 - np.exp(-bar_phase * 12)) * np.exp(-bar_phase * 1.2)
    chords = np.zeros((2, n))
    for interval in (1.0, 1.26, 1.5):  # root, major third, fifth
        freq = np.asarray(roots)[chord_index] * interval
        for side, detune in enumerate((0.997, 1.003)):
            phase = 2 * np.pi * np.cumsum(freq * detune) / sample_rate
            chords[side] += (np.sin(phase) + 0.3 * np.sin(2 * phase) + 0.15 * np.sin(3 * phase)) / 3
    out += 0.3 * chords * chord_env

    # Bass: eighth notes on the chord root two octaves down, soft-clipped saw-ish tone, muted in quiet bars.
    eighth = beat / 2
    bass_freq = np.asarray(roots)[chord_index] / 4
    bass_phase = np.cumsum(bass_freq) / sample_rate
    saw = 2 * (bass_phase % 1.0) - 1
    tone = np.tanh(2.5 * (np.sin(2 * np.pi * bass_phase) + 0.3 * saw))
    note_env = np.exp(-((t % eighth) / eighth) * 2.5)
    bass_on = np.array([section(s) != "quiet" for s in np.arange(0, duration_s + bar, bar)])[bar_index]
    out += (0.36 * tone * note_env * env_level * bass_on)[None]

    fade = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.01)  # 10 ms fades: no clicks at the ends
    out *= fade
    out *= 10 ** (-3.0 / 20) / np.abs(out).max()  # sample peak at -3 dBFS
    audio = torch.from_numpy(out.astype(np.float32))
    return Track(validate_track(audio, sample_rate, "demo track"), sample_rate, "demo")


def crop_loaders(batches_per_epoch: int) -> tuple[torch.utils.data.DataLoader, torch.utils.data.DataLoader]:
    """(train, val) loaders: train yields ``batches_per_epoch`` placeholder batches per epoch (the module draws
    the crops itself, from the global step, so a resumed run draws the same ones); val yields one dummy item
    (validation renders the whole track). No worker processes."""
    check_count("data.batches_per_epoch", batches_per_epoch)
    train = torch.utils.data.DataLoader(list(range(batches_per_epoch)), batch_size=1, num_workers=0)
    val = torch.utils.data.DataLoader([torch.tensor(0)], batch_size=1, num_workers=0)
    return train, val


def check_count(name: str, value) -> int:
    if isinstance(value, float):  # 2.0 from a config is a typo for 2 at best
        raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
    return check_number(name, value, 1, integer=True)


def step_generator(seed: int, step: int, rank: int = 0) -> torch.Generator:
    """The generator of the crops of training step ``step`` on DDP rank ``rank``: a function of the three
    numbers only, so a run resumed from a checkpoint draws exactly the crops the uninterrupted run drew, and
    each rank draws different ones."""
    mixed = (int(seed) * 1_000_003 + int(rank) * 7_919 + int(step) * 104_729) % (2**63 - 1)
    return torch.Generator().manual_seed(mixed)


def draw_crop_starts(
    segments: list[tuple[int, int]], crop_samples: int, count: int, generator: torch.Generator, hop: int = 64
) -> torch.Tensor:
    """``count`` random crop starts (int64) inside the ``segments`` [(offset, length) in samples] of a track,
    every crop within one segment, each whole-``hop`` start position equally likely."""
    per_segment = torch.tensor([(length - crop_samples) // hop + 1 for _, length in segments], dtype=torch.int64)
    if bool((per_segment < 1).any()):
        raise ValueError(f"a segment is shorter than the crop ({crop_samples} samples)")
    cumulative = per_segment.cumsum(0)
    pick = torch.randint(0, int(cumulative[-1]), (count,), generator=generator)
    segment = torch.searchsorted(cumulative, pick, right=True)
    within = pick - (cumulative[segment] - per_segment[segment])
    offsets = torch.tensor([offset for offset, _ in segments], dtype=torch.int64)
    return offsets[segment] + within * hop


# --- folders of tracks -------------------------------------------------------------------------------------


def audio_files(folder: str | Path) -> list[Path]:
    """The audio files (extensions libsndfile reads) directly inside ``folder``, sorted by name."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise ValueError(f"data.dir is not a folder: {folder}")
    extensions = {f".{ext.lower()}" for ext in sf.available_formats()} | {".oga", ".aif", ".mp3"}
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in extensions)
    if not files:
        raise ValueError(f"no audio files in {folder} (extensions: {', '.join(sorted(extensions))})")
    return files


def load_folder(folder: str | Path) -> list[Track]:
    """Every audio file in ``folder`` as a :class:`Track`; they must share sample rate and channel count."""
    tracks = [load_track(path) for path in audio_files(folder)]
    first = tracks[0]
    for track in tracks[1:]:
        if track.sample_rate != first.sample_rate:
            raise ValueError(
                f"tracks in one job need one sample rate: '{track.name}' is {track.sample_rate} Hz, "
                f"'{first.name}' {first.sample_rate} Hz"
            )
        if track.audio.shape[0] != first.audio.shape[0]:
            raise ValueError(
                f"tracks in one job need one channel count: '{track.name}' has "
                f"{track.audio.shape[0]}, '{first.name}' {first.audio.shape[0]}"
            )
    if len({t.name for t in tracks}) != len(tracks):
        raise ValueError(f"two files in {folder} share a name without extension: outputs would collide")
    return tracks


def join_tracks(tracks: list[Track], gap_s: float = 1.0) -> tuple[Track, list[tuple[int, int]]]:
    """The tracks end to end with ``gap_s`` of silence between them (so a limiter's release and a
    compressor's envelope settle before the next track; silence is gated out of the loudness), as one
    ``album`` track, and the (offset, length) of each in samples."""
    gap_s = check_number("data.gap_s", gap_s, 0.0, unit="s")
    rate = tracks[0].sample_rate
    gap = torch.zeros(tracks[0].audio.shape[0], int(round(gap_s * rate)))
    parts, segments, offset = [], [], 0
    for index, track in enumerate(tracks):
        if index:
            parts.append(gap)
            offset += gap.shape[-1]
        parts.append(track.audio)
        segments.append((offset, track.audio.shape[-1]))
        offset += track.audio.shape[-1]
    return Track(torch.cat(parts, dim=-1), rate, "album"), segments


def infrasound_report(audio: torch.Tensor, sample_rate: int) -> dict:
    """{"dc_offset": the largest |DC offset| of a channel, "infrasound_share": share of energy below 20 Hz}."""
    return {
        "dc_offset": float(dc_offset(audio).abs().max()),
        "infrasound_share": float(infrasound_share(audio, sample_rate)),
    }


def needs_subsonic(audio: torch.Tensor, sample_rate: int, report: dict | None = None) -> bool:
    """Whether ``audio`` (C, T) holds enough DC or infrasound to remove it first (see INFRASOUND_LIMIT)."""
    report = report or infrasound_report(audio, sample_rate)
    return report["infrasound_share"] > INFRASOUND_LIMIT or report["dc_offset"] > DC_LIMIT


#: subsonic.mode: remove DC and infrasound when the input needs it, always, or never.
SUBSONIC_MODES = ("auto", "on", "off")


def condition_track(track: Track, mode: str = "auto", cutoff_hz: float = 20.0) -> tuple[Track, dict]:
    """The track the chain processes and is measured against: ``track`` with its DC offset and infrasound
    removed (:class:`processors.Subsonic`, zero-phase, time-aligned) when ``mode`` is "on", or "auto" and
    :func:`needs_subsonic`; else ``track`` itself. Returns it with a report for metrics.json and the summary:
    the input's ``dc_offset`` and ``infrasound_share``, ``subsonic`` (applied or not), ``cutoff_hz`` and a
    ``warning`` (None unless the share or the offset is large)."""
    if mode not in SUBSONIC_MODES:
        raise ValueError(f"subsonic.mode must be one of {', '.join(SUBSONIC_MODES)}, got {mode!r}")
    cutoff_hz = check_cutoff_hz(cutoff_hz, track.sample_rate)
    report = infrasound_report(track.audio, track.sample_rate)
    apply = mode == "on" or (mode == "auto" and needs_subsonic(track.audio, track.sample_rate, report))
    warning = None
    if report["infrasound_share"] > INFRASOUND_WARN or report["dc_offset"] > DC_WARN:
        action = (
            f"removed by a zero-phase high-pass at {cutoff_hz:g} Hz before tuning"
            if apply
            else "kept (subsonic.mode=off): it takes headroom from the limiter and dominates DRL"
        )
        warning = (
            f"'{track.name}' has {100 * report['infrasound_share']:.0f} % of its energy below 20 Hz and a DC "
            f"offset of {report['dc_offset']:.3f}; {action}"
        )
    report.update(subsonic=apply, cutoff_hz=cutoff_hz if apply else None, warning=warning)
    if apply:
        audio = subsonic(track.audio, track.sample_rate, cutoff_hz).to(track.audio.dtype).contiguous()
        track = replace(track, audio=audio)
    return track, report
