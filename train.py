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
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

import drl
from tuning.audio import check_crop_length, crop_loaders
from tuning.baseline import run_baseline
from tuning.build import ProcessorSpec, suggest_settings
from tuning.callbacks import SolveTarget
from tuning.module import TuningModule
from tuning.objective import Objective
from tuning.results import check_fresh, summary_table, track_metrics, write_results
from tuning.solve import solve_target

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
#: Errors that mean bad input or a bad config: one line on stderr, exit code 2.
BAD_INPUT = (ValueError, HydraException, OmegaConfBaseException)


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
    """Run one tuning job from a composed config; return the final metrics (also in metrics.json)."""
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*GPU available but not used.*")
    out_dir = output_dir(cfg)
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)

    # Everything that can be wrong with the input is checked here, before any training.
    target = instantiate(cfg.target)
    weights = instantiate(cfg.loss)
    spec: ProcessorSpec = instantiate(cfg.processor)
    optimizer = instantiate(cfg.optim)
    track = instantiate(cfg.data.track)
    crop = check_crop_length(track, float(cfg.data.crop_s))
    check_fresh(out_dir, track.name)
    train_loader, val_loader = crop_loaders(
        track.audio.shape[-1], crop, int(cfg.data.crops_per_batch), int(cfg.data.batches_per_epoch),
        int(cfg.data.seed),
    )
    callbacks = [SolveTarget(tol_lu=float(cfg.solve.tol_lu))]
    callbacks += [instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    loggers = [instantiate(c) for c in _logger_configs(cfg.get("logger"))]
    trainer: L.Trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks)
    spec.build(track.sample_rate, suggest_settings(track.audio, track.sample_rate, target), defaults=True)

    device = trainer.strategy.root_device
    audio = track.audio.to(device)
    rate = track.sample_rate
    clock = time.perf_counter()
    baseline = run_baseline(
        audio, rate, target, list(cfg.baseline.release_ms), list(cfg.baseline.lookahead_ms),
        true_peak=bool(cfg.baseline.true_peak), tol_lu=float(cfg.solve.tol_lu),
    )
    processor = spec.build(rate, suggest_settings(audio, rate, target, baseline)).to(device)
    # Start on the loudness target: the penalties then only have to keep it there.
    solve_target(processor, audio, rate, target, spec.level_param, None, tol_lu=float(cfg.solve.tol_lu))

    input_lufs = float(drl.integrated_loudness(audio, rate))
    module = TuningModule(
        processor, audio, rate, Objective(rate, target, weights, input_lufs), optimizer, crop,
        spec.level_param, spec.ceiling_param, config=flat_config(cfg), baseline=baseline, idle_values=spec.idle,
        tol_lu=float(cfg.solve.tol_lu), input_metrics=track_metrics(audio, audio, rate),
    )
    baseline_s = time.perf_counter() - clock
    clock = time.perf_counter()
    trainer.fit(module, train_loader, val_loader)
    if module.final is None:  # the SolveTarget callback did not run (e.g. an interrupted fit)
        module.finalize(tol_lu=float(cfg.solve.tol_lu))

    metrics = module.final_metrics
    metrics["timing_s"] = {"baseline_and_start": round(baseline_s, 3),
                           "fit": round(time.perf_counter() - clock, 3),
                           "final_solve": round(module.finalize_s, 3)}
    if trainer.is_global_zero:
        write_results(out_dir, track.name, module.final.output, rate, module.final.values, metrics, spec.name)
        print(summary_table(metrics, module.final.values))
        print(f"output folder: {out_dir}")
    return metrics


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
