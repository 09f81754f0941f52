"""What a run leaves: tuned_params.yaml, the processed audio (processed/<input name>.wav), metrics.json, and the
summary table."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping
from pathlib import Path

import torch

from drl.loudness import LevelReading, read_levels
from tuning.objective import LossWeights, distortion_measures
from tuning.pcm import write_audio
from tuning.settings import write_settings


def _finite(value) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def track_metrics(
    reference: torch.Tensor,
    audio: torch.Tensor,
    sample_rate: int,
    weights: LossWeights | None = None,
    reading: LevelReading | None = None,
    measures: Mapping[str, torch.Tensor] | None = None,
) -> dict:
    """Loudness, true peak, LRA and the distortion measures of ``audio`` (C, T) against ``reference`` (C, T).

    The measures (:func:`plain_measures` of :func:`tuning.objective.distortion_measures`): ``drl_db``,
    ``band_drl_db``, ``frame_drl_db``, ``nmr_db`` and ``objective_drl_db`` (the measure the loss of ``weights``
    optimises), means over channels in dB; for the input itself (``audio is reference``) they read the
    metric's floor (-120 dB), measured on its first second. ``reading``: ``audio``'s
    :func:`drl.read_levels`, when read already; ``measures``: the distortion measures of this pair, when
    computed already (:meth:`tuning.objective.Objective.measure`). Measured on the CPU (once per run).
    """
    same = audio is reference
    reference, audio = reference.detach().cpu(), audio.detach().cpu()
    summary = (reading or read_levels(audio, sample_rate)).summary()
    if measures is None and same:  # identical signals: every measure sits at its floor, whatever the length
        head = reference[..., : max(sample_rate, 1)]
        measures = distortion_measures(head, head, sample_rate, weights)
    elif measures is None:
        measures = distortion_measures(reference, audio, sample_rate, weights)
    return {**level_metrics(summary), **plain_measures(measures)}


def level_metrics(summary: Mapping) -> dict:
    """The loudness part of :func:`track_metrics` from a :func:`drl.loudness_summary` (non-finite: None)."""
    return {key: _finite(summary[key]) for key in ("integrated_lufs", "true_peak_dbtp", "sample_peak_dbfs", "lra")}


def run_metrics(
    input_metrics: Mapping, output: Mapping, baseline: Mapping, target, steps: int, best_step: int | None, selected: str
) -> dict:
    """The ``metrics.json`` of one tuned track: its input and output measures (:func:`track_metrics`), the
    gain + limiter ``baseline`` and what the tuning gains over it, the ``target`` and whether it was met, and
    which candidate was ``selected`` ("tuned" by training, "start", or "idle": the extra stages transparent,
    i.e. the gain + limiter baseline inside this processor) at ``best_step``."""
    base = dict(baseline)
    return {
        "input": dict(input_metrics),
        "output": dict(output),
        "baseline_drl_db": base.get("drl_db"),
        "baseline": base,
        "drl_gain_over_baseline_db": (base["drl_db"] - output["drl_db"]) if "drl_db" in base else None,
        # the measure that selected the settings (and the baseline's winner): the loss's weighted mean of
        # plain, band and frame-wise DRL; plain DRL itself with loss=plain
        "baseline_objective_drl_db": base.get("objective_drl_db"),
        "objective_gain_over_baseline_db": (base["objective_drl_db"] - output["objective_drl_db"])
        if base.get("objective_drl_db") is not None
        else None,
        "target": {
            "name": target.label,
            "preset": target.name,
            "lufs": float(target.lufs),
            "ceiling_dbtp": float(target.ceiling_dbtp),
        },
        "on_target": target.met_by(output["integrated_lufs"], output["true_peak_dbtp"]),
        "steps": int(steps),
        "best_step": best_step,
        "selected": selected,
    }


def plain_measures(measures: Mapping[str, torch.Tensor]) -> dict:
    """{"drl_db": t, "band_drl_db/20_200": t, ...} -> {"drl_db": float, "band_drl_db": {"20_200": float}, ...}
    (non-finite values become None)."""
    out: dict = {}
    for key, value in measures.items():
        group, _, band = key.partition("/")
        if band:
            out.setdefault(group, {})[band] = _finite(value)
        else:
            out[key] = _finite(value)
    return out


def _fresh(path: Path) -> Path:
    if path.exists():
        raise ValueError(f"refusing to overwrite {path}: choose a new output folder (hydra.run.dir)")
    return path


#: Placeholders of ``output.name`` (the processed file's name without extension).
NAME_FIELDS = ("name", "lufs")


def processed_name(template: str, name: str, lufs: float) -> str:
    """The processed file's name: ``template`` ("{name}", "{name}_{lufs}LUFS") filled with the input's ``name``
    and the target loudness ``lufs``, plus ".wav". ValueError for another placeholder or a path separator."""
    try:
        stem = str(template).format(name=name, lufs=f"{lufs:g}")
    except (KeyError, IndexError, ValueError) as error:
        raise ValueError(
            f"output.name {template!r} is not a file name template: use the placeholders "
            f"{', '.join('{' + f + '}' for f in NAME_FIELDS)} ({error})"
        ) from None
    if not stem or "/" in stem or "\\" in stem or stem in (".", ".."):
        raise ValueError(f"output.name {template!r} gives {stem!r}, not a file name (output.dir sets the folder)")
    return f"{stem}.wav"


def result_paths(out_dir: str | Path, name: str, processed: str | Path | None = None) -> dict[str, Path]:
    """Where a run writes its three files: tuned_params.yaml and metrics.json in ``out_dir``, the processed
    audio at ``processed`` (default: processed/<name>.wav in ``out_dir``)."""
    out_dir = Path(out_dir)
    return {
        "tuned_params": out_dir / "tuned_params.yaml",
        "processed": Path(processed) if processed is not None else out_dir / "processed" / f"{name}.wav",
        "metrics": out_dir / "metrics.json",
    }


def check_fresh(out_dir: str | Path, name: str, processed: str | Path | None = None) -> None:
    """Raise ValueError (before any work) when a result file already exists: nothing is ever overwritten."""
    for path in result_paths(out_dir, name, processed).values():
        _fresh(path)


def write_results(
    out_dir: str | Path,
    name: str,
    output: torch.Tensor,
    sample_rate: int,
    settings: Mapping,
    metrics: Mapping,
    processed: str | Path | None = None,
) -> dict[str, Path]:
    """Write a run's files (never over an existing one): the processed audio ``output`` (C, T) at
    ``processed`` in the format of ``settings["output"]`` (:func:`tuning.pcm.write_audio`, under the target's
    ceiling), the ``settings`` document as tuned_params.yaml (:mod:`tuning.settings`) and ``metrics`` as
    metrics.json, with what the audio file holds under ``file``. Returns the three paths."""
    paths = result_paths(out_dir, name, processed)
    check_fresh(out_dir, name, processed)
    options = settings.get("output") or {}
    written = write_audio(
        paths["processed"],
        output,
        sample_rate,
        options.get("format", "float32"),
        settings["target"]["ceiling_dbtp"],
        options.get("dither_seed") or 0,
        (metrics.get("output") or {}).get("true_peak_dbtp"),  # measured on this very render
    )
    write_settings(paths["tuned_params"], settings)
    paths["metrics"].parent.mkdir(parents=True, exist_ok=True)
    with paths["metrics"].open("x") as handle:
        json.dump({**metrics, "file": {"path": str(paths["processed"]), **written}}, handle, indent=2)
        handle.write("\n")
    return paths


def summary_table(metrics: Mapping, values: Mapping[str, float]) -> str:
    """A plain-text table: loudness, true peak, LRA, DRL and NMR of the input, the output and the gain + limiter
    baseline, the input's conditioning, the target, which candidate won, the tuned settings."""

    def fmt(value):
        return "-" if value is None else f"{value:8.2f}"

    base = metrics.get("baseline") or {}
    base = base if "release_ms" in base else {}  # a gain alone has no limiter baseline to show
    columns = [("input", metrics["input"]), ("output", metrics["output"])]
    if base:
        columns.append(("baseline", {**base, "integrated_lufs": base.get("lufs")}))
    measures = [
        ("integrated_lufs", "loudness (LUFS)"),
        ("true_peak_dbtp", "true peak (dBTP)"),
        ("lra", "loudness range (LU)"),
        ("drl_db", "DRL (dB)"),
        ("nmr_db", "NMR (dB)"),
    ]
    out = metrics["output"]
    if out.get("objective_drl_db") is not None and all(
        out["objective_drl_db"] != out.get(key) for key in ("drl_db", "nmr_db")
    ):
        measures.append(("objective_drl_db", "objective (dB)"))  # a mix of measures: the loss says which
    rows = [("", *(name for name, _ in columns))]
    rows += [(label, *(fmt(column.get(key)) for _, column in columns)) for key, label in measures]
    width = max(len(r[0]) for r in rows) + 2
    lines = [f"{r[0]:<{width}}" + "".join(f"{cell:>10}" for cell in r[1:]) for r in rows]
    conditioning = metrics.get("conditioning")
    if conditioning:
        done = (
            f"removed: zero-phase high-pass at {conditioning['cutoff_hz']:g} Hz"
            if conditioning["subsonic"]
            else "left as it is"
        )
        lines.append(
            f"{'input below 20 Hz':<{width}}{100 * conditioning['infrasound_share']:>9.1f}%  DC offset "
            f"{conditioning['dc_offset']:.4f}; {done}"
        )
    target = metrics["target"]
    lines.append(
        f"{'target':<{width}}{target['lufs']:>7.1f} LUFS, true peak <= {target['ceiling_dbtp']:.1f} dBTP"
        + (f": {target['name']}" if target.get("name") else "")
    )
    if base:
        slow = base.get("slow_release_ms")
        lines.append(
            f"{'baseline':<{width}}gain + limiter: release {base['release_ms']:g} ms, lookahead "
            f"{base['lookahead_ms']:g} ms" + (f", slow release {slow:g} ms" if slow else "")
        )
    selected = metrics.get("selected")
    if selected:
        meaning = {
            "tuned": f"found by training (best at step {metrics.get('best_step')})",
            "start": "the starting settings (training found nothing better)",
            "idle": "the extra stages transparent: the gain + limiter baseline was best",
            "gain": metrics.get("reason", ""),
        }.get(selected, "")
        lines.append(f"{'selected':<{width}}{selected:>10}  {meaning}")
    lines.append("tuned settings:")
    for name, value in values.items():
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        lines.append(f"  {name:<28}{shown:>10}")
    return "\n".join(lines)


