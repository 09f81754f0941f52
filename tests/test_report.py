"""tuning.report: sweep folders of metrics.json -> pareto.csv / pareto.png; bad input -> ValueError / exit 2."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import pytest
from omegaconf import OmegaConf

from tuning.report import ParetoCallback, _measure_groups, collect, main, plot, report, write_csv

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
BANDS = ("20_200", "200_2000", "2000_20000")


def section(lufs, drl, bands=None, **extra):
    """One "input"/"output" section as tuning.results.track_metrics writes it."""
    if bands is None:
        bands = [None] * 3 if drl is None else [drl + 1.0, drl - 2.0, drl + 3.0]
    return {
        "integrated_lufs": lufs,
        "true_peak_dbtp": -1.02,
        "sample_peak_dbfs": -1.1,
        "lra": 4.5,
        "drl_db": drl,
        "band_drl_db": dict(zip(BANDS, bands)),
        **extra,
    }


def job_metrics(
    target, tuned_lufs, tuned_drl, base_lufs, base_drl, on_target=True, output_extra=None, baseline_extra=None
):
    """A metrics.json as TuningModule.finalize + train.py write it."""
    baseline = {
        "drl_db": base_drl,
        "lufs": base_lufs,
        "true_peak_dbtp": -1.01,
        "gain_db": 4.2,
        "ceiling_db": -1.02,
        "release_ms": 10.0,
        "lookahead_ms": 1.0,
        "true_peak": True,
        "grid": [{"release_ms": 10.0, "lookahead_ms": 1.0, "drl_db": base_drl}],
        **(baseline_extra or {}),
    }
    output = section(tuned_lufs, tuned_drl, **(output_extra or {}))
    return {
        "input": section(-23.0, -120.0, [-120.0] * 3),
        "output": output,
        "baseline_drl_db": base_drl,
        "baseline": baseline,
        "drl_gain_over_baseline_db": None if None in (base_drl, tuned_drl) else base_drl - tuned_drl,
        "target": {"name": "streaming", "lufs": target, "ceiling_dbtp": -1.0},
        "on_target": on_target,
        "steps": 60,
        "best_step": 15,
        "selected": "tuned",
        "timing_s": {"baseline_and_start": 1.0, "fit": 2.0, "final_solve": 0.1},
    }


def write_job(sweep, job, metrics, track="song", override=None):
    folder = sweep / job
    (folder / "processed").mkdir(parents=True)
    (folder / "processed" / f"{track}.wav").write_bytes(b"")  # only its name is read
    (folder / ".hydra").mkdir()
    (folder / ".hydra" / "overrides.yaml").write_text(f"- {override}\n" if override else "[]\n")
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return folder


@pytest.fixture
def sweep(tmp_path):
    """Three jobs whose numbers do not follow their loudness, plus Hydra's multirun.yaml."""
    root = tmp_path / "multirun" / "2026-11-30" / "01-02-03"
    root.mkdir(parents=True)
    (root / "multirun.yaml").write_text("hydra: {}\n")
    for job, target, drl_tuned, drl_base in (
        ("0", -10.0, -30.0, -24.0),
        ("1", -18.0, -52.0, -50.0),
        ("2", -14.0, -41.0, -37.5),
    ):
        write_job(
            root,
            job,
            job_metrics(target, target + 0.003, drl_tuned, target - 0.004, drl_base, on_target=target != -10.0),
            override=f"target.lufs={target:g}",
        )
    # Hydra's own folders are skipped even if something there is called metrics.json
    (root / "1" / ".hydra" / "metrics.json").write_text("not json")
    return root


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def check_png(path):
    data = Path(path).read_bytes()
    assert data[:8] == PNG_SIGNATURE
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 400 and image.shape[1] > 400
    assert image[..., :3].std() > 0.05  # something is drawn, not a blank canvas


