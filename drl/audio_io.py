"""Reading audio files for the ``python -m drl`` command line (soundfile: wav, flac, ogg and more)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import torch


def load_audio(path: str | Path, role: str = "audio") -> tuple[torch.Tensor, int]:
    """Read ``path`` as float32 ``(C, T)`` in [-1, 1] and its sample rate in Hz.

    Raises ValueError naming ``role`` and the path for a missing, unreadable or empty file.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise ValueError(f"{role} file not found: {path}")
    if not path.is_file():
        raise ValueError(f"{role} path is not a file: {path}")
    try:
        data, sample_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as error:  # libsndfile signals unreadable files with several exception types
        message = " ".join(str(error).split())
        raise ValueError(f"cannot read {role} file {path}: {message}") from None
    if data.shape[0] == 0:
        raise ValueError(f"{role} file {path} is empty (0 samples)")
    return torch.from_numpy(np.ascontiguousarray(data.T)), int(sample_rate)
