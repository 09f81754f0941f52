"""tuning: Lightning jobs that tune processor parameters to loudness targets with the least audible distortion."""

from tuning.audio import Track, demo_track, load_track
from tuning.baseline import run_baseline
from tuning.build import ProcessorSpec, level_statistics, suggest_settings
from tuning.module import Item, TuningModule
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
