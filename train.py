"""Tune a processor to a loudness target with the least distortion: `python train.py [hydra overrides]`.

`train(cfg)` does the work and returns the final metrics; `main()` turns bad input (a ValueError or a config
error) into one line on stderr and exit code 2.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from pathlib import Path

import hydra
import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

import drl
from tuning.audio import (
    Track, check_count, check_crop_length, condition_track, crop_loaders, join_tracks, load_folder,
)
from tuning.batch import PerTrackModule, batch_values
from tuning.baseline import of_structure, render_baseline, run_baseline
from tuning.build import ProcessorSpec, choose_start, suggest_settings
from tuning.callbacks import SolveTarget
from tuning.module import TuningModule
from tuning.objective import Objective
from tuning.results import (
    check_fresh, check_fresh_summary, summary_row, summary_table, track_metrics, write_results, write_summary,
)

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
#: Errors that mean bad input or a bad config: one line on stderr, exit code 2.
BAD_INPUT = (ValueError, HydraException, OmegaConfBaseException)
#: data.mode of `data=folder`: each file its own settings, or one setting for all (an album).
FOLDER_MODES = ("per_track", "shared")


def flat_config(cfg: DictConfig) -> dict:
    """The resolved config as {"a.b.c": plain value}, for the hparams table (lists become strings)."""
    out = {}

    def walk(node, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if not str(key).startswith("_"):
                    walk(value, f"{prefix}{key}.")
        else:
            out[prefix[:-1]] = node if isinstance(node, (int, float, str, bool)) or node is None else str(node)

    for key in cfg:
        if key not in ("hydra", "callbacks"):
            node = cfg[key]
            walk(OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node, f"{key}.")
    return out


def output_dir(cfg: DictConfig) -> Path:
    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    return Path(cfg.get("output_dir") or "outputs/run")


def train(cfg: DictConfig) -> dict:
    """Run one tuning job from a composed config; return the final metrics (also in metrics.json; in folder
    mode {file name: metrics})."""
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*GPU available but not used.*")
    warnings.filterwarnings("ignore", message=".*sync_dist=True.*")
    # crops are a function of the step, not of the loader's position: a mid-epoch resume is exact
    warnings.filterwarnings("ignore", message=".*your dataloader is not resumable.*")
    out_dir = output_dir(cfg)
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)

    # Everything that can be wrong with the input is checked here, before any training.
    max_steps = cfg.trainer.get("max_steps", -1)
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps == 0 or max_steps < -1:
        # the starting and idle candidates are scored when training starts: a run needs at least one step
        raise ValueError(f"trainer.max_steps must be a whole number >= 1 (or -1: max_epochs decides), got {max_steps!r}")
    target = instantiate(cfg.target)
    weights = instantiate(cfg.loss)
    spec: ProcessorSpec = instantiate(cfg.processor)
    optimizer = instantiate(cfg.optim)
    mode, tracks = load_tracks(cfg)
    tracks, conditioning = condition_tracks(tracks, cfg.get("subsonic") or {})
    crop = max(check_crop_length(track, float(cfg.data.crop_s)) for track in tracks)
    for track in tracks:
        check_fresh(out_dir / track.name if mode != "single" else out_dir, track.name)
    if mode != "single":
        check_fresh_summary(out_dir)
    ckpt_path = checkpoint_path(cfg, out_dir)
    train_loader, val_loader = crop_loaders(int(cfg.data.batches_per_epoch))
    crops_per_batch = check_count("data.crops_per_batch", cfg.data.crops_per_batch)
    callbacks = [SolveTarget(tol_lu=float(cfg.solve.tol_lu))]
    callbacks += [instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    loggers = [instantiate(c) for c in _logger_configs(cfg.get("logger"))]
    checkpointing = any(isinstance(c, ModelCheckpoint) for c in callbacks)
    trainer: L.Trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks,
                                     enable_checkpointing=checkpointing)
    for track in tracks:
        spec.build(track.sample_rate, suggest_settings(track.audio, track.sample_rate, target), defaults=True)
    if mode == "per_track":
        return _train_per_track(cfg, trainer, tracks, target, weights, spec, optimizer, crop, crops_per_batch,
                                out_dir, ckpt_path, (train_loader, val_loader), conditioning)

    segments = None
    if mode == "shared":  # album: one setting for all files, crops drawn from every file
        track, segments = join_tracks(tracks, float(cfg.data.gap_s))
    else:
        track = tracks[0]
    device = trainer.strategy.root_device
    audio = track.audio.to(device)
    rate = track.sample_rate
    clock = time.perf_counter()
    input_lufs = float(drl.integrated_loudness(audio, rate))
    objective = Objective(rate, target, weights, input_lufs)
    # the baseline's winner is chosen by the measure the loss optimises, as the tuned settings are
    baseline = run_baseline(audio, rate, target, measure=objective.measure, **baseline_options(cfg))
    # Start on the loudness target (the penalties then only have to keep it there), from the best start.
    processor, starts = choose_start(spec, audio, rate, target, suggest_settings(audio, rate, target, baseline),
                                     objective.measure, float(cfg.solve.tol_lu))

    module = TuningModule(
        processor, audio, rate, objective, optimizer, crop,
        spec.level_param, spec.ceiling_param, config=flat_config(cfg), baseline=baseline, idle_values=spec.idle,
        tol_lu=float(cfg.solve.tol_lu), input_metrics=track_metrics(audio, audio, rate, weights),
        crops_per_batch=crops_per_batch, seed=int(cfg.data.seed), segments=segments,
    )
    baseline_s = time.perf_counter() - clock
    clock = time.perf_counter()
    trainer.fit(module, train_loader, val_loader, ckpt_path=ckpt_path)
    if module.final is None:  # the SolveTarget callback did not run (e.g. an interrupted fit)
        module.finalize(tol_lu=float(cfg.solve.tol_lu))

    metrics = module.final_metrics
    metrics["timing_s"] = {"baseline_and_start": round(baseline_s, 3),
                           "fit": round(time.perf_counter() - clock, 3),
                           "final_solve": round(module.finalize_s, 3)}
    metrics["starts"] = starts
    if mode == "shared":
        return _write_album(trainer, out_dir, tracks, segments, module, metrics, spec.name, weights, conditioning)
    metrics["conditioning"] = conditioning[track.name]
    if trainer.is_global_zero:
        write_results(out_dir, track.name, module.final.output, rate, module.final.values, metrics, spec.name)
        print(summary_table(metrics, module.final.values))
        print(f"output folder: {out_dir}")
    return metrics


def load_tracks(cfg: DictConfig) -> tuple[str, list[Track]]:
    """("single", [track]) for `data=demo|file`; (data.mode, the folder's tracks) for `data=folder`."""
    if cfg.data.get("dir") is None:
        return "single", [instantiate(cfg.data.track)]
    mode = str(cfg.data.get("mode"))
    if mode not in FOLDER_MODES:
        raise ValueError(f"data.mode must be one of {', '.join(FOLDER_MODES)}, got {mode!r}")
    return mode, load_folder(cfg.data.dir)


def baseline_options(cfg: DictConfig) -> dict:
    """:func:`tuning.baseline.run_baseline`'s grid and options from the `baseline` and `solve` groups."""
    return {"release_ms": list(cfg.baseline.release_ms), "lookahead_ms": list(cfg.baseline.lookahead_ms),
            "slow_release_ms": list(cfg.baseline.get("slow_release_ms") or [None]),
            "true_peak": bool(cfg.baseline.true_peak), "tol_lu": float(cfg.solve.tol_lu)}


def condition_tracks(tracks: list[Track], options) -> tuple[list[Track], dict[str, dict]]:
    """Each track with its DC and infrasound removed where `subsonic.mode` says so, and per track name the
    report metrics.json keeps (:func:`tuning.audio.condition_track`); large offsets are warned about."""
    out, reports = [], {}
    for track in tracks:
        conditioned, report = condition_track(track, str(options.get("mode", "auto")),
                                              options.get("cutoff_hz", 20.0))
        warning = report.pop("warning")
        if warning:
            print(f"warning: {warning}", file=sys.stderr)
        out.append(conditioned)
        reports[track.name] = report
    return out, reports


def checkpoint_path(cfg: DictConfig, out_dir: Path) -> str | None:
    """The checkpoint to resume from: `ckpt_path=...`, or with `resume=true` the run folder's last.ckpt."""
    path = cfg.get("ckpt_path")
    if cfg.get("resume"):
        if path:
            raise ValueError("give either ckpt_path or resume=true, not both")
        path = out_dir / "checkpoints" / "last.ckpt"
        if not path.is_file():
            raise ValueError(f"resume=true but {path} does not exist: nothing to resume in this run folder "
                             "(set hydra.run.dir to the killed run's folder)")
    elif path and not Path(path).is_file():
        raise ValueError(f"checkpoint not found: {path}")
    return str(path) if path else None


def _train_per_track(cfg, trainer, tracks, target, weights, spec, optimizer, crop, crops_per_batch, out_dir,
                     ckpt_path, loaders, conditioning) -> dict:
    """Each file its own settings, all files in one batch (parameters of shape (B,))."""
    device = trainer.strategy.root_device
    rate = tracks[0].sample_rate
    tol = float(cfg.solve.tol_lu)
    clock = time.perf_counter()
    audios = [track.audio.to(device) for track in tracks]
    objectives = [Objective(rate, target, weights, float(drl.integrated_loudness(a, rate))) for a in audios]
    baselines = [run_baseline(a, rate, target, measure=o.measure, **baseline_options(cfg))
                 for a, o in zip(audios, objectives)]
    # one batch, one limiter structure: two-stage if any track's baseline won with it
    two_stage = any(b.get("slow_release_ms") is not None for b in baselines)
    solvers = [choose_start(spec, a, rate, target, suggest_settings(a, rate, target, of_structure(b, two_stage)),
                            o.measure, tol)[0] for a, o, b in zip(audios, objectives, baselines)]
    processor = spec.build(rate, solvers[0].values()).to(device)
    processor.set_values(**batch_values(solvers))
    module = PerTrackModule(
        processor, solvers, [t.audio for t in tracks], rate, objectives, optimizer, crop, spec.level_param,
        spec.ceiling_param, config=flat_config(cfg), baselines=baselines, idle_values=spec.idle, tol_lu=tol,
        crops_per_batch=crops_per_batch, seed=int(cfg.data.seed),
    )
    baseline_s = time.perf_counter() - clock
    clock = time.perf_counter()
    trainer.fit(module, *loaders, ckpt_path=ckpt_path)
    if module.finals is None:
        module.finalize(tol_lu=tol)
    timing = {"baselines_and_start": round(baseline_s, 3), "fit": round(time.perf_counter() - clock, 3),
              "final_solve": round(module.finalize_s, 3)}
    results = {}
    for track, solution, metrics in zip(tracks, module.finals, module.final_metrics):
        results[track.name] = {**metrics, "timing_s": timing, "conditioning": conditioning[track.name]}
    if trainer.is_global_zero:
        rows = []
        for track, solution in zip(tracks, module.finals):
            write_results(out_dir / track.name, track.name, solution.output, rate, solution.values,
                          results[track.name], spec.name)
            rows.append(summary_row(track.name, results[track.name], solution.values))
        print(f"summary: {write_summary(out_dir, rows)}")
        print(f"output folder: {out_dir}")
    return results


def _write_album(trainer, out_dir, tracks, segments, module, album_metrics, processor_name, weights,
                 conditioning) -> dict:
    """Album mode's outputs: per file its slice of the album render and its measures (with the baseline's
    slice), the one setting in every tuned_params.yaml, and summary.csv."""
    rate = tracks[0].sample_rate
    base_render = render_baseline(module.track, rate, module.baseline)
    results, rows = {}, []
    for track, (offset, length) in zip(tracks, segments):
        output = module.final.output[:, offset:offset + length]
        reference = track.audio.to(output.device)
        base_drl = float(drl.drl_db(reference, base_render[:, offset:offset + length]).mean())
        result = track_metrics(reference, output, rate, weights)
        metrics = {"input": track_metrics(reference, reference, rate, weights), "output": result,
                   "baseline_drl_db": base_drl, "drl_gain_over_baseline_db": base_drl - result["drl_db"],
                   "mode": "shared", "album": album_metrics, "conditioning": conditioning[track.name]}
        results[track.name] = metrics
        rows.append(summary_row(track.name, metrics, module.final.values))
        if trainer.is_global_zero:
            write_results(out_dir / track.name, track.name, output, rate, module.final.values, metrics,
                          processor_name)
    if trainer.is_global_zero:
        rows.append(summary_row("album", album_metrics, module.final.values))
        print(summary_table(album_metrics, module.final.values))
        print(f"summary: {write_summary(out_dir, rows)}")
        print(f"output folder: {out_dir}")
    return results


def _logger_configs(node) -> list:
    """`logger` may be one config (a `_target_`), a dict of them, or empty (`logger=[]` / `~logger`)."""
    if not node:
        return []
    if "_target_" in node:
        return [node]
    return [c for c in node.values() if c]


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
def _hydra_main(cfg: DictConfig) -> None:
    try:
        train(cfg)
    except BAD_INPUT as error:  # caught here: past this point Hydra adds its own line to stderr
        fail(error)


def one_line(error: BaseException) -> str:
    """The most specific message of an error chain, on one line (Hydra wraps errors of `_target_` calls)."""
    root = error
    while root.__cause__ is not None or (root.__context__ is not None and not root.__suppress_context__):
        root = root.__cause__ or root.__context__
    if not isinstance(root, BAD_INPUT):
        root = error
    text = " ".join(line.strip() for line in str(root).splitlines() if line.strip())
    return text or type(root).__name__


def fail(error: BaseException) -> None:
    print(f"error: {one_line(error)}", file=sys.stderr)
    sys.exit(2)


def main() -> None:
    # Let config errors (unknown group option, missing value) reach this function instead of Hydra's own
    # printing (several lines, exit code 1).
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        _hydra_main()
    except BAD_INPUT as error:
        fail(error)


if __name__ == "__main__":
    main()
