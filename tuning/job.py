"""A tuning job from a composed config, for every mode: load and check the inputs, condition them, run the
baselines, choose the starting settings, fit, solve onto the target, write the outputs.

Modes (``data``): one track (``demo``, ``file``); a folder tuned per track (``data.mode=per_track``: B files,
one setting each, in one batch) or as an album (``data.mode=shared``: the files joined, one setting). All of
them are one :class:`tuning.module.TuningModule` over B >= 1 items. Lightning is imported only once a job
trains (seconds of start-up): a track answered by a gain alone never pays for it.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

import drl
from tuning.audio import (
    Track,
    audio_files,
    check_count,
    check_crop_length,
    condition_track,
    crop_loaders,
    join_tracks,
    load_folder,
)
from tuning.baseline import of_structure, render_baseline, run_baseline
from tuning.build import ProcessorSpec, choose_start, suggest_settings
from tuning.console import quiet_lightning, record, say
from tuning.excerpt import Level, choose_excerpt
from tuning.gain_alone import gain_alone_db, render_gain_alone
from tuning.objective import LossWeights, Objective, Target
from tuning.pcm import check_format
from tuning.population import Population, starting_values
from tuning.progress import SILENT, Progress
from tuning.results import (
    check_fresh,
    check_fresh_summary,
    processed_name,
    summary_row,
    summary_table,
    track_metrics,
    write_results,
    write_summary,
)
from tuning.run_report import check_fresh_report, write_report
from tuning.settings import settings_document, subsonic_settings
from tuning.solve import solve_target

if TYPE_CHECKING:
    import lightning as L

    from tuning.callbacks import ObjectiveHistory
    from tuning.module import Item, TuningModule

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
    processed: dict[str, Path]  # per track name: where its processed audio goes (output.dir, output.name)
    levels: dict[str, dict] = field(default_factory=dict)  # per track name: its measures as an input
    readings: dict[str, drl.LevelReading] = field(default_factory=dict)  # per track name: its level reading
    progress: Progress = SILENT
    input_s: float = 0.0  # seconds taken by prepare(): reading, conditioning and measuring the inputs


def run(cfg: DictConfig, out_dir: Path) -> dict:
    """Run one tuning job from a composed config, writing into ``out_dir``; return the final metrics (also in
    metrics.json; in folder modes {file name: metrics}). Bad input raises ValueError before any work."""
    progress = Progress()
    clock = time.perf_counter()
    job = prepare(cfg, out_dir, progress)
    job.input_s = round(time.perf_counter() - clock, 3)
    if job.mode == "single" and job.ckpt_path is None and cfg.solve.get("gain_alone", True):
        answered = answer_with_gain(job)
        if answered is not None:
            return answered
    import lightning as L

    from tuning.callbacks import ObjectiveHistory

    quiet_lightning(bool(cfg.get("verbose", False)))  # after the import, which sets its loggers' levels
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)  # nothing before this draws from the global RNG
    trainer = make_trainer(cfg, job.tol_lu, run_name(job))
    if not trainer.is_global_zero:  # a DDP process of its own: its own log (Hydra job train_ddp_process_<rank>)
        record.info(f"process {trainer.global_rank} of {trainer.world_size} (ranks from 0)")
    clock = time.perf_counter()
    module, starts, candidate_values = build_module(job, trainer.strategy.root_device)
    baseline_s = time.perf_counter() - clock
    clock = time.perf_counter()
    steps = trainer.max_steps
    with progress.stage(f"tuning: {steps} steps, candidates compared at each validation" if steps > 0 else "tuning"):
        trainer.fit(module, *job.loaders, ckpt_path=job.ckpt_path)
    if module.finals is None:  # the SolveTarget callback did not run (e.g. an interrupted fit)
        module.finalize(tol_lu=job.tol_lu)
    timing = {
        "input": job.input_s,
        "baseline_and_start": round(baseline_s, 3),
        "fit": round(time.perf_counter() - clock, 3),
        "final_solve": round(module.finalize_s, 3),
    }
    results = collect_results(job, module, starts, candidate_values, timing)
    history = next(c for c in trainer.callbacks if isinstance(c, ObjectiveHistory))
    if job.mode == "shared":
        return _write_album(trainer, job, module, next(iter(results.values())), history)
    if trainer.is_global_zero:
        _write_tracks(job, module, results, history)
    return results[job.tracks[0].name] if job.mode == "single" else results


def prepare(cfg: DictConfig, out_dir: Path, progress: Progress = SILENT) -> Job:
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
    population = search_options(cfg, str(cfg.data.get("mode")) if cfg.data.get("dir") is not None else "single")
    with progress.stage("reading and checking the input") as end:
        mode, tracks = load_tracks(cfg)
        tracks, conditioning = condition_tracks(tracks, cfg.get("subsonic") or {})
        readings = {track.name: drl.read_levels(track.audio, track.sample_rate) for track in tracks}
        levels = {
            track.name: track_metrics(track.audio, track.audio, track.sample_rate, weights, readings[track.name])
            for track in tracks
        }
        end["result"] = "; ".join(
            describe_input(track, levels[track.name], conditioning[track.name]) for track in tracks[:3]
        ) + (f"; and {len(tracks) - 3} more" if len(tracks) > 3 else "")
    crop_samples = max(check_crop_length(track, float(cfg.data.crop_s)) for track in tracks)
    processed = processed_paths(cfg, out_dir, mode, [track.name for track in tracks], target)
    for track in tracks:
        check_fresh(out_dir / track.name if mode != "single" else out_dir, track.name, processed[track.name])
        check_fresh_report(out_dir / track.name if mode != "single" else out_dir)
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
        processed,
        levels,
        readings,
        progress,
    )


def describe_input(track: Track, levels: dict, conditioning: dict) -> str:
    """One line about an input track: length, rate, channels, loudness, true peak, DC, infrasound."""
    audio, rate = track.audio, track.sample_rate
    removed = ", removed" if conditioning.get("subsonic") else ""

    def number(value, unit):
        return "-" if value is None else f"{value:.2f} {unit}"

    return (
        f"{track.name}: {audio.shape[-1] / rate:.1f} s, {rate} Hz, {audio.shape[0]} ch, "
        f"{number(levels['integrated_lufs'], 'LUFS')}, {number(levels['true_peak_dbtp'], 'dBTP')}, "
        f"DC {conditioning['dc_offset']:.4f}, {100 * conditioning['infrasound_share']:.1f} % below 20 Hz{removed}"
    )


def processed_paths(cfg: DictConfig, out_dir: Path, mode: str, names: list[str], target: Target) -> dict[str, Path]:
    """Per track name, where its processed audio goes: ``output.dir`` (default: processed/ in the track's result
    folder) / ``output.name`` filled in (:func:`tuning.results.processed_name`). Checks ``output.format``
    and that no two tracks get one file."""
    options = cfg.get("output") or {}
    check_format(str(options.get("format", "float32")))
    paths = {}
    for name in names:
        folder = Path(options["dir"]).expanduser() if options.get("dir") else None
        if folder is None:
            folder = (out_dir if mode == "single" else out_dir / name) / "processed"
        paths[name] = folder / processed_name(options.get("name", "{name}"), name, target.lufs)
    if len(set(paths.values())) < len(paths):
        raise ValueError(f"output.name {options.get('name')!r} gives every file one name: put {{name}} in it")
    return paths


def run_name(job: Job) -> str:
    """The loggers' name for this run: the input (the track, or the folder in folder modes) and the target
    loudness, e.g. ``song_-9LUFS``."""
    source = job.tracks[0].name if job.mode == "single" else Path(str(job.cfg.data.dir)).expanduser().resolve().name
    return f"{source}_{job.target.lufs:g}LUFS"


def source_info(cfg: DictConfig, track: Track) -> dict:
    """What tuned_params.yaml says about the input: its name and file (absolute path), or the demo track's
    arguments; ``duration_s`` when only its start was tuned."""
    if cfg.data.get("dir") is not None:
        path = next(p for p in audio_files(cfg.data.dir) if p.stem == track.name)
        return {"name": track.name, "path": str(path.resolve())}
    options = {k: v for k, v in OmegaConf.to_container(cfg.data.track, resolve=True).items() if k != "_target_"}
    if "path" in options:
        options["path"] = str(Path(options["path"]).expanduser().resolve())
    return {"name": track.name, **options}


def output_info(cfg: DictConfig) -> dict:
    """The output format and the dither's seed (the run's ``seed``), as tuned_params.yaml keeps them."""
    return {"format": str((cfg.get("output") or {}).get("format", "float32")), "dither_seed": int(cfg.seed)}


def answer_with_gain(job: Job) -> dict | None:
    """One track whose target a gain alone meets (:mod:`tuning.gain_alone`): its outputs written and its
    metrics returned, with no baseline search or training; None when it needs limiting."""
    track, rate = job.tracks[0], job.tracks[0].sample_rate
    clock = time.perf_counter()
    levels = job.levels.get(track.name) or {}
    found = gain_alone_db(track.audio, rate, job.target, levels.get("integrated_lufs"), levels.get("true_peak_dbtp"))
    if found is None:
        return None
    # the limiter never acts: its default settings, a single release
    suggestions = suggest_settings(track.audio, rate, job.target, {"slow_release_ms": None})
    chain = job.spec.build(rate, suggestions, defaults=True)
    spec = chain.spec(job.spec.level_param)
    if not spec.min <= found[0] <= spec.max:
        return None
    chain.set_values(**job.spec.idle, **{job.spec.level_param: found[0]})
    job.progress.say(f"a gain of {found[0]:+.2f} dB alone meets the target: no limiting needed, nothing to train")
    output, metrics = render_gain_alone(
        track.audio, rate, job.target, job.weights, found[0], job.levels.get(track.name), job.readings.get(track.name)
    )
    metrics["conditioning"] = job.conditioning[track.name]
    if track.excerpt:
        metrics["input_excerpt"] = track.excerpt
    metrics["timing_s"] = {"input": job.input_s, "gain_alone": round(time.perf_counter() - clock, 3)}
    values = chain.values()
    settings = settings_document(
        chain, job.spec.name, source_info(job.cfg, track), job.target, metrics["conditioning"], output_info(job.cfg)
    )
    write_results(job.out_dir, track.name, output, rate, settings, metrics, job.processed[track.name])
    write_report(
        job.out_dir, track.name, track.audio, output, rate, metrics, chain, reading=job.readings.get(track.name)
    )
    say_summary(summary_table(metrics, values), track)
    say(f"output folder: {job.out_dir}")
    return metrics


def make_trainer(cfg: DictConfig, tol_lu: float, name: str = "run") -> L.Trainer:
    """The Lightning Trainer of `trainer`, with the final solve first among the callbacks of `callbacks` and the
    loggers of `logger` (a logger whose ``version`` is "auto" logs into a folder called ``name``), and the
    validations' record for the report; its progress bar only with `verbose=true` (unless
    `trainer.enable_progress_bar` says)."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    from tuning.callbacks import ObjectiveHistory, SolveTarget

    callbacks = [
        SolveTarget(tol_lu=tol_lu),
        ObjectiveHistory(),
        *(instantiate(c) for c in (cfg.get("callbacks") or {}).values()),
    ]
    loggers = [
        instantiate(c, **({"version": name} if c.get("version") == "auto" else {}))
        for c in _logger_configs(cfg.get("logger"))
    ]
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
    from tuning.module import TuningModule, batch_values

    rate = job.tracks[0].sample_rate
    items = [make_item(name, audio, segments, job, device) for name, audio, segments in groups(job)]
    # one batch, one limiter structure: two-stage if any item's baseline won with it
    two_stage = any(item.baseline.get("slow_release_ms") is not None for item in items)
    with job.progress.stage(f"starting points: {1 + len(job.spec.starts)} settings solved onto the target") as end:
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
        # each start was scored on target while it was chosen: the module need not render it again
        start_scores = [
            min(s["objective_drl_db"] for s in scored if s["objective_drl_db"] is not None) for _, scored in starts
        ]
        end["result"] = "best objective " + ", ".join(f"{score:.2f} dB" for score in start_scores[:8])
    solvers = [chain for chain, _ in starts]
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
        config=hparams_config(job),
        idle_values=job.spec.idle,
        tol_lu=job.tol_lu,
        crops_per_batch=job.crops_per_batch,
        seed=int(job.cfg.data.seed),
        population=job.population,
        idle_items=idle_items,
        start_scores=start_scores,
    )
    module.progress = job.progress
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
    from tuning.module import Item

    known = job.levels.get(name) if segments is None else None  # an album is measured as a whole here
    audio, rate = audio.to(device), job.tracks[0].sample_rate
    metrics = known or track_metrics(audio, audio, rate, job.weights)
    lufs = metrics["integrated_lufs"]
    objective = Objective(
        rate, job.target, job.weights, float(drl.integrated_loudness(audio, rate) if lufs is None else lufs)
    )
    excerpt = choose_excerpt(audio, rate, job.target, job.cfg.solve.get("excerpt_s"))
    where = "the whole track" if excerpt.whole else f"a {excerpt.audio.shape[-1] / rate:.0f} s excerpt"
    options = baseline_options(job.cfg)

    def on_point(k: int, n: int, point: dict | None) -> None:
        slow = point and point["slow_release_ms"]
        settings = (
            "cannot reach the target"
            if point is None
            else (
                f"release {point['release_ms']:g} ms, lookahead {point['lookahead_ms']:g} ms"
                + (f", slow release {slow:g} ms" if slow else "")
                + f": objective {point.get('objective_drl_db', point['drl_db']):.2f} dB"
            )
        )
        job.progress.say(f"  baseline {k}/{n}: {settings}")

    with job.progress.stage(f"baseline search for {name} (gain + limiter, ranked on {where})") as end:
        baseline = run_baseline(
            audio,
            rate,
            job.target,
            measure=objective.measure,
            score=objective.score,
            excerpt=excerpt,
            on_point=on_point,
            **options,
        )
        end["result"] = (
            f"release {baseline['release_ms']:g} ms, lookahead {baseline['lookahead_ms']:g} ms; on the whole track "
            f"{baseline['lufs']:.2f} LUFS, {baseline['true_peak_dbtp']:.2f} dBTP, objective "
            f"{baseline.get('objective_drl_db', baseline['drl_db']):.2f} dB"
        )
    # later candidates are compared where the baseline's winner reads on target
    excerpt = replace(excerpt, target=Level(baseline["excerpt"]["target_lufs"], excerpt.target.ceiling_dbtp))
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


