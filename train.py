"""Tune a processor to a loudness target with the least distortion: `python train.py [hydra overrides]`.

`train(cfg)` does the work and returns the final metrics; `main()` turns bad input (a ValueError or a config
error) into one line on stderr and exit code 2.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from tuning.job import run

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
#: Errors that mean bad input or a bad config: one line on stderr, exit code 2.
BAD_INPUT = (ValueError, HydraException, OmegaConfBaseException)


def output_dir(cfg: DictConfig) -> Path:
    """Hydra's run folder (`hydra.run.dir`), or `output_dir` / outputs/run when called without Hydra."""
    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    return Path(cfg.get("output_dir") or "outputs/run")


def train(cfg: DictConfig) -> dict:
    """Run one tuning job from a composed config (:func:`tuning.job.run`); return the final metrics."""
    return run(cfg, output_dir(cfg))


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
