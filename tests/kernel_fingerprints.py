"""Fingerprints of every kernel entry point's outputs and gradients on fixed inputs.

``python tests/kernel_fingerprints.py MODULE OUT.json`` writes them for a module exposing ``smooth``,
``one_pole``, ``compressor``, ``peak_compressor`` and ``limiter_gain`` (the kernels of today, or the single-file
kernels they were split from). ``tests/data/kernel_fingerprints.json`` was written from the pre-split kernels,
so the regression test holds today's kernels to the outputs they had before the split.

A fingerprint is a handful of numbers per array (weighted sums, energy, ends, extremes) rather than the array:
small enough to commit, and compared with a tolerance, because numba's freshly compiled float64 code can
differ from its cached build in the last bit or so.
"""

import importlib
import json
import sys

import numpy as np
import torch

N_SAMPLES = 3000


def _inputs(n_signals: int, dtype: torch.dtype) -> dict:
    rng = np.random.default_rng(n_signals)

    def tensor(a):
        return torch.tensor(a, dtype=dtype)

    x = rng.standard_normal((n_signals, 2, N_SAMPLES)) * 0.5
    return {
        "r": tensor(rng.random((n_signals, N_SAMPLES)) * 20),
        "a_attack": tensor(rng.random(n_signals) * 0.5 + 0.4),
        "a_release": tensor(rng.random(n_signals) * 0.09 + 0.9),
        "x": tensor(x),
        "det": tensor(np.abs(x).max(axis=1)),
        "g_req": tensor(np.minimum(1.0 / (np.abs(x).max(axis=1) + 0.5), 1.0)),
        "window": torch.tensor(rng.integers(1, 40, n_signals)),
        "threshold_db": tensor(np.full(n_signals, -12.0)),
        "ratio": tensor(np.full(n_signals, 4.0)),
        "knee_db": tensor(np.full(n_signals, 6.0)),
        "makeup_db": tensor(np.full(n_signals, 1.0)),
    }


def _calls(kernels, v: dict) -> dict:
    """Each case: (function of the differentiable inputs, those inputs)."""
    curve = (v["threshold_db"], v["ratio"], v["knee_db"], v["makeup_db"])
    return {
        "smooth": (kernels.smooth, (v["r"], v["a_attack"], v["a_release"])),
        "one_pole": (kernels.one_pole, (v["r"], v["a_release"])),
        "compressor": (
            lambda d, *p: kernels.compressor(d, 20.0, 1e-12, *p),
            (v["det"], *curve, v["a_attack"], v["a_release"]),
        ),
        "peak_compressor": (kernels.peak_compressor, (v["x"], *curve, v["a_attack"], v["a_release"])),
        "limiter_gain": (lambda q, a: kernels.limiter_gain(q, v["window"], a), (v["g_req"], v["a_release"])),
    }


def _fingerprint(a: np.ndarray) -> list[float]:
    flat = a.astype(np.float64).ravel()
    w = np.random.default_rng(len(flat)).uniform(-1, 1, (2, len(flat)))
    return [float(v) for v in (*(w @ flat), flat @ flat, flat[0], flat[-1], flat.max(), flat.min())]


def fingerprints(kernels) -> dict[str, list[list[float]]]:
    """{case: [fingerprint of each output, then of each input's gradient]} over dtypes and signal counts."""
    out = {}
    for dtype in (torch.float32, torch.float64):
        for n_signals in (1, 6):
            for name, (fn, inputs) in _calls(kernels, _inputs(n_signals, dtype)).items():
                leaves = [t.clone().requires_grad_(True) for t in inputs]
                result = fn(*leaves)
                outputs = result if isinstance(result, tuple) else (result,)
                weights = [torch.linspace(0.5, 1.5, o.numel(), dtype=o.dtype).reshape(o.shape) for o in outputs]
                sum((o * w).sum() for o, w in zip(outputs, weights)).backward()
                arrays = [o.detach().numpy() for o in outputs] + [t.grad.numpy() for t in leaves]
                out[f"{name}-{str(dtype).removeprefix('torch.')}-{n_signals}"] = [_fingerprint(a) for a in arrays]
    return out


if __name__ == "__main__":
    module, path = sys.argv[1], sys.argv[2]
    with open(path, "w") as f:
        json.dump(fingerprints(importlib.import_module(module)), f, indent=1)
