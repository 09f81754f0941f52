"""``python -m tuning.report SWEEP_DIR``: the Pareto report of a loudness sweep.

Reads every ``metrics.json`` under SWEEP_DIR (one per job of ``python train.py -m target.lufs=...``, as
tuning/results.py writes them) and writes ``pareto.csv`` and ``pareto.png`` into SWEEP_DIR: DRL against
integrated loudness for the tuned chain and for the gain + limiter baseline, one point per job, the DRL the
tuning saves, and one more panel per other DRL measure the jobs logged (band DRL, frame-wise DRL, ...).
Each point sits at its own measured loudness (the baseline's from ``baseline.lufs``). Bad input (no such
folder, no metrics.json, unreadable or malformed JSON, existing report files without ``--overwrite``) exits
with code 2 and one line on stderr.

The same report at the end of a sweep: ``python train.py -m ... +hydra.callbacks.pareto._target_=
tuning.report.ParetoCallback``.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml
from hydra.experimental.callback import Callback
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from drl.cli import Parser, fail

CSV_NAME = "pareto.csv"
PNG_NAME = "pareto.png"
TRACK_MARKERS = ("o", "^", "v", "D", "P", "X")  # one per track in the extra panels

#: The columns every row has, in this order; the extra DRL measures follow (``tuned_band_drl_db/20_200``...).
CORE_COLUMNS = (
    "job",
    "track",
    "overrides",
    "target_lufs",
    "target_ceiling_dbtp",
    "input_lufs",
    "tuned_lufs",
    "tuned_true_peak_dbtp",
    "tuned_drl_db",
    "baseline_lufs",
    "baseline_true_peak_dbtp",
    "baseline_drl_db",
    "drl_gain_over_baseline_db",
    "on_target",
    "selected",
)


def _number(value, where: str) -> float | None:
    """A finite float, None for null / NaN / inf (results.py writes null where a measure is undefined)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where} should be a number or null, got {value!r}")
    value = float(value)
    return value if math.isfinite(value) else None


def _field(data: Mapping, path: str, source: Path, required: bool = True) -> float | None:
    """The number at ``path`` ("output.drl_db"); a missing optional field reads None."""
    node = data
    for key in path.split("."):
        if not isinstance(node, Mapping) or key not in node:
            if not required:
                return None
            raise ValueError(f"{source}: no {path!r} (not a metrics.json of `python train.py`?)")
        node = node[key]
    return _number(node, f"{source}: {path}")


def _drl_measures(section, prefix: str, source: Path) -> dict[str, float | None]:
    """Every distortion measure of a metrics section (the DRLs and ``nmr_db``) besides plain ``drl_db``,
    flattened: scalars as ``{prefix}{key}``, dicts of scalars as ``{prefix}{key}/{sub}``; lists (per-frame
    series) are skipped."""
    out: dict[str, float | None] = {}
    if not isinstance(section, Mapping):
        return out

    def walk(value, name: str) -> None:
        if isinstance(value, Mapping):
            for sub, inner in value.items():
                walk(inner, f"{name}/{sub}")
        elif value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
            out[prefix + name] = _number(value, f"{source}: {name}")

    for key, value in section.items():
        if ("drl" in key.lower() or key == "nmr_db") and key != "drl_db":
            walk(value, key)
    return out


def _track_name(job_dir: Path) -> str:
    """The input's name: tuned_params.yaml's ``input.name``, or the one file results.py wrote into processed/
    ("" when neither is known)."""
    try:
        source = (yaml.safe_load((job_dir / "tuned_params.yaml").read_text()) or {}).get("input")
    except (OSError, yaml.YAMLError, AttributeError):
        source = None
    if isinstance(source, Mapping) and isinstance(source.get("name"), str) and source["name"]:
        return source["name"]
    outputs = sorted((job_dir / "processed").glob("*.wav"))
    return outputs[0].stem if len(outputs) == 1 else ""


def _overrides(job_dir: Path) -> str:
    """The job's Hydra overrides (``target.lufs=-14 ...``) from .hydra/overrides.yaml, "" when absent."""
    path = job_dir / ".hydra" / "overrides.yaml"
    try:
        values = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return ""
    return " ".join(str(v) for v in values) if isinstance(values, list) else ""


