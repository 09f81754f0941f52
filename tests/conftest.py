import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(2)
# `./dev train` names the caller's folder to train.py; a test's own runs take their paths from their cwd
os.environ.pop("DRL_CALLER_DIR", None)

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


@pytest.fixture
def compose_config(tmp_path):
    """compose_config(overrides) -> the composed `train` config with HydraConfig set (outputs in tmp_path)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    def _compose(overrides=()):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose("train", overrides=list(overrides), return_hydra_config=True)
        with open_dict(cfg):
            cfg.hydra.runtime.output_dir = str(tmp_path / "run")
            cfg.hydra.job.num = 0
        HydraConfig.instance().set_config(cfg)
        return cfg

    yield _compose
    GlobalHydra.instance().clear()
