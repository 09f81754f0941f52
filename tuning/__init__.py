"""tuning: Lightning jobs that tune processor parameters to loudness targets with the least audible distortion.

``Item`` and ``TuningModule`` (:mod:`tuning.module`) load Lightning, which takes seconds: they are imported on
first use, so that a job that never trains (a target met by a gain alone) and bad input never wait for it.
"""

import importlib

from tuning.audio import Track, demo_track, load_track
from tuning.baseline import run_baseline
from tuning.build import ProcessorSpec, level_statistics, suggest_settings
from tuning.objective import LossWeights, Objective, Target
from tuning.solve import Solution, find_gain, solve_target

__all__ = [
    "Track",
    "demo_track",
    "load_track",
    "run_baseline",
    "ProcessorSpec",
    "level_statistics",
    "suggest_settings",
    "Item",
    "TuningModule",
    "LossWeights",
    "Objective",
    "Target",
    "Solution",
    "find_gain",
    "solve_target",
]

#: Names served by :func:`__getattr__` from the module that imports Lightning.
_LIGHTNING_NAMES = {"Item": "tuning.module", "TuningModule": "tuning.module"}


def __getattr__(name: str):
    if name in _LIGHTNING_NAMES:
        return getattr(importlib.import_module(_LIGHTNING_NAMES[name]), name)
    raise AttributeError(f"module 'tuning' has no attribute {name!r}")