def test_report_csv_and_png(sweep, capsys):
    assert main([str(sweep)]) == 0
    assert "pareto.csv" in capsys.readouterr().out
    rows = read_csv(sweep / "pareto.csv")
    assert [r["job"] for r in rows] == ["1", "2", "0"]  # sorted by loudness
    assert [float(r["tuned_lufs"]) for r in rows] == [-17.997, -13.997, -9.997]
    assert [float(r["baseline_lufs"]) for r in rows] == [-18.004, -14.004, -10.004]
    assert [float(r["target_lufs"]) for r in rows] == [-18.0, -14.0, -10.0]
    assert [float(r["tuned_drl_db"]) for r in rows] == [-52.0, -41.0, -30.0]
    assert [float(r["baseline_drl_db"]) for r in rows] == [-50.0, -37.5, -24.0]
    assert [float(r["drl_gain_over_baseline_db"]) for r in rows] == [2.0, 3.5, 6.0]
    assert [r["on_target"] for r in rows] == ["True", "True", "False"]
    assert rows[0]["overrides"] == "target.lufs=-18" and rows[0]["track"] == "song"
    assert float(rows[0]["tuned_band_drl_db/200_2000"]) == -54.0
    assert float(rows[2]["tuned_band_drl_db/2000_20000"]) == -27.0
    assert float(rows[0]["target_ceiling_dbtp"]) == -1.0 and float(rows[0]["input_lufs"]) == -23.0
    # the baseline logs no band DRL, the input's floor values are not a measure of the run
    assert not any(k.startswith("baseline_band") or k.startswith("input_band") for k in rows[0])
    check_png(sweep / "pareto.png")


def test_every_logged_drl_measure_gets_columns(tmp_path):
    frame = {"frame_drl_db": -44.0, "frame_drl_percent": 0.6, "series_drl_db": [-40.0, -41.0]}
    write_job(
        tmp_path,
        "0",
        job_metrics(-14.0, -14.0, -40.0, -14.0, -38.0, output_extra=frame, baseline_extra={"frame_drl_db": -42.5}),
    )
    write_job(
        tmp_path,
        "1",
        job_metrics(-12.0, -12.0, -35.0, -12.0, -31.0, output_extra={"frame_drl_db": {"p50": -50.0, "p95": -38.0}}),
    )
    rows = collect(tmp_path)
    assert rows[0]["tuned_frame_drl_db"] == -44.0 and rows[0]["baseline_frame_drl_db"] == -42.5
    assert rows[0]["tuned_frame_drl_percent"] == 0.6
    assert "tuned_series_drl_db" not in rows[0]  # per-frame lists have no single value per job
    assert rows[1]["tuned_frame_drl_db/p95"] == -38.0
    write_csv(rows, tmp_path / "pareto.csv")
    table = read_csv(tmp_path / "pareto.csv")
    assert table[0]["tuned_frame_drl_db/p95"] == "" and table[1]["tuned_frame_drl_db"] == ""
    plot(rows, tmp_path / "pareto.png")
    check_png(tmp_path / "pareto.png")


def test_reads_what_results_py_writes(tmp_path):
    """A metrics.json written by the job's own code (track_metrics + write_results) reads back exactly."""
    torch = pytest.importorskip("torch")
    from tuning.results import track_metrics, write_results

    rate = 44100
    x = 0.1 * torch.randn(2, rate, generator=torch.Generator().manual_seed(0))
    y = torch.tanh(4 * x) / 4
    out = track_metrics(x, y, rate)
    metrics = job_metrics(-14.0, out["integrated_lufs"], out["drl_db"], -14.01, out["drl_db"] + 1.5)
    metrics["input"], metrics["output"] = track_metrics(x, x, rate), out
    from processors import Chain, Gain
    from tuning.objective import Target
    from tuning.settings import settings_document

    chain = Chain({"gain": Gain(rate, gain_db=1.0)})
    settings = settings_document(chain, "gain", {"name": "demo"}, Target(-14.0, -1.0), None, {"format": "float32"})
    write_results(tmp_path / "3", "demo", y, rate, settings, metrics, tmp_path / "masters" / "demo_master.wav")
    (row,) = collect(tmp_path)
    assert row["job"] == "3" and row["track"] == "demo" and row["overrides"] == ""
    assert row["tuned_lufs"] == pytest.approx(out["integrated_lufs"])
    assert row["tuned_drl_db"] == pytest.approx(out["drl_db"])
    assert row["drl_gain_over_baseline_db"] == pytest.approx(1.5, abs=1e-5)
    assert {k for k in row if k.startswith("tuned_band")} == {f"tuned_band_drl_db/{b}" for b in BANDS}