def _row(path: Path, sweep_dir: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except OSError as error:
        raise ValueError(f"cannot read {path}: {error.strerror or error}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(data, Mapping):
        raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")

    def num(field: str, required: bool = True) -> float | None:
        return _field(data, field, path, required)

    baseline = data.get("baseline") or {}
    tuned_drl, base_drl = num("output.drl_db"), num("baseline.drl_db", False)
    job = path.parent.relative_to(sweep_dir).as_posix()
    row = {
        "job": job,
        "track": _track_name(path.parent),
        "overrides": _overrides(path.parent),
        "target_lufs": num("target.lufs"),
        "target_ceiling_dbtp": num("target.ceiling_dbtp", False),
        "input_lufs": num("input.integrated_lufs", False),
        "tuned_lufs": num("output.integrated_lufs"),
        "tuned_true_peak_dbtp": num("output.true_peak_dbtp", False),
        "tuned_drl_db": tuned_drl,
        "baseline_lufs": num("baseline.lufs", False),
        "baseline_true_peak_dbtp": num("baseline.true_peak_dbtp", False),
        "baseline_drl_db": base_drl,
        "drl_gain_over_baseline_db": None if tuned_drl is None or base_drl is None else round(base_drl - tuned_drl, 6),
        "on_target": data.get("on_target") if isinstance(data.get("on_target"), bool) else None,
        "selected": data.get("selected") if isinstance(data.get("selected"), str) else None,
    }
    row.update(_drl_measures(data["output"], "tuned_", path))
    row.update(_drl_measures(baseline, "baseline_", path))
    return row


def collect(sweep_dir: str | Path) -> list[dict]:
    """One row per ``metrics.json`` found under ``sweep_dir`` (recursively; hidden folders skipped), sorted by
    track, then tuned loudness (LUFS). Values are floats in dB / LUFS / dBTP, None where undefined.

    Raises ValueError for a missing folder, no metrics.json, or a file that is not a tuning job's metrics.
    """
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.exists():
        raise ValueError(f"sweep folder {sweep_dir} does not exist")
    if not sweep_dir.is_dir():
        raise ValueError(f"{sweep_dir} is not a folder (expected a Hydra multirun folder)")
    paths = sorted(
        p
        for p in sweep_dir.rglob("metrics.json")
        if not any(part.startswith(".") for part in p.relative_to(sweep_dir).parts[:-1])
    )
    if not paths:
        raise ValueError(f"no metrics.json under {sweep_dir} (did the sweep's jobs finish?)")
    rows = [_row(p, sweep_dir) for p in paths]
    rows.sort(key=lambda r: (r["track"], r["tuned_lufs"] is None, r["tuned_lufs"] or 0.0, r["job"]))
    return rows


def columns(rows: Sequence[Mapping]) -> list[str]:
    """The core columns, then every extra measure in the order first seen."""
    names = list(CORE_COLUMNS)
    for row in rows:
        names += [k for k in row if k not in names]
    return names


def _refuse_existing(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise ValueError(f"refusing to overwrite {path} (pass --overwrite to replace it)")


def write_csv(rows: Sequence[Mapping], path: str | Path, overwrite: bool = False) -> Path:
    """``rows`` as CSV, a header of :func:`columns`; empty cells for missing values; floats as written."""
    path = Path(path)
    _refuse_existing(path, overwrite)
    with path.open("w" if overwrite else "x", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns(rows), restval="")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return path


def _measure_groups(rows: Sequence[Mapping]) -> dict[str, list[str]]:
    """Extra tuned measures grouped by panel: ``{"band_drl_db": ["20_200", ...], "frame_drl_db": [""]}``."""
    groups: dict[str, list[str]] = {}
    for name in columns(rows)[len(CORE_COLUMNS) :]:
        if name.startswith("tuned_"):
            measure, _, sub = name[len("tuned_") :].partition("/")
            groups.setdefault(measure, []).append(sub)
    return groups


def _measure_label(measure: str) -> str:
    """``band_drl_db`` -> ``band DRL``, ``frame_drl_db`` -> ``frame DRL``."""
    words = measure.removesuffix("_db").split("_")
    return " ".join(w.upper() if w.lower() in ("drl", "nmr") else w for w in words)


def _series(rows: Sequence[Mapping], x_key: str, y_key: str) -> tuple[list[float], list[float], list[bool]]:
    points = sorted(
        (r[x_key], r[y_key], r.get("on_target") is not False)
        for r in rows
        if r.get(x_key) is not None and r.get(y_key) is not None
    )
    return [p[0] for p in points], [p[1] for p in points], [p[2] for p in points]


def _draw(ax, rows, x_key, y_key, label, color, linestyle, marker) -> None:
    """One series, sorted by x; tuned series ring the jobs that missed their target (``on_target`` false)."""
    xs, ys, hit = _series(rows, x_key, y_key)
    if not xs:
        return
    ax.plot(xs, ys, linestyle=linestyle, color=color, marker=marker, label=label)
    missed = [(x, y) for x, y, ok in zip(xs, ys, hit) if not ok]
    if missed and x_key == "tuned_lufs":  # a job that missed its target: a ring around its point
        ax.scatter(*zip(*missed), s=160, facecolors="none", edgecolors="red", linewidths=1.5, zorder=3)


def plot(rows: Sequence[Mapping], path: str | Path, title: str | None = None, overwrite: bool = False) -> Path:
    """The Pareto figure as PNG (Agg, no pyplot state): DRL (dB) against integrated loudness (LUFS), tuned
    chain and baseline; DRL saved by tuning; one panel per other DRL measure present. A dotted vertical line
    marks each target, a red ring a job that missed its target."""
    path = Path(path)
    _refuse_existing(path, overwrite)
    if not any(r["tuned_lufs"] is not None and r["tuned_drl_db"] is not None for r in rows):
        raise ValueError("no job has both an integrated loudness and a DRL: nothing to plot")
    groups = _measure_groups(rows)
    tracks = list(dict.fromkeys(r["track"] for r in rows))
    colors = [f"C{i % 10}" for i in range(len(tracks))]
    panels = 2 + len(groups)
    fig = Figure(figsize=(8.5, 3.4 * panels + 0.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(panels, 1, sharex=True, squeeze=False)[:, 0]

    for track, color in zip(tracks, colors):
        mine = [r for r in rows if r["track"] == track]
        named = f" ({track})" if len(tracks) > 1 and track else ""
        _draw(axes[0], mine, "tuned_lufs", "tuned_drl_db", f"tuned chain{named}", color, "-", "o")
        _draw(axes[0], mine, "baseline_lufs", "baseline_drl_db", f"gain + limiter baseline{named}", color, "--", "s")
        _draw(
            axes[1],
            mine,
            "tuned_lufs",
            "drl_gain_over_baseline_db",
            f"baseline DRL - tuned DRL{named}",
            color,
            "-",
            "o",
        )
    axes[0].set_ylabel("DRL (dB, lower = cleaner)")
    axes[0].set_title("Distortion against loudness, one point per job")
    axes[1].axhline(0.0, color="black", linewidth=0.8)
    axes[1].set_ylabel("DRL saved by tuning (dB)")
    axes[1].set_title("What the tuning saves over gain + limiter (above 0: tuned is cleaner)")

    # Extra panels: colour = band (or sub-measure), marker = track, dashed = baseline.
    for ax, (measure, subs) in zip(axes[2:], groups.items()):
        for t, track in enumerate(tracks):
            mine = [r for r in rows if r["track"] == track]
            named = f" ({track})" if len(tracks) > 1 and track else ""
            marker = TRACK_MARKERS[t % len(TRACK_MARKERS)]
            for i, sub in enumerate(subs):
                key = f"{measure}/{sub}" if sub else measure
                color = f"C{i % 10}" if len(subs) > 1 else colors[t]
                name = f" {sub.replace('_', '-')} Hz" if sub.replace("_", "").isdigit() else (f" {sub}" if sub else "")
                _draw(ax, mine, "tuned_lufs", f"tuned_{key}", f"tuned chain{name}{named}", color, "-", marker)
                _draw(ax, mine, "baseline_lufs", f"baseline_{key}", f"baseline{name}{named}", color, "--", marker)
        ax.set_ylabel(f"{_measure_label(measure)} (dB)")
        ax.set_title(f'{_measure_label(measure)} ("{measure}" in metrics.json)')

    targets = sorted({r["target_lufs"] for r in rows if r["target_lufs"] is not None})
    for ax in axes:
        for i, lufs in enumerate(targets):
            ax.axvline(lufs, color="grey", linestyle=":", linewidth=1.0, label="target loudness" if i == 0 else None)
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small", loc="best")
    axes[-1].set_xlabel("integrated loudness (LUFS)")
    if any(r.get("on_target") is False for r in rows):
        axes[0].scatter([], [], s=160, facecolors="none", edgecolors="red", label="missed its target")
        axes[0].legend(fontsize="small", loc="best")
    fig.suptitle(title or f"Pareto report: {len(rows)} jobs")
    fig.savefig(path, dpi=110)
    return path


def report(sweep_dir: str | Path, overwrite: bool = False) -> tuple[Path, Path]:
    """Collect ``sweep_dir`` and write pareto.csv and pareto.png into it; return their paths."""
    sweep_dir = Path(sweep_dir)
    rows = collect(sweep_dir)
    csv_path, png_path = sweep_dir / CSV_NAME, sweep_dir / PNG_NAME
    for target in (csv_path, png_path):  # both checked before either is written
        _refuse_existing(target, overwrite)
    title = f"Pareto report of {sweep_dir.resolve().name}: {len(rows)} job{'s' if len(rows) != 1 else ''}"
    # the figure first: it is the one that can still refuse (nothing to plot), and then no CSV is left behind
    plot(rows, png_path, title, overwrite)
    write_csv(rows, csv_path, overwrite)
    return csv_path, png_path


class ParetoCallback(Callback):
    """Hydra callback: write the report into the sweep folder once all jobs of a multirun have returned."""

    def __init__(self, overwrite: bool = False) -> None:
        self.overwrite = bool(overwrite)

    def on_multirun_end(self, config, **kwargs) -> None:
        csv_path, png_path = report(config.hydra.sweep.dir, self.overwrite)
        print(f"pareto report: {csv_path}, {png_path}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = Parser(
        prog="python -m tuning.report",
        description="Write pareto.csv and pareto.png (DRL against loudness) into a sweep folder.",
    )
    parser.add_argument("sweep_dir", help="a Hydra multirun folder (or any folder) holding the jobs' metrics.json")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing pareto.csv / pareto.png")
    args = parser.parse_args(argv)
    try:
        csv_path, png_path = report(args.sweep_dir, args.overwrite)
    except ValueError as error:
        return fail(parser.prog, error)
    print(f"wrote {csv_path} and {png_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
