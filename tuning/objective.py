"""The training objective: DRL plus penalties pulling loudness to the target and true peak under the ceiling.

A batch of crops ``(B, C, L)`` is scored as one signal: crops are joined end to end per channel, so the DRL's
level match ``g`` is shared by all crops (a crop-wise ``g`` would forgive slow gain changes, which the
whole-track DRL counts as distortion) and the integrated loudness of the batch estimates the track's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

import drl
from drl.bands import check_bands


@dataclass(frozen=True)
class Target:
    """A delivery target: integrated loudness ``lufs`` (LUFS) and true-peak ceiling ``ceiling_dbtp`` (dBTP)."""

    lufs: float
    ceiling_dbtp: float
    name: str = "custom"

    def __post_init__(self) -> None:
        for key in ("lufs", "ceiling_dbtp"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"target.{key} must be a finite number, got {value!r}")
        if not -70.0 < self.lufs < 0.0:
            raise ValueError(f"target.lufs must lie within -70..0 LUFS, got {self.lufs}")
        if not -30.0 <= self.ceiling_dbtp <= 0.0:
            raise ValueError(f"target.ceiling_dbtp must lie within -30..0 dBTP, got {self.ceiling_dbtp}")
        # Music keeps its true peak at least a few dB above its integrated loudness; a target within
        # MIN_PLR_DB of the ceiling is out of reach without destroying the signal.
        if self.lufs > self.ceiling_dbtp - MIN_PLR_DB:
            raise ValueError(
                f"target cannot be met: {self.lufs:g} LUFS under a {self.ceiling_dbtp:g} dBTP ceiling leaves a "
                f"peak-to-loudness ratio of {self.ceiling_dbtp - self.lufs:g} dB; at least {MIN_PLR_DB:g} dB is "
                f"needed (lower target.lufs to {self.ceiling_dbtp - MIN_PLR_DB:g} or below)"
            )


#: Smallest peak-to-loudness ratio (true peak minus integrated loudness) a target may ask for, in dB. Even a
#: full-scale square wave reads about 3 dB below its peak (a sine: 3.7 dB at 1 kHz).
MIN_PLR_DB = 3.0


@dataclass(frozen=True)
class LossWeights:
    """Weights of the objective's terms (all >= 0).

    ``drl``: the broadband DRL in dB; ``loudness``: (LUFS - target)^2 in LU^2; ``true_peak``:
    max(0, dBTP - ceiling)^2 in dB^2; ``bands``: optional {"low_high": weight} adding weighted band DRLs.
    """

    drl: float = 1.0
    loudness: float = 1.0
    true_peak: float = 10.0
    bands: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key in ("drl", "loudness", "true_peak"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 \
                    or not math.isfinite(value):
                raise ValueError(f"loss.{key} must be a finite number >= 0, got {value!r}")
        for key, value in dict(self.bands or {}).items():
            parse_band_key(key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ValueError(f"loss.bands.{key} must be a number >= 0, got {value!r}")
        if self.drl == 0 and not any(dict(self.bands or {}).values()):
            raise ValueError("loss.drl is 0 and no band weight is set: the objective would ignore distortion")


def parse_band_key(key: str) -> tuple[float, float]:
    """``"200_2000"`` -> (200.0, 2000.0), the inverse of :func:`drl.band_key`."""
    parts = str(key).split("_")
    try:
        low, high = float(parts[0]), float(parts[1])
        if len(parts) != 2 or not 0 <= low < high:
            raise ValueError
    except (ValueError, IndexError):
        raise ValueError(f"a band key must read 'low_high' in Hz with low < high, e.g. '200_2000', got {key!r}")
    return low, high


def join_crops(audio: torch.Tensor) -> torch.Tensor:
    """(B, C, L) crops -> (C, B * L): each channel's crops end to end."""
    return audio.transpose(0, 1).reshape(audio.shape[1], -1)


class Objective(nn.Module):
    """DRL + loudness + true-peak terms of a batch; ``forward(x, y)`` returns a dict of 0-d tensors.

    With ``input_lufs`` (the whole input track's integrated loudness) the loudness term compares the
    batch's loudness change with the change the track needs, ``target.lufs - input_lufs``, which is far less
    noisy than the crops' absolute loudness; without it, the batch's loudness is compared with the target.

    ``x`` the input crops, ``y`` the processed crops, both (B, C, L). Keys: ``loss``, ``drl_db``,
    ``lufs``, ``loudness_error_lu``, ``true_peak_dbtp`` (the batch maximum), ``peak_excess_db`` and one
    ``band_drl_db/<key>`` per weighted band.
    """

    def __init__(self, sample_rate: int, target: Target, weights: LossWeights,
                 input_lufs: float | None = None) -> None:
        super().__init__()
        self.sample_rate = int(sample_rate)
        self.target = target
        self.input_lufs = None if input_lufs is None else float(input_lufs)
        self.weights = weights
        self.band_weights = {k: float(v) for k, v in dict(weights.bands or {}).items() if v > 0}
        self.bands = [parse_band_key(k) for k in self.band_weights]
        check_bands(self.bands, self.sample_rate)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        x_all, y_all = join_crops(x), join_crops(y)
        drl_db = drl.drl_db(x_all, y_all).mean()
        lufs = drl.integrated_loudness(y_all, self.sample_rate)
        if self.input_lufs is None:
            error = lufs - self.target.lufs
        else:
            # The loudness change of these crops against the change the whole track needs: random crops of a
            # track with quiet and loud sections differ in loudness by several LU, their change much less.
            with torch.no_grad():
                crops_in = drl.integrated_loudness(x_all, self.sample_rate)
            error = (lufs - crops_in) - (self.target.lufs - self.input_lufs)
        peaks = drl.true_peak(y, self.sample_rate)  # (B, C); the gradient reaches the loudest sample
        excess = torch.relu(peaks - self.target.ceiling_dbtp)
        w = self.weights
        loss = w.drl * drl_db + w.loudness * error.square() + w.true_peak * excess.square().mean()
        terms = {
            "drl_db": drl_db,
            "lufs": lufs,
            "loudness_error_lu": error,
            "true_peak_dbtp": peaks.amax(),
            "peak_excess_db": excess.amax(),
        }
        if self.bands:
            band_db = drl.band_drl_db(x_all, y_all, self.sample_rate, self.bands).mean(dim=-1)
            for (key, weight), value in zip(self.band_weights.items(), band_db):
                loss = loss + weight * value
                terms[f"band_drl_db/{key}"] = value
        terms["loss"] = loss
        return terms
