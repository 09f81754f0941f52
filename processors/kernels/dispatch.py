"""Where a recursion runs: on the CPU, numba's threads over the signals (the calling thread alone when there is
one signal or too little work to share out), or one CUDA thread per signal on a GPU (compiled on first use,
time-major arrays)."""

from __future__ import annotations

import types

import numba
import numpy as np
import torch
from numba import njit


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
    kernel[blocks, threads, stream](
        *[cuda.as_cuda_array(a.detach()) if isinstance(a, torch.Tensor) else a for a in args]
    )


# A thread gets a share of the work only when the share holds at least this many array elements (the largest
# array's, e.g. 2 T for stereo audio of T samples): below it handing the work over costs more than it saves
# (measured on 2 cores: break-even near 8192 stereo samples per signal).
MIN_ELEMENTS_PER_THREAD = 1 << 15


def cpu_threads(n_signals: int, n_elements: int) -> int:
    """How many threads a CPU kernel over ``n_signals`` signals of ``n_elements`` array elements each runs on:
    at most torch's thread count (``torch.set_num_threads``) and numba's (``NUMBA_NUM_THREADS``), at most one
    per signal, and at most one per MIN_ELEMENTS_PER_THREAD elements."""
    most = min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS, n_signals)
    return max(1, min(most, n_signals * n_elements // MIN_ELEMENTS_PER_THREAD))


def run_cpu(kernel: Kernel, n_signals: int, *arrays) -> None:
    """Run a CPU kernel (every array argument holds one row per signal along its first axis) on
    :func:`cpu_threads` threads: its ``prange`` compilation on that many of numba's threads, or its serial
    compilation on the calling thread when that is one (no pool to wake). Each signal runs the same code
    whatever the thread, so the results are the same bit for bit."""
    elements = max((a.size for a in arrays if isinstance(a, np.ndarray)), default=0) // max(n_signals, 1)
    threads = cpu_threads(n_signals, elements)
    if threads == 1:
        kernel.serial(*arrays)
        return
    before = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        kernel.parallel(*arrays)
    finally:
        numba.set_num_threads(before)


class Kernel:
    """One recursion's kernel, ``name`` in the CUDA build and ``loop`` on the CPU: a plain function that runs
    the per-signal body ``for i in prange(n_signals)``, compiled twice, with ``parallel=True`` for numba's pool
    (:attr:`parallel`) and for one thread (:attr:`serial`; ``prange`` is ``range`` there; ``nogil=True``, so
    that other Python threads run during a long call).
    On the CPU every array is signal-major as torch holds it, (S, T) or (S, C, T); on CUDA the arrays along
    time are time-major, (T, S) or (T, S, C), so that the threads of a warp read adjacent addresses.
    :meth:`along_time` and :meth:`empty` give each side its layout; a Function writes one code path for both."""

    def __init__(self, name: str, loop) -> None:
        self.name = name
        self.parallel = njit(parallel=True, cache=True)(loop)
        self.serial = njit(nogil=True, cache=True)(_renamed(loop, "_serial"))

    @staticmethod
    def along_time(t: torch.Tensor, device_path: bool) -> torch.Tensor:
        """An (S, ..., T) tensor as the kernel reads it: time-major and contiguous on CUDA, contiguous on the
        CPU (free when it already is, e.g. a record :meth:`empty` made)."""
        t = t.detach()
        return t.permute(t.ndim - 1, *range(t.ndim - 1)).contiguous() if device_path else t.contiguous()

    @staticmethod
    def empty(shape, dtype, device, device_path: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """An output along time of signal-major ``shape``: (the array the kernel writes, its (S, ..., T) view)."""
        if device_path:
            array = torch.empty((shape[-1], *shape[:-1]), dtype=dtype, device=device)
            return array, array.permute(*range(1, len(shape)), 0)
        array = torch.empty(shape, dtype=dtype, device=device)
        return array, array

    def __call__(self, device_path: bool, n_signals: int, *args) -> None:
        if device_path:
            launch_cuda(self.name, n_signals, *args)
        else:
            run_cpu(self, n_signals, *[a.numpy() if isinstance(a, torch.Tensor) else a for a in args])


def _renamed(function, suffix: str):
    """A copy of ``function`` whose name ends in ``suffix``: numba's disk cache files a compilation under the
    function's name and line, whatever its options, so two compilations of one function would overwrite each
    other's cache."""
    copy = types.FunctionType(
        function.__code__, function.__globals__, function.__name__ + suffix, function.__defaults__, function.__closure__
    )
    copy.__qualname__ = function.__qualname__ + suffix
    return copy


def needed(ctx, *grads):
    """``grads`` with None where the input needs no gradient (``ctx.needs_input_grad``)."""
    return tuple(g if need else None for g, need in zip(grads, ctx.needs_input_grad))
