"""Render audio files with the settings a tuning job saved: ``python -m tuning.render tuned_params.yaml IN...``.

Each input goes through what the job ran: the subsonic stage when the job applied it, then the chain with every
setting and option of the file (rebuilt at the input's sample rate). The job's own input gives the job's
processed file (to float32 precision); any other file gets the same chain as it was tuned, not solved again
for its loudness, so the files of an album keep their relative levels. ``--album`` joins the inputs with the
album job's silence between them, renders them as one and cuts them apart again, as album mode does (a
compressor's or limiter's state then carries from one file into the next, as in the job).

Bad input (a missing or unreadable file, a malformed settings file, an existing output file) exits with code
2 and one line on stderr.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

import drl
from drl.cli import Parser, fail
from tuning.audio import Track, condition_track, join_tracks, load_track
from tuning.pcm import FORMATS, write_audio
from tuning.results import processed_name
from tuning.settings import build_chain, read_settings

PROG = "python -m tuning.render"


def subsonic_of(settings: Mapping, name: str) -> Mapping:
    """The subsonic stage the job ran on the input called ``name``: an album file's own (album mode
    conditions each file on its own), else the file's ``subsonic``."""
    for entry in (settings.get("album") or {}).get("files") or []:
        if entry.get("name") == name:
            return entry["subsonic"]
    return settings["subsonic"]


def conditioned(settings: Mapping, track: Track) -> Track:
    """``track`` with its DC and infrasound removed when the job removed them (:func:`condition_track`)."""
    subsonic = subsonic_of(settings, track.name)
    if subsonic.get("mode") == "on":
        return condition_track(track, "on", subsonic.get("cutoff_hz", 20.0))[0]
    return track


def render(settings: Mapping, tracks: Sequence[Track], album_gap_s: float | None = None) -> list[torch.Tensor]:
    """Each track (C, T), conditioned as the job did, through the chain of ``settings`` (a tuned_params.yaml
    read by :func:`tuning.settings.read_settings`): a (C, T) render per track. With ``album_gap_s`` (s) the
    tracks are joined with that much silence between them, rendered as one and cut apart (album mode)."""
    tracks = [conditioned(settings, track) for track in tracks]
    with torch.no_grad():
        if album_gap_s is None:
            return [build_chain(settings["stages"], track.sample_rate)(track.audio) for track in tracks]
        first = tracks[0]
        for track in tracks[1:]:
            if track.sample_rate != first.sample_rate or track.audio.shape[0] != first.audio.shape[0]:
                raise ValueError(
                    f"an album needs one sample rate and channel count: '{track.name}' is {track.sample_rate} Hz "
                    f"with {track.audio.shape[0]} channels, '{first.name}' {first.sample_rate} Hz with "
                    f"{first.audio.shape[0]}"
                )
        album, segments = join_tracks(tracks, album_gap_s)
        output = build_chain(settings["stages"], album.sample_rate)(album.audio)
        return [output[:, offset : offset + length] for offset, length in segments]


def output_paths(inputs: Sequence[Path], output: str | None, template: str, lufs: float) -> list[Path]:
    """Where each input's render goes: ``output`` is a .wav file (one input only) or a folder (default: the
    current one), the file named by ``template`` (:func:`tuning.results.processed_name`). ValueError when a
    file exists, when two inputs would share one, or when it is an input."""
    target = Path(output).expanduser() if output else Path(".")
    if target.suffix.lower() == ".wav":
        if len(inputs) != 1:
            raise ValueError(f"-o {output} names one file for {len(inputs)} inputs: give a folder")
        paths = [target]
    else:
        paths = [target / processed_name(template, path.stem, lufs) for path in inputs]
    if len(set(paths)) < len(paths):
        raise ValueError(f"--name {template!r} gives several inputs one file: put {{name}} in it")
    sources = {path.resolve() for path in inputs}
    for path in paths:
        if path.exists() or path.resolve() in sources:
            raise ValueError(f"refusing to overwrite {path}: choose another output file or folder")
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    parser = Parser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("settings", help="a tuned_params.yaml written by train.py")
    parser.add_argument("inputs", nargs="+", help="audio files (anything libsndfile reads)")
    parser.add_argument("-o", "--output", help="a .wav file (one input) or a folder (default: the current one)")
    parser.add_argument("--name", default="{name}_{lufs}LUFS", help="file name in the folder; {name}, {lufs}")
    parser.add_argument("--format", choices=tuple(FORMATS), help="default: the job's output.format")
    parser.add_argument("--seed", type=int, help="the dither's seed (default: the job's)")
    parser.add_argument("--album", action="store_true", help="render the inputs joined, as album mode does")
    parser.add_argument("--gap-s", type=float, help="silence between album files (default: the job's data.gap_s)")
    args = parser.parse_args(argv)
    try:
        settings = read_settings(args.settings)
        target = settings["target"]
        inputs = [Path(path).expanduser() for path in args.inputs]
        paths = output_paths(inputs, args.output, args.name, float(target["lufs"]))
        tracks = [load_track(path) for path in inputs]
        gap_s = None
        if args.album:
            gap_s = args.gap_s if args.gap_s is not None else (settings.get("album") or {}).get("gap_s", 1.0)
        options = settings.get("output") or {}
        fmt = args.format or options.get("format", "float32")
        seed = args.seed if args.seed is not None else int(options.get("dither_seed") or 0)
        for track, output, path in zip(tracks, render(settings, tracks, gap_s), paths):
            info = write_audio(path, output, track.sample_rate, fmt, float(target["ceiling_dbtp"]), seed)
            lufs = float(drl.integrated_loudness(output, track.sample_rate))
            print(f"{track.name} -> {path}: {lufs:.2f} LUFS, true peak {info['true_peak_dbtp']:.2f} dBTP ({fmt})")
    except ValueError as error:
        return fail(PROG, error)
    return 0


if __name__ == "__main__":
    sys.exit(main())
