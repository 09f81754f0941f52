"""``python -m drl REFERENCE PROCESSED``: measure the DRL between two audio files.

Prints total, per-channel and per-band DRL (dB and %) and, with ``--align``, the delay; with ``--nmr`` the
noise-to-mask ratio; ``--json`` prints the same as one JSON object. Bad input (a missing or unreadable file,
different sample rates or channel counts, ...) exits with code 2 and one line on stderr.

To add a measurement: declare its options in :func:`add_arguments`, compute its values into the report in
:func:`measure` (one top-level key per measurement, JSON-friendly values), and :func:`render_text` prints any
key it does not know as ``name: value`` lines.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

import torch

from drl.align import DEFAULT_MAX_DELAY_MS
from drl.audio_io import load_audio
from drl.bands import DEFAULT_BANDS
from drl.cli import Parser, fail
from drl.loudness import loudness_summary
from drl.metric import DRL


def parse_band(text: str) -> tuple[float, float]:
    """``"20-200"`` -> ``(20.0, 200.0)``."""
    low, sep, high = text.partition("-")
    try:
        if not sep:
            raise ValueError
        return float(low), float(high)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a band is LOW-HIGH in Hz (e.g. 20-200), got {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's options (one place to add more)."""
    parser.add_argument("reference", help="the unprocessed audio file (wav, flac, ogg, ...)")
    parser.add_argument("processed", help="the processed audio file, same sample rate and channel count")
    bands = parser.add_mutually_exclusive_group()
    bands.add_argument(
        "--bands",
        nargs="+",
        type=parse_band,
        metavar="LOW-HIGH",
        help="frequency bands in Hz (default: " + " ".join(f"{int(lo)}-{int(hi)}" for lo, hi in DEFAULT_BANDS) + ")",
    )
    bands.add_argument("--no-bands", action="store_true", help="broadband DRL only")
    parser.add_argument("--align", action="store_true", help="estimate and compensate the delay of PROCESSED")
    parser.add_argument(
        "--max-delay-ms",
        type=float,
        default=DEFAULT_MAX_DELAY_MS,
        help=f"delay search window with --align, +- milliseconds (default {DEFAULT_MAX_DELAY_MS:g})",
    )
    parser.add_argument(
        "--loudness",
        action="store_true",
        help="also report each file's integrated loudness (LUFS), loudness range (LU), true peak (dBTP) and "
        "sample peak (dBFS); null where undefined (silence, loudness of a file under 400 ms, LRA under 3 s)",
    )
    parser.add_argument(
        "--channel-weights",
        type=float,
        nargs="+",
        default=None,
        metavar="W",
        help="BS.1770 channel weights for --loudness, one per channel (default 1, 1, 1, 1.41, 1.41 for "
        "L, R, C, Ls, Rs; needed for more than 5 channels, 0 for an LFE channel)",
    )
    parser.add_argument(
        "--frame-ms",
        type=float,
        default=None,
        help="also report frame-wise DRL, the level matched per frame of this many milliseconds",
    )
    parser.add_argument(
        "--linear-taps",
        type=int,
        default=None,
        help="remove the best linear response (an FIR of this many taps, centred on zero lag) before measuring",
    )
    parser.add_argument(
        "--nmr",
        action="store_true",
        help="also report the noise-to-mask ratio (dB): the residual against what the reference masks, per "
        "critical band and 21 ms frame, the level matched per frame; the measure that agrees with listeners",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="python -m drl", description="Distortion Residual Level between two audio files.")
    add_arguments(parser)
    return parser


def _values(tensor: torch.Tensor) -> float | list[float]:
    return tensor.tolist() if tensor.ndim else float(tensor)