def test_several_tracks_and_null_values(tmp_path):
    write_job(tmp_path, "0", job_metrics(-14.0, -14.0, -40.0, -14.0, -38.0), track="b")
    write_job(tmp_path, "1", job_metrics(-14.0, -14.0, -45.0, -14.0, -44.0), track="a")
    silent = job_metrics(-12.0, None, None, None, None)
    write_job(tmp_path, "2", silent, track="a")
    rows = collect(tmp_path)
    assert [(r["track"], r["job"]) for r in rows] == [("a", "1"), ("a", "2"), ("b", "0")]
    assert rows[1]["tuned_lufs"] is None and rows[1]["drl_gain_over_baseline_db"] is None
    csv_path, png_path = report(tmp_path)
    assert read_csv(csv_path)[1]["tuned_drl_db"] == ""
    check_png(png_path)


def test_job_without_baseline(tmp_path):
    metrics = job_metrics(-14.0, -14.0, -40.0, -14.0, -38.0)
    metrics["baseline"], metrics["baseline_drl_db"] = {}, None  # what finalize writes without a baseline
    del metrics["selected"], metrics["on_target"]  # older runs lack these
    write_job(tmp_path, "0", metrics)
    (row,) = collect(tmp_path)
    assert row["baseline_drl_db"] is None and row["baseline_lufs"] is None and row["drl_gain_over_baseline_db"] is None
    assert row["on_target"] is None and row["tuned_drl_db"] == -40.0
    check_png(plot([row], tmp_path / "pareto.png"))


def test_nothing_to_plot_writes_nothing(tmp_path):
    write_job(tmp_path, "0", job_metrics(-12.0, None, None, None, None))
    with pytest.raises(ValueError, match="nothing to plot"):
        report(tmp_path)
    assert not (tmp_path / "pareto.csv").exists() and not (tmp_path / "pareto.png").exists()


def test_refuses_to_overwrite(sweep, capsys):
    assert main([str(sweep)]) == 0
    before = (sweep / "pareto.csv").read_bytes()
    capsys.readouterr()
    assert main([str(sweep)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "refusing to overwrite" in err and "--overwrite" in err
    assert (sweep / "pareto.csv").read_bytes() == before
    assert main([str(sweep), "--overwrite"]) == 0


def bad_json(root):
    (root / "0").mkdir()
    (root / "0" / "metrics.json").write_text('{"output": {"drl_db": -40.0,')


def not_an_object(root):
    (root / "0").mkdir()
    (root / "0" / "metrics.json").write_text("[1, 2]")


def missing_key(root):
    metrics = job_metrics(-14.0, -14.0, -40.0, -14.0, -38.0)
    del metrics["output"]["drl_db"]
    write_job(root, "0", metrics)


def text_value(root):
    metrics = job_metrics(-14.0, -14.0, -40.0, -14.0, -38.0)
    metrics["target"]["lufs"] = "loud"
    write_job(root, "0", metrics)


def empty(root):
    (root / "0").mkdir()


@pytest.mark.parametrize(
    "make, message",
    [
        (bad_json, "is not valid JSON"),
        (not_an_object, "expected a JSON object"),
        (missing_key, "no 'output.drl_db'"),
        (text_value, "target.lufs should be a number"),
        (empty, "no metrics.json under"),
    ],
)
def test_bad_sweeps(tmp_path, capsys, make, message):
    make(tmp_path)
    with pytest.raises(ValueError, match=message):
        collect(tmp_path)
    assert main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and err.startswith("python -m tuning.report: error:")
    assert not (tmp_path / "pareto.csv").exists() and not (tmp_path / "pareto.png").exists()


def test_missing_folder_and_file(tmp_path, capsys):
    with pytest.raises(ValueError, match="does not exist"):
        collect(tmp_path / "nope")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ValueError, match="is not a folder"):
        collect(tmp_path / "file.txt")
    assert main([str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err


@pytest.mark.slow
def test_command_line(tmp_path):
    run = [sys.executable, "-m", "tuning.report"]
    cwd = Path(__file__).resolve().parents[1]
    for args in ([str(tmp_path / "missing")], []):
        done = subprocess.run(run + args, capture_output=True, text=True, cwd=cwd, timeout=60)
        assert done.returncode == 2, done.stderr
        assert done.stderr.count("\n") == 1 and "error:" in done.stderr and done.stdout == ""


HYDRA_APP = """
import json, sys
from pathlib import Path
import hydra
from hydra.core.hydra_config import HydraConfig

@hydra.main(version_base="1.3", config_path=None, config_name=None)
def main(cfg):
    metrics = json.loads(Path(cfg.template).read_text())
    metrics["target"]["lufs"] = metrics["output"]["integrated_lufs"] = float(cfg.lufs)
    metrics["output"]["drl_db"] = -40.0 + 3.0 * (cfg.lufs + 14.0)
    (Path(HydraConfig.get().runtime.output_dir) / "metrics.json").write_text(json.dumps(metrics))

main()
"""


@pytest.mark.slow
def test_multirun_callback(tmp_path):
    """A real Hydra multirun (a stand-in task writing metrics.json) with the callback added on the command
    line: the report lands in the sweep folder once both jobs are done."""
    (tmp_path / "app.py").write_text(HYDRA_APP)
    (tmp_path / "template.json").write_text(json.dumps(job_metrics(-14.0, -14.0, -40.0, -14.0, -38.0)))
    sweep = tmp_path / "sweep"
    command = [
        sys.executable,
        str(tmp_path / "app.py"),
        "-m",
        "+lufs=-14,-11",
        f"+template={tmp_path / 'template.json'}",
        f"hydra.sweep.dir={sweep}",
        "+hydra.callbacks.pareto._target_=tuning.report.ParetoCallback",
    ]
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=120, cwd=root, env={**os.environ, "PYTHONPATH": str(root)}
    )
    assert done.returncode == 0, done.stderr
    rows = read_csv(sweep / "pareto.csv")
    assert [float(r["tuned_drl_db"]) for r in rows] == [-40.0, -31.0]
    assert [r["overrides"].split()[0] for r in rows] == ["+lufs=-14", "+lufs=-11"]
    check_png(sweep / "pareto.png")
    # a second report into the same folder is refused, as from the command line
    with pytest.raises(ValueError, match="refusing to overwrite"):
        ParetoCallback().on_multirun_end(config=OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}}))


