"""A tuning job from a composed config, for every mode: load and check the inputs, condition them, run the
baselines, choose the starting settings, fit, solve onto the target, write the outputs.

Modes (``data``): one track (``demo``, ``file``); a folder tuned per track (``data.mode=per_track``: B files,
one setting each, in one batch) or as an album (``data.mode=shared``: the files joined, one setting). All of
them are one :class:`tuning.module.TuningModule` over B >= 1 items.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

import drl
from tuning.audio import (
    Track,
    check_count,
    check_crop_length,
    condition_track,
    crop_loaders,
    join_tracks,
    load_folder,
)
from tuning.baseline import of_structure, render_baseline, run_baseline
from tuning.build import ProcessorSpec, choose_start, suggest_settings
from tuning.callbacks import SolveTarget
from tuning.console import quiet_lightning, record, say
from tuning.excerpt import Level, choose_excerpt
from tuning.gain_alone import gain_alone_db, render_gain_alone
from tuning.module import Item, TuningModule, batch_values
from tuning.objective import LossWeights, Objective, Target
from tuning.population import Population, starting_values
from tuning.results import (
    check_fresh,
    check_fresh_summary,
    summary_row,
    summary_table,
    track_metrics,
    write_results,
    write_summary,
)
from tuning.solve import solve_target

#: data.mode of `data=folder`: each file its own settings, or one setting for all (an album).
FOLDER_MODES = ("per_track", "shared")


@dataclass
class Job:
    """A job's inputs, read from the config and checked before any work (:func:`prepare`)."""

    cfg: DictConfig
    out_dir: Path
    mode: str  # "single", or data.mode of a folder: "per_track" or "shared"
    tracks: list[Track]
    conditioning: dict[str, dict]
    target: Target
    weights: LossWeights
    spec: ProcessorSpec
    optimizer: Callable
    population: Population | None
    crop_samples: int
    crops_per_batch: int
    loaders: tuple  # (train, val): placeholder batches, the module draws its own crops
    tol_lu: float
    ckpt_path: str | None


def run(cfg: DictConfig, out_dir: Path) -> dict:
    """Run one tuning job from a composed config, writing into ``out_dir``; return the final metrics (also in
    metrics.json; in folder modes {file name: metrics}). Bad input raises ValueError before any work."""
    quiet_lightning(bool(cfg.get("verbose", False)))
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    job = prepare(cfg, out_dir)
    if job.mode == "single" and job.ckpt_path is None and cfg.solve.get("gain_alone", True):
        answered = answer_with_gain(job)
        if answered is not None:
            return answered
    trainer = make_trainer(cfg, job.tol_lu)
    if not trainer.is_global_zero:  # a DDP process of its own: its own log (Hydra job train_ddp_process_<rank>)
        record.info(f"process {trainer.global_rank} of {trainer.world_size} (ranks from 0)")
    clock = time.perf_counter()
    module, starts, candidate_values = build_module(job, trainer.strategy.root_device)
    baseline_s = time.perf_counter() - clock
    clock = time.perf_counter()
    trainer.fit(module, *job.loaders, ckpt_path=job.ckpt_path)
    if module.finals is None:  # the SolveTarget callback did not run (e.g. an interrupted fit)
        module.finalize(tol_lu=job.tol_lu)
    timing = {
        "baseline_and_start": round(baseline_s, 3),
        "fit": round(time.perf_counter() - clock, 3),
        "final_solve": round(module.finalize_s, 3),
    }
    results = collect_results(job, module, starts, candidate_values, timing)
    if job.mode == "shared":
        return _write_album(trainer, job, module, next(iter(results.values())))
    if trainer.is_global_zero:
        _write_tracks(job, module, results)
    return results[job.tracks[0].name] if job.mode == "single" else results


def prepare(cfg: DictConfig, out_dir: Path) -> Job:
    """Everything that can be wrong with the input, checked before any work: the step count, every config
    group, the tracks (loaded and conditioned), the crop length, fresh output folders, the checkpoint."""
    max_steps = cfg.trainer.get("max_steps", -1)
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps == 0 or max_steps < -1:
        # the starting and idle candidates are scored when training starts: a run needs at least one step
        raise ValueError(
            f"trainer.max_steps must be a whole number >= 1 (or -1: max_epochs decides), got {max_steps!r}"
        )
    target, weights = instantiate(cfg.target), instantiate(cfg.loss)
    spec: ProcessorSpec = instantiate(cfg.processor)
    optimizer = instantiate(cfg.optim)
    mode, tracks = load_tracks(cfg)
    population = search_options(cfg, mode)
    tracks, conditioning = condition_tracks(tracks, cfg.get("subsonic") or {})
    crop_samples = max(check_crop_length(track, float(cfg.data.crop_s)) for track in tracks)
    for track in tracks:
        check_fresh(out_dir / track.name if mode != "single" else out_dir, track.name)
    if mode != "single":
        check_fresh_summary(out_dir)
    ckpt_path = checkpoint_path(cfg, out_dir)
    crops_per_batch = check_count("data.crops_per_batch", cfg.data.crops_per_batch)
    loaders = crop_loaders(int(cfg.data.batches_per_epoch))
    for track in tracks:  # every stage's settings in range, before any work
        spec.build(track.sample_rate, suggest_settings(track.audio, track.sample_rate, target), defaults=True)
    return Job(
        cfg,
        out_dir,
        mode,
        tracks,
        conditioning,
        target,
        weights,
        spec,
        optimizer,
        population,
        crop_samples,
        crops_per_batch,
        loaders,
        float(cfg.solve.tol_lu),
        ckpt_path,
    )


