"""Where a recursion runs: numba threads over signals on the CPU (one thread when there are too few signals to
share out), or one CUDA thread per signal on a GPU (compiled on first use, time-major arrays)."""

from __future__ import annotations

import numba
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
    kernel[blocks, threads, stream](
        *[cuda.as_cuda_array(a.detach()) if isinstance(a, torch.Tensor) else a for a in args]
    )


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


class Kernel:
    """One recursion's kernel, ``name`` in the CUDA build and ``cpu`` (a ``prange`` loop over signals) on the
    CPU. On the CPU every array is signal-major as torch holds it, (S, T) or (S, C, T); on CUDA the arrays along
    time are time-major, (T, S) or (T, S, C), so that the threads of a warp read adjacent addresses.
    :meth:`along_time` and :meth:`empty` give each side its layout; a Function writes one code path for both."""

    def __init__(self, name: str, cpu) -> None:
        self.name, self.cpu = name, cpu

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
            run_cpu(self.cpu, n_signals, *[a.numpy() if isinstance(a, torch.Tensor) else a for a in args])


def needed(ctx, *grads):
    """``grads`` with None where the input needs no gradient (``ctx.needs_input_grad``)."""
    return tuple(g if need else None for g, need in zip(grads, ctx.needs_input_grad))
