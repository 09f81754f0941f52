"""tuning: Lightning jobs that tune processor parameters to loudness targets with the least DRL."""

from tuning.audio import Track, demo_track, load_track
from tuning.baseline import run_baseline
from tuning.build import ProcessorSpec, level_statistics, suggest_settings
from tuning.module import TuningModule
from tuning.objective import LossWeights, Objective, Target
from tuning.solve import Solution, find_gain, solve_target

__all__ = [
    "Track", "demo_track", "load_track", "run_baseline", "ProcessorSpec", "level_statistics", "suggest_settings",
    "TuningModule", "LossWeights", "Objective", "Target", "Solution", "find_gain", "solve_target",
]
