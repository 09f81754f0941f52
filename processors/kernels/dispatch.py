"""Where a recursion runs: numba threads over signals on the CPU (one thread when there are too few signals to
share out), or one CUDA thread per signal on a GPU (compiled on first use, time-major arrays)."""

from __future__ import annotations

import numba
import numpy as np
import torch


def cuda_kernels() -> dict:
    """The CUDA kernels (compiled on first use). Arrays are time-major (T, S): thread i owns column i."""
    from processors.kernels import cuda

    return cuda.KERNELS


# Tests set this under NUMBA_ENABLE_CUDASIM=1 to run the CUDA branch (layouts, launches) on CPU tensors.
SIMULATE_DEVICE_PATH = False


def on_device(t: torch.Tensor) -> bool:
    """Whether ``t`` takes the CUDA branch (a CUDA tensor, or any tensor under the simulator)."""
    return t.is_cuda or SIMULATE_DEVICE_PATH


def launch_cuda(name: str, n_signals: int, *args) -> None:
    """Launch CUDA kernel ``name`` with one thread per signal on torch's current stream."""
    from numba import cuda

    threads = 64
    blocks = (n_signals + threads - 1) // threads
    kernel = cuda_kernels()[name]
    if not any(isinstance(a, torch.Tensor) and a.is_cuda for a in args):  # the simulator: host arrays
        kernel[blocks, threads](*[a.detach().numpy() if isinstance(a, torch.Tensor) else a for a in args])
        return
    stream = cuda.external_stream(torch.cuda.current_stream().cuda_stream)
    kernel[blocks, threads, stream](*[cuda.as_cuda_array(a.detach()) if isinstance(a, torch.Tensor) else a
                                      for a in args])


PARALLEL_MIN_SIGNALS = 4  # below this many signals one thread wins (measured on 2 cores)


def run_cpu(kernel, n_signals: int, *arrays) -> None:
    """Run a CPU kernel (a ``prange`` loop over signals) on numba's threads, or on one thread when there are
    fewer than PARALLEL_MIN_SIGNALS signals: numba's thread pool next to torch's (both busy-waiting) can cost
    far more than it saves on one or two signals."""
    if n_signals >= PARALLEL_MIN_SIGNALS:
        kernel(*arrays)
        return
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        kernel(*arrays)
    finally:
        numba.set_num_threads(threads)


def host(t: torch.Tensor) -> np.ndarray:
    """A contiguous CPU tensor's numpy view (detached)."""
    return t.detach().contiguous().numpy()


def needed(ctx, *grads):
    """``grads`` with None where the input needs no gradient (``ctx.needs_input_grad``)."""
    return tuple(g if need else None for g, need in zip(grads, ctx.needs_input_grad))
