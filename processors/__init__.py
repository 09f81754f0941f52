"""processors: differentiable gain, saturator, compressor, limiter and chains. Torch (+ numba kernels)."""