def test_plots_every_measure_a_run_logs(tmp_path):
    """metrics.json as a loss=transparent run writes it: output and baseline hold plain, band, frame-wise and
    objective DRL; each gets its columns, and a panel of its own besides plain DRL."""
    torch = pytest.importorskip("torch")
    from tuning.objective import LossWeights, distortion_measures
    from tuning.results import plain_measures, track_metrics

    rate = 44100
    weights = LossWeights(drl=0.25, bands={"200_2000": 0.25}, frame=0.5)
    x = 0.1 * torch.randn(2, rate, generator=torch.Generator().manual_seed(1))
    for job, drive in (("0", 2.0), ("1", 4.0)):
        tuned, base = torch.tanh(drive * x) / drive, torch.clamp(x, -0.1, 0.1)
        out = track_metrics(x, tuned, rate, weights)
        metrics = job_metrics(-14.0, -14.0 + float(job), out["drl_db"], -14.0 + float(job), 0.0)
        metrics["output"] = out
        metrics["baseline"].update(plain_measures(distortion_measures(x, base, rate, weights)))
        write_job(tmp_path, job, metrics)
    rows = collect(tmp_path)
    for who in ("tuned", "baseline"):
        assert {f"{who}_frame_drl_db", f"{who}_objective_drl_db", f"{who}_band_drl_db/200_2000"} <= set(rows[0])
    by_job = {r["job"]: r for r in rows}
    assert by_job["1"]["tuned_frame_drl_db"] == pytest.approx(
        float(distortion_measures(x, torch.tanh(4 * x) / 4, rate, weights)["frame_drl_db"]), abs=1e-5
    )
    assert rows[0]["baseline_objective_drl_db"] != rows[0]["baseline_drl_db"]
    groups = _measure_groups(rows)
    assert {"band_drl_db", "frame_drl_db", "objective_drl_db"} <= set(groups)
    plot(rows, tmp_path / "pareto.png")
    check_png(tmp_path / "pareto.png")
    assert matplotlib.image.imread(tmp_path / "pareto.png").shape[0] > 5 * 3.4 * 90  # five panels at least