def answer_with_gain(job: Job) -> dict | None:
    """One track whose target a gain alone meets (:mod:`tuning.gain_alone`): its outputs written and its
    metrics returned, with no baseline search or training; None when it needs limiting."""
    track, rate = job.tracks[0], job.tracks[0].sample_rate
    clock = time.perf_counter()
    found = gain_alone_db(track.audio, rate, job.target)
    if found is None:
        return None
    # the limiter never acts: its default settings, a single release
    suggestions = suggest_settings(track.audio, rate, job.target, {"slow_release_ms": None})
    chain = job.spec.build(rate, suggestions, defaults=True)
    spec = chain.spec(job.spec.level_param)
    if not spec.min <= found[0] <= spec.max:
        return None
    chain.set_values(**job.spec.idle, **{job.spec.level_param: found[0]})
    output, metrics = render_gain_alone(track.audio, rate, job.target, job.weights, found[0])
    metrics["conditioning"] = job.conditioning[track.name]
    if track.excerpt:
        metrics["input_excerpt"] = track.excerpt
    metrics["timing_s"] = {"gain_alone": round(time.perf_counter() - clock, 3)}
    values = chain.values()
    write_results(job.out_dir, track.name, output, rate, values, metrics, job.spec.name)
    say_summary(summary_table(metrics, values), track)
    say(f"output folder: {job.out_dir}")
    return metrics


def make_trainer(cfg: DictConfig, tol_lu: float) -> L.Trainer:
    """The Lightning Trainer of `trainer`, with the final solve first among the callbacks of `callbacks` and the
    loggers of `logger`; its progress bar only with `verbose=true` (unless `trainer.enable_progress_bar` says)."""
    callbacks = [SolveTarget(tol_lu=tol_lu), *(instantiate(c) for c in (cfg.get("callbacks") or {}).values())]
    loggers = [instantiate(c) for c in _logger_configs(cfg.get("logger"))]
    checkpointing = any(isinstance(c, ModelCheckpoint) for c in callbacks)
    options = {"logger": loggers or False, "callbacks": callbacks, "enable_checkpointing": checkpointing}
    if cfg.trainer.get("enable_progress_bar") is None:
        options["enable_progress_bar"] = bool(cfg.get("verbose", False))
    return instantiate(cfg.trainer, **options)


def say_summary(table: str, track: Track) -> None:
    """The summary table of one track, and which part of its file was tuned when it was a part:
    "the loudest 8.0 s (61.0-69.0 s of 290.0 s; data.excerpt)"."""
    say(table)
    part = track.excerpt
    if part:
        which = "loudest" if part["choice"] == "loudest" else "first"
        say(
            f"excerpt                the {which} {part['end_s'] - part['start_s']:.1f} s ({part['start_s']:.1f}-"
            f"{part['end_s']:.1f} s of {part['file_s']:.1f} s; data.excerpt)"
        )