def hparams_config(job: Job) -> dict:
    """What identifies a run in the hparams table (the module adds the tuned settings and the results): the
    input, the target, the processor, the loss, the search and the steps. The whole config is in the run
    folder's .hydra/config.yaml."""
    cfg = job.cfg
    source = job.tracks[0].name if job.mode == "single" else str(cfg.data.dir)
    choices = HydraConfig.get().runtime.choices if HydraConfig.initialized() else {}
    return {
        "input": source,
        "mode": job.mode,
        "target": job.target.label,
        "target_lufs": float(job.target.lufs),
        "target_ceiling_dbtp": float(job.target.ceiling_dbtp),
        "processor": job.spec.name,
        "loss": str(choices.get("loss", "custom")),
        "search": "single" if job.population is None else f"population of {job.population.size}",
        "max_steps": int(cfg.trainer.get("max_steps", -1)),
        "seed": int(cfg.seed),
    }


def _write_tracks(job: Job, module: TuningModule, results: dict, history: ObjectiveHistory) -> None:
    """One track: its files (and report.html) in the run folder and the summary table. Per track: a folder per
    file and summary.csv."""
    rows = []
    with job.progress.stage("writing the outputs and report.html") as end:
        for track, index, solution in zip(job.tracks, module.final_indices, module.finals):
            folder = job.out_dir if job.mode == "single" else job.out_dir / track.name
            settings = settings_document(
                module.solvers[index],
                job.spec.name,
                source_info(job.cfg, track),
                job.target,
                job.conditioning[track.name],
                output_info(job.cfg),
            )
            write_results(
                folder,
                track.name,
                solution.output,
                track.sample_rate,
                settings,
                results[track.name],
                job.processed[track.name],
            )
            reference, solver = module.items[index].track, module.solvers[index]
            metrics = results[track.name]
            write_report(
                folder, track.name, reference, solution.output, track.sample_rate, metrics, solver, history.of(index)
            )
            rows.append(summary_row(track.name, results[track.name], solution.values))
        end["result"] = str(job.out_dir)
    if job.mode == "single":
        say_summary(summary_table(results[job.tracks[0].name], module.finals[0].values), job.tracks[0])
    else:
        say(f"summary: {write_summary(job.out_dir, rows)}")
    say(f"output folder: {job.out_dir}")


def _write_album(
    trainer: L.Trainer, job: Job, module: TuningModule, album_metrics: dict, history: ObjectiveHistory
) -> dict:
    """Album mode's outputs: per file its slice of the album render and its measures (with the baseline's
    slice), the one setting in every tuned_params.yaml, a report.html, and summary.csv."""
    rate = job.tracks[0].sample_rate
    index = module.final_indices[0]
    item, final = module.items[index], module.finals[0]
    base_render = render_baseline(item.track, rate, item.baseline)
    album = {
        "gap_s": float(job.cfg.data.gap_s),
        "files": [
            {**source_info(job.cfg, track), "subsonic": subsonic_settings(job.conditioning[track.name])}
            for track in job.tracks
        ],
    }
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
            solver = module.solvers[index]
            settings = settings_document(
                solver,
                job.spec.name,
                source_info(job.cfg, track),
                job.target,
                job.conditioning[track.name],
                output_info(job.cfg),
                album,
            )
            write_results(
                job.out_dir / track.name, track.name, output, rate, settings, metrics, job.processed[track.name]
            )
            write_report(
                job.out_dir / track.name, track.name, reference, output, rate, metrics, solver, history.of(index)
            )
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
