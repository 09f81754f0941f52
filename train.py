"""Tune a processor to a loudness target with the least distortion: `python train.py [hydra overrides]`.

`train(cfg)` does the work and returns the final metrics; `main()` turns bad input (a ValueError or a config
error) into one line on stderr and exit code 2. Torch and Lightning are imported only once the config and the
input files have passed the checks of :mod:`train_cli`, so bad input answers in about a second.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

import train_cli

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
#: Errors that mean bad input or a bad config: one line on stderr, exit code 2.
BAD_INPUT = (ValueError, HydraException, OmegaConfBaseException)
#: The run folder of `hydra.run.dir=...` existed before this run (then it is never removed).
_run_dir_existed = False


def output_dir(cfg: DictConfig) -> Path:
    """Hydra's run folder (`hydra.run.dir`), or `output_dir` / outputs/run when called without Hydra."""
    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    return Path(cfg.get("output_dir") or "outputs/run")


def train(cfg: DictConfig) -> dict:
    """Run one tuning job from a composed config (:func:`tuning.job.run`); return the final metrics."""
    train_cli.check_config(cfg)
    from tuning.job import run  # torch and Lightning: seconds

    return run(cfg, output_dir(cfg).absolute())


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
def _hydra_main(cfg: DictConfig) -> None:
    try:
        train(cfg)
    except BaseException as error:
        if not _run_dir_existed and train_cli.discard_run_folder(output_dir(cfg)):
            _drop_run_log()
        if isinstance(error, BAD_INPUT):  # caught here: past this point Hydra adds its own line to stderr
            fail(error)
        raise


def _drop_run_log() -> None:
    """Close the log files of the root logger (Hydra's train.log) and take them off it: their folder is gone."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, logging.FileHandler)]:
        handler.close()
        root.removeHandler(handler)


def one_line(error: BaseException) -> str:
    """The most specific message of an error chain, on one line (Hydra wraps errors of `_target_` calls)."""
    root = error
    while root.__cause__ is not None or (root.__context__ is not None and not root.__suppress_context__):
        root = root.__cause__ or root.__context__
    if not isinstance(root, BAD_INPUT):
        root = error
    text = " ".join(line.strip() for line in str(root).splitlines() if line.strip())
    return text or type(root).__name__


def fail(error: BaseException | str) -> None:
    print(f"error: {error if isinstance(error, str) else one_line(error)}", file=sys.stderr)
    sys.exit(2)


def compose(overrides: list[str]) -> DictConfig:
    """The `train` config composed with ``overrides`` (and Hydra's node; no run): to explain config errors."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return hydra_compose("train", overrides=overrides, return_hydra_config=True)


def main() -> None:
    global _run_dir_existed
    # Let config errors (unknown group option, missing value) reach this function instead of Hydra's own
    # printing (several lines, exit code 1).
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        args = train_cli.prepare_arguments(sys.argv[1:], train_cli.caller_dir())
    except ValueError as error:
        fail(error)
    run_dir = train_cli.run_dir_option(args)
    _run_dir_existed = run_dir is not None and run_dir.exists()
    sys.argv = [sys.argv[0], *args]
    try:
        _hydra_main()
    except BAD_INPUT as error:
        fail(train_cli.explain(error, args, compose) or error)
    # The job is done and its files are closed. Frozen objects are left out of the interpreter's last garbage
    # collection, which would otherwise walk every object torch and Lightning made (about 0.5 s of each run).
    gc.freeze()


if __name__ == "__main__":
    main()