#: Columns of summary.csv, after `name` and before the settings (one column per tuned parameter).
SUMMARY_COLUMNS = (
    "input_lufs",
    "output_lufs",
    "input_true_peak_dbtp",
    "output_true_peak_dbtp",
    "drl_db",
    "baseline_drl_db",
    "drl_gain_over_baseline_db",
    "nmr_db",
    "baseline_nmr_db",
    "on_target",
)


def summary_row(name: str, metrics: Mapping, values: Mapping[str, float]) -> dict:
    """One row of summary.csv from a file's metrics and its settings."""
    source, result = metrics["input"], metrics["output"]
    row = {
        "name": name,
        "input_lufs": source["integrated_lufs"],
        "output_lufs": result["integrated_lufs"],
        "input_true_peak_dbtp": source["true_peak_dbtp"],
        "output_true_peak_dbtp": result["true_peak_dbtp"],
        "drl_db": result["drl_db"],
        "baseline_drl_db": metrics.get("baseline_drl_db"),
        "drl_gain_over_baseline_db": metrics.get("drl_gain_over_baseline_db"),
        "nmr_db": result.get("nmr_db"),
        "baseline_nmr_db": (metrics.get("baseline") or {}).get("nmr_db"),
        "on_target": metrics.get("on_target"),
    }
    row.update({key: value for key, value in values.items()})
    return row


def check_fresh_summary(out_dir: str | Path) -> None:
    """Raise ValueError (before any work) when ``out_dir`` already holds a summary.csv."""
    _fresh(Path(out_dir) / "summary.csv")


def write_summary(out_dir: str | Path, rows: list[dict]) -> Path:
    """summary.csv in ``out_dir``: a row per file (never over an existing file)."""
    path = _fresh(Path(out_dir) / "summary.csv")
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with path.open("x", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in row.items()})
    return path