def build_module(job: Job, device) -> tuple[TuningModule, list, list | None]:
    """The items (each with its objective and gain + limiter baseline), their starting settings (each solved
    onto the target, the best of the processor config's starts; with a population, its candidates) and the
    :class:`TuningModule` over them. Returns the module, each item's (processor, starts tried) and, with a
    population, each candidate's starting values."""
    rate = job.tracks[0].sample_rate
    items = [make_item(name, audio, segments, job, device) for name, audio, segments in groups(job)]
    # one batch, one limiter structure: two-stage if any item's baseline won with it
    two_stage = any(item.baseline.get("slow_release_ms") is not None for item in items)
    starts = [
        choose_start(
            job.spec,
            item.excerpt.audio,
            rate,
            item.excerpt.target,
            suggest_settings(item.track, rate, job.target, of_structure(item.baseline, two_stage)),
            item.objective.score,
            job.tol_lu,
        )
        for item in items
    ]
    solvers = [chain for chain, _ in starts]
    # each start was scored on target while it was chosen: the module need not render it again
    start_scores = [
        min(s["objective_drl_db"] for s in scored if s["objective_drl_db"] is not None) for _, scored in starts
    ]
    idle_items = candidate_values = None
    if job.population is not None:  # P candidates of the one item, spread over the timing parameters
        chosen = candidates(job.spec, solvers[0], start_scores[0], items[0], rate, job.population, job.tol_lu)
        solvers, start_scores = [chain for chain, _ in chosen], [score for _, score in chosen]
        candidate_values = [solver.values() for solver in solvers]
        items = [replace(items[0], name=f"{items[0].name}/candidate{i}") for i in range(len(solvers))]
        idle_items = [0]
    if len(items) == 1:
        processor, solvers = solvers[0], None
    else:
        processor = job.spec.build(rate, solvers[0].values()).to(device)
        processor.set_values(**batch_values(solvers))
    module = TuningModule(
        processor,
        items,
        rate,
        job.optimizer,
        job.crop_samples,
        job.spec.level_param,
        job.spec.ceiling_param,
        solvers=solvers,
        config=flat_config(job.cfg),
        idle_values=job.spec.idle,
        tol_lu=job.tol_lu,
        crops_per_batch=job.crops_per_batch,
        seed=int(job.cfg.data.seed),
        population=job.population,
        idle_items=idle_items,
        start_scores=start_scores,
    )
    return module, starts, candidate_values


def groups(job: Job) -> list[tuple[str, torch.Tensor, list | None]]:
    """What gets a setting of its own: (name, audio (C, T), crop segments or None) per track, or the album
    (the files joined, crops drawn from every file's segment)."""
    if job.mode == "shared":
        album, segments = join_tracks(job.tracks, float(job.cfg.data.gap_s))
        return [(album.name, album.audio, segments)]
    return [(track.name, track.audio, None) for track in job.tracks]


def make_item(name: str, audio: torch.Tensor, segments, job: Job, device) -> Item:
    """One :class:`Item`: its audio on ``device``, its objective and its gain + limiter baseline, whose winner
    is chosen by the measure the loss optimises, as the tuned settings are."""
    audio, rate = audio.to(device), job.tracks[0].sample_rate
    objective = Objective(rate, job.target, job.weights, float(drl.integrated_loudness(audio, rate)))
    excerpt = choose_excerpt(audio, rate, job.target, job.cfg.solve.get("excerpt_s"))
    baseline = run_baseline(
        audio,
        rate,
        job.target,
        measure=objective.measure,
        score=objective.score,
        excerpt=excerpt,
        **baseline_options(job.cfg),
    )
    # later candidates are compared where the baseline's winner reads on target
    excerpt = replace(excerpt, target=Level(baseline["excerpt"]["target_lufs"], excerpt.target.ceiling_dbtp))
    metrics = track_metrics(audio, audio, rate, job.weights)
    return Item(name, audio, objective, segments, baseline, metrics, excerpt)


def collect_results(
    job: Job, module: TuningModule, starts: list, candidate_values: list | None, timing: dict
) -> dict[str, dict]:
    """{name: metrics} of what was finalized: the run's measures, its timing, the starts tried, the input's
    conditioning (per track) and, with a population, its candidates."""
    results = {}
    for index, metrics in zip(module.final_indices, module.final_metrics):
        own = 0 if job.population is not None else index
        name = module.items[index].name.partition("/candidate")[0]
        results[name] = {**metrics, "timing_s": timing, "starts": starts[own][1]}
        if job.population is not None:
            results[name]["population"] = {
                "size": len(module.items),
                "winner": index,
                "winner_start": candidate_values[index],
                "best_objective_drl_db": [best.objective_db for best in module.best],
            }
    if job.mode != "shared":
        for track in job.tracks:
            results[track.name]["conditioning"] = job.conditioning[track.name]
            if track.excerpt:
                results[track.name]["input_excerpt"] = track.excerpt
            if job.mode == "per_track":
                results[track.name]["mode"] = "per_track"
    return results


def search_options(cfg: DictConfig, mode: str) -> Population | None:
    """The `search` group: None for one start (`search=single`), else the :class:`Population` options."""
    options = OmegaConf.to_container(cfg.search, resolve=True) if cfg.get("search") else {}
    if options.get("size", 1) == 1:
        return None
    unknown = set(options) - set(Population.__dataclass_fields__)
    if unknown:
        raise ValueError(
            f"search has no option {', '.join(sorted(unknown))}; options: {', '.join(Population.__dataclass_fields__)}"
        )
    population = Population(**{**options, "lookahead_ms": tuple(options.get("lookahead_ms", (5.0, 10.0, 20.0)))})
    if mode == "per_track":
        raise ValueError(
            "search=population tunes one track or one album (data.mode=shared); with "
            "data.mode=per_track every file already has its own settings: use search=single"
        )
    return population