def measure(args: argparse.Namespace, reference: torch.Tensor, processed: torch.Tensor, sample_rate: int) -> dict:
    """The report of the files' measurements: ``reference``/``processed`` are ``(C, T)``. JSON-friendly."""
    bands = None if args.no_bands else (args.bands if args.bands is not None else DEFAULT_BANDS)
    metric = DRL(
        sample_rate,
        bands,
        align=args.align,
        max_delay_ms=args.max_delay_ms,
        frame_ms=args.frame_ms,
        linear_taps=args.linear_taps,
        nmr=args.nmr,
    )
    with torch.no_grad():
        result = metric(reference, processed)
    report = {
        "reference": args.reference,
        "processed": args.processed,
        "sample_rate": sample_rate,
        "channels": reference.shape[0],
        "duration_s": reference.shape[-1] / sample_rate,
        "total_drl_db": float(result["total_drl_db"]),
        "total_drl_percent": float(result["total_drl_percent"]),
        "channel_drl_db": _values(result["channel_drl_db"]),
        "channel_drl_percent": _values(result["channel_drl_percent"]),
        "band_drl_db": {key: float(value) for key, value in result["band_drl_db"].items()},
        "band_drl_percent": {key: float(value) for key, value in result["band_drl_percent"].items()},
    }
    if args.loudness:
        report["loudness"] = {
            role: {
                key: (value if value is not None and abs(value) != float("inf") else None)
                for key, value in loudness_summary(audio, sample_rate, args.channel_weights).items()
            }
            for role, audio in (("reference", reference), ("processed", processed))
        }
    if args.linear_taps is not None:
        report["linear_taps"] = args.linear_taps
    if args.align:
        report["delay_samples"] = float(result["delay_samples"])
        report["delay_ms"] = 1000.0 * report["delay_samples"] / sample_rate
    if args.frame_ms is not None:
        report["frame_ms"] = args.frame_ms
        report["frame_drl_db"] = float(result["frame_drl_db"])
        report["frame_drl_percent"] = float(result["frame_drl_percent"])
        report["channel_frame_drl_db"] = _values(result["channel_frame_drl_db"])
    if args.nmr:
        report["nmr_db"] = float(result["nmr_db"])
        report["channel_nmr_db"] = _values(result["channel_nmr_db"])
    return report


_KNOWN = {
    "reference", "processed", "sample_rate", "channels", "duration_s", "total_drl_db", "total_drl_percent",
    "channel_drl_db", "channel_drl_percent", "band_drl_db", "band_drl_percent", "delay_samples", "delay_ms",
    "linear_taps", "frame_ms", "frame_drl_db", "frame_drl_percent", "channel_frame_drl_db", "nmr_db",
    "channel_nmr_db",
}  # fmt: skip


def _level(db: float, percent: float) -> str:
    return f"{db:8.2f} dB  {percent:9.4f} %"


def render_text(report: dict) -> str:
    """Human-readable lines of a :func:`measure` report."""

    def row(label: str, text: str) -> str:
        return f"{label:<16}{text}"

    lines = [
        row("reference", report["reference"]),
        row("processed", report["processed"]),
        row("format", f"{report['sample_rate']} Hz, {report['channels']} channel(s), {report['duration_s']:.3f} s"),
        row("DRL total", _level(report["total_drl_db"], report["total_drl_percent"])),
    ]
    if "linear_taps" in report:
        lines.insert(3, row("linear fit", f"{report['linear_taps']} taps removed before measuring"))
    for index, (db, percent) in enumerate(zip(report["channel_drl_db"], report["channel_drl_percent"]), 1):
        lines.append(row(f"  channel {index}", _level(db, percent)))
    for key, db in report["band_drl_db"].items():
        low, high = key.split("_")
        lines.append(row(f"  {low}-{high} Hz", _level(db, report["band_drl_percent"][key])))
    if "delay_samples" in report:
        lines.append(row("delay", f"{report['delay_samples']:.3f} samples ({report['delay_ms']:.3f} ms)"))
    if "frame_drl_db" in report:
        lines.append(row("frame-wise", _level(report["frame_drl_db"], report["frame_drl_percent"])))
        lines[-1] += f"  ({report['frame_ms']:g} ms frames)"
        for index, db in enumerate(report["channel_frame_drl_db"], 1):
            lines.append(row(f"  channel {index}", f"{db:8.2f} dB"))
    if "nmr_db" in report:
        lines.append(row("NMR", f"{report['nmr_db']:8.2f} dB  (noise-to-mask ratio)"))
        for index, db in enumerate(report["channel_nmr_db"], 1):
            lines.append(row(f"  channel {index}", f"{db:8.2f} dB"))
    for key, value in report.items():
        if key not in _KNOWN:
            lines.append(f"{key}: {json.dumps(value)}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        reference, sample_rate = load_audio(args.reference, "reference")
        processed, processed_rate = load_audio(args.processed, "processed")
        if processed_rate != sample_rate:
            raise ValueError(f"sample rates differ: reference {sample_rate} Hz, processed {processed_rate} Hz")
        if processed.shape[0] != reference.shape[0]:
            raise ValueError(f"channel counts differ: reference {reference.shape[0]}, processed {processed.shape[0]}")
        report = measure(args, reference, processed, sample_rate)
    except ValueError as error:
        return fail("python -m drl", error)
    if args.json:
        print(json.dumps(report, allow_nan=False))
    else:
        print(render_text(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
