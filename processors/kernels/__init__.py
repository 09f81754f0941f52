"""The sequential recursions of the processors: compiled forward kernels and exact adjoint (backward-in-time)
kernels, a module per recursion.

Each recursion is written once as a plain per-signal function and compiled twice: with ``numba.njit`` for the
CPU (threads over signals when there are enough of them) and, only when a CUDA tensor arrives, with
``numba.cuda.jit`` in ``kernels.cuda`` (one thread per signal, time-major layout so that a warp reads
adjacent addresses). Nothing CUDA is imported otherwise. One exception: on the CPU the peak compressor's
forward runs in blocks whose independent per-sample work is vectorised (``kernels.blocked``); it records
what the per-signal forward records (over_db finite everywhere), for the shared backward.

- ``smooth(r, a_attack, a_release)``: s[n] = a s[n-1] + (1 - a) r[n], a = a_attack if r[n] > s[n-1] else
  a_release, s[-1] = 0; ``one_pole`` is the same with a single coefficient (RMS detector, slow stage).
- ``compressor(det, ...)``: the compressor after its detector in one pass: level in dB, soft-knee static
  curve, gain reduction, the ``smooth`` ballistics and the make-up gain; ``peak_compressor(x, ...)`` also
  takes the peak detector (maximum over linked channels) and applies the gain to x.
- ``limiter_gain(g_req, lookahead_samples, release_coefficient)``: forward-looking running minimum of g_req
  over the lookahead, moving average over the same length (so g <= g_req everywhere), then
  g[n] = min(avg[n], rise[n]) with rise[n] = g[n-1] + (1 - a)(1 - g[n-1]), a the release coefficient
  (instant attack to the ramp, release towards 1), g[-1] = 1.

The forward records its branch choices; the backward runs the adjoint recursion with those choices, so the
gradients are exact for the branches taken (``torch.autograd.gradcheck`` passes in float64). The autograd
Functions are in the current style: ``forward`` returns the outputs and the records (marked
non-differentiable), ``setup_context`` saves them, and ``backward`` returns a gradient only for the inputs
that need one (``ctx.needs_input_grad``) and runs no kernel when none does.
Arithmetic inside the kernels is float64 whatever the tensor dtype.

Modules: ``steps`` (the per-sample steps every compilation inlines), ``smoothing``, ``compression`` and
``limiter`` (each: per-signal bodies, their CPU compilation, the autograd Function and the entry points),
``blocked`` (the CPU peak compressor's vectorised forward), ``dispatch`` (``Kernel``: one call for both
sides, CPU threads over signal-major arrays or a CUDA launch over time-major ones, and the layouts each takes)
and ``cuda`` (the CUDA compilation, imported on the first CUDA tensor).
"""

from processors.kernels.compression import compressor, peak_compressor
from processors.kernels.dispatch import cuda_kernels
from processors.kernels.limiter import limiter_gain, peak_limiter, window_samples
from processors.kernels.smoothing import one_pole, smooth, time_coefficient
from processors.kernels.steps import LEVEL_FLOOR

__all__ = [
    "smooth",
    "one_pole",
    "compressor",
    "peak_compressor",
    "limiter_gain",
    "peak_limiter",
    "time_coefficient",
    "window_samples",
    "cuda_kernels",
    "LEVEL_FLOOR",
]