def candidates(
    spec: ProcessorSpec,
    start,
    start_score: float,
    item: Item,
    sample_rate: int,
    population: Population,
    tol_lu: float,
) -> list[tuple]:
    """The population's one-setting processors, each solved onto the target on the whole track and scored
    there (``objective_drl_db``): copies of ``start`` (the single-start run's processor, candidate 0, scored
    ``start_score``) at :func:`tuning.population.starting_values`. Returns (processor, score) pairs; candidates
    that cannot reach the target are left out; ValueError when fewer than two remain."""
    out = [(start, start_score)]
    for values in starting_values(start.values(), spec.starts, population)[1:]:
        chain = copy.deepcopy(start)
        chain.set_values(**values)
        try:
            with torch.no_grad():
                solution = solve_target(
                    chain,
                    item.excerpt.audio,
                    sample_rate,
                    item.excerpt.target,
                    spec.level_param,
                    None,
                    tol_lu=tol_lu,
                )
        except ValueError:
            continue
        out.append((chain, item.objective.score(item.excerpt.audio, solution.output)))
    if len(out) < 2:
        raise ValueError("search=population: no starting point but the first can reach the target")
    return out


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
    return {
        "release_ms": list(cfg.baseline.release_ms),
        "lookahead_ms": list(cfg.baseline.lookahead_ms),
        "slow_release_ms": list(cfg.baseline.get("slow_release_ms") or [None]),
        "true_peak": bool(cfg.baseline.true_peak),
        "tol_lu": float(cfg.solve.tol_lu),
    }


def condition_tracks(tracks: list[Track], options) -> tuple[list[Track], dict[str, dict]]:
    """Each track with its DC and infrasound removed where `subsonic.mode` says so, and per track name the
    report metrics.json keeps (:func:`tuning.audio.condition_track`); large offsets are warned about."""
    out, reports = [], {}
    for track in tracks:
        conditioned, report = condition_track(track, str(options.get("mode", "auto")), options.get("cutoff_hz", 20.0))
        warning = report.pop("warning")
        if warning:
            say(warning, warning=True)
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
            raise ValueError(
                f"resume=true but {path} does not exist: nothing to resume in this run folder "
                "(set hydra.run.dir to the killed run's folder)"
            )
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


def _write_tracks(job: Job, module: TuningModule, results: dict) -> None:
    """One track: its three files in the run folder and the summary table. Per track: a folder per file and
    summary.csv."""
    rows = []
    for track, solution in zip(job.tracks, module.finals):
        folder = job.out_dir if job.mode == "single" else job.out_dir / track.name
        write_results(
            folder, track.name, solution.output, track.sample_rate, solution.values, results[track.name], job.spec.name
        )
        rows.append(summary_row(track.name, results[track.name], solution.values))
    if job.mode == "single":
        say_summary(summary_table(results[job.tracks[0].name], module.finals[0].values), job.tracks[0])
    else:
        say(f"summary: {write_summary(job.out_dir, rows)}")
    say(f"output folder: {job.out_dir}")


def _write_album(trainer: L.Trainer, job: Job, module: TuningModule, album_metrics: dict) -> dict:
    """Album mode's outputs: per file its slice of the album render and its measures (with the baseline's
    slice), the one setting in every tuned_params.yaml, and summary.csv."""
    rate = job.tracks[0].sample_rate
    item, final = module.items[module.final_indices[0]], module.finals[0]
    base_render = render_baseline(item.track, rate, item.baseline)
    results, rows = {}, []
    for track, (offset, length) in zip(job.tracks, item.segments):
        output = final.output[:, offset : offset + length]
        reference = track.audio.to(output.device)
        base_drl = float(drl.drl_db(reference, base_render[:, offset : offset + length]).mean())
        result = track_metrics(reference, output, rate, job.weights)
        metrics = {
            "input": track_metrics(reference, reference, rate, job.weights),
            "output": result,
            "baseline_drl_db": base_drl,
            "drl_gain_over_baseline_db": base_drl - result["drl_db"],
            "mode": "shared",
            "album": album_metrics,
            "conditioning": job.conditioning[track.name],
        }
        results[track.name] = metrics
        rows.append(summary_row(track.name, metrics, final.values))
        if trainer.is_global_zero:
            write_results(job.out_dir / track.name, track.name, output, rate, final.values, metrics, job.spec.name)
    if trainer.is_global_zero:
        rows.append(summary_row("album", album_metrics, final.values))
        say(summary_table(album_metrics, final.values))
        say(f"summary: {write_summary(job.out_dir, rows)}")
        say(f"output folder: {job.out_dir}")
    return results


def _logger_configs(node) -> list:
    """`logger` may be one config (a `_target_`), a dict of them, or empty (`logger=[]` / `~logger`)."""
    if not node:
        return []
    if "_target_" in node:
        return [node]
    return [c for c in node.values() if c]
