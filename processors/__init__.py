"""processors: differentiable gain, saturator, compressor, limiter and chains. Torch (+ numba kernels)."""

from processors import functional
from processors.base import Processor
from processors.chain import Chain
from processors.compressor import Compressor
from processors.gain import Gain
from processors.limiter import Limiter
from processors.params import ParamSpec
from processors.saturator import Saturator
from processors.subsonic import Subsonic

__all__ = ["ParamSpec", "Processor", "Gain", "Saturator", "Compressor", "Limiter", "Subsonic", "Chain", "functional"]
