"""A tuning job from a composed config, for every mode: load and check the inputs, condition them, run the
baselines, choose the starting settings, fit, solve onto the target, write the outputs.

Modes (``data``): one track (``demo``, ``file``); a folder tuned per track (``data.mode=per_track``: B files,
one setting each, in one batch) or as an album (``data.mode=shared``: the files joined, one setting). All of
them are one :class:`tuning.module.TuningModule` over B >= 1 items.
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

import drl
from tuning.audio import (
    Track, check_count, check_crop_length, condition_track, crop_loaders, join_tracks, load_folder,
)
from tuning.baseline import of_structure, render_baseline, run_baseline
from tuning.build import ProcessorSpec, choose_start, suggest_settings
from tuning.callbacks import SolveTarget
from tuning.module import Item, TuningModule, batch_values
from tuning.objective import Objective
from tuning.results import (
    check_fresh, check_fresh_summary, summary_row, summary_table, track_metrics, write_results, write_summary,
)

#: data.mode of `data=folder`: each file its own settings, or one setting for all (an album).
FOLDER_MODES = ("per_track", "shared")


def run(cfg: DictConfig, out_dir: Path) -> dict:
    """Run one tuning job from a composed config, writing into ``out_dir``; return the final metrics (also in
    metrics.json; in folder modes {file name: metrics}). Bad input raises ValueError before any work."""
    _quiet_lightning()
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
    loaders = crop_loaders(int(cfg.data.batches_per_epoch))
    crops_per_batch = check_count("data.crops_per_batch", cfg.data.crops_per_batch)
    tol = float(cfg.solve.tol_lu)
    callbacks = [SolveTarget(tol_lu=tol), *(instantiate(c) for c in (cfg.get("callbacks") or {}).values())]
    loggers = [instantiate(c) for c in _logger_configs(cfg.get("logger"))]
    checkpointing = any(isinstance(c, ModelCheckpoint) for c in callbacks)
    trainer: L.Trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks,
                                     enable_checkpointing=checkpointing)
    for track in tracks:
        spec.build(track.sample_rate, suggest_settings(track.audio, track.sample_rate, target), defaults=True)

    clock = time.perf_counter()
    device = trainer.strategy.root_device
    rate = tracks[0].sample_rate
    if mode == "shared":  # album: one setting for all files, crops drawn from every file
        album, segments = join_tracks(tracks, float(cfg.data.gap_s))
        groups = [(album.name, album.audio, segments)]
    else:
        groups = [(track.name, track.audio, None) for track in tracks]
    items = []
    for name, audio, segments in groups:
        audio = audio.to(device)
        objective = Objective(rate, target, weights, float(drl.integrated_loudness(audio, rate)))
        # the baseline's winner is chosen by the measure the loss optimises, as the tuned settings are
        baseline = run_baseline(audio, rate, target, measure=objective.measure, **baseline_options(cfg))
        items.append(Item(name, audio, objective, segments, baseline, track_metrics(audio, audio, rate, weights)))
    # one batch, one limiter structure: two-stage if any item's baseline won with it; each setting starts on
    # its target, from the best of the processor config's starting points
    two_stage = any(item.baseline.get("slow_release_ms") is not None for item in items)
    starts = [choose_start(spec, item.track, rate, target,
                           suggest_settings(item.track, rate, target, of_structure(item.baseline, two_stage)),
                           item.objective.measure, tol) for item in items]
    if len(items) == 1:
        processor, solvers = starts[0][0], None
    else:
        solvers = [chain for chain, _ in starts]
        processor = spec.build(rate, solvers[0].values()).to(device)
        processor.set_values(**batch_values(solvers))
    module = TuningModule(processor, items, rate, optimizer, crop, spec.level_param, spec.ceiling_param,
                          solvers=solvers, config=flat_config(cfg), idle_values=spec.idle, tol_lu=tol,
                          crops_per_batch=crops_per_batch, seed=int(cfg.data.seed))
    baseline_s = time.perf_counter() - clock
    clock = time.perf_counter()
    trainer.fit(module, *loaders, ckpt_path=ckpt_path)
    if module.finals is None:  # the SolveTarget callback did not run (e.g. an interrupted fit)
        module.finalize(tol_lu=tol)
    timing = {"baseline_and_start": round(baseline_s, 3), "fit": round(time.perf_counter() - clock, 3),
              "final_solve": round(module.finalize_s, 3)}
    results = {}
    for item, metrics, (_, scored) in zip(items, module.final_metrics, starts):
        results[item.name] = {**metrics, "timing_s": timing, "starts": scored}
    if mode == "shared":
        return _write_album(trainer, out_dir, tracks, module, results[album.name], spec.name, weights,
                            conditioning)
    for track in tracks:
        results[track.name]["conditioning"] = conditioning[track.name]
        if mode == "per_track":
            results[track.name]["mode"] = "per_track"
    if trainer.is_global_zero:
        _write_tracks(out_dir, mode, tracks, module, results, spec.name)
    return results[tracks[0].name] if mode == "single" else results


def _quiet_lightning() -> None:
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*GPU available but not used.*")
    warnings.filterwarnings("ignore", message=".*sync_dist=True.*")
    # crops are a function of the step, not of the loader's position: a mid-epoch resume is exact
    warnings.filterwarnings("ignore", message=".*your dataloader is not resumable.*")


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


def _write_tracks(out_dir: Path, mode: str, tracks: list[Track], module: TuningModule, results: dict,
                  processor_name: str) -> None:
    """One track: its three files in the run folder and the summary table. Per track: a folder per file and
    summary.csv."""
    rows = []
    for track, solution in zip(tracks, module.finals):
        folder = out_dir if mode == "single" else out_dir / track.name
        write_results(folder, track.name, solution.output, track.sample_rate, solution.values, results[track.name],
                      processor_name)
        rows.append(summary_row(track.name, results[track.name], solution.values))
    if mode == "single":
        print(summary_table(results[tracks[0].name], module.finals[0].values))
    else:
        print(f"summary: {write_summary(out_dir, rows)}")
    print(f"output folder: {out_dir}")


def _write_album(trainer, out_dir: Path, tracks: list[Track], module: TuningModule, album_metrics: dict,
                 processor_name: str, weights, conditioning: dict) -> dict:
    """Album mode's outputs: per file its slice of the album render and its measures (with the baseline's
    slice), the one setting in every tuned_params.yaml, and summary.csv."""
    rate = tracks[0].sample_rate
    item, final = module.items[0], module.finals[0]
    base_render = render_baseline(item.track, rate, item.baseline)
    results, rows = {}, []
    for track, (offset, length) in zip(tracks, item.segments):
        output = final.output[:, offset:offset + length]
        reference = track.audio.to(output.device)
        base_drl = float(drl.drl_db(reference, base_render[:, offset:offset + length]).mean())
        result = track_metrics(reference, output, rate, weights)
        metrics = {"input": track_metrics(reference, reference, rate, weights), "output": result,
                   "baseline_drl_db": base_drl, "drl_gain_over_baseline_db": base_drl - result["drl_db"],
                   "mode": "shared", "album": album_metrics, "conditioning": conditioning[track.name]}
        results[track.name] = metrics
        rows.append(summary_row(track.name, metrics, final.values))
        if trainer.is_global_zero:
            write_results(out_dir / track.name, track.name, output, rate, final.values, metrics, processor_name)
    if trainer.is_global_zero:
        rows.append(summary_row("album", album_metrics, final.values))
        print(summary_table(album_metrics, final.values))
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
