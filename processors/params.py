"""Parameter declaration: name, unit, range, scale, and the map between physical and unconstrained values.

An optimiser moves an unconstrained value ``u``; the physical value is

    q = clamp((1 + 2 eps) sigmoid(u) - eps, 0, 1)          (position in the range, 0..1)
    value = min + (max - min) q                            (linear scale)
    value = exp(log min + (log max - log min) q)           (log scale)

The small margin ``eps`` makes both bounds reachable at a finite ``u``, so common settings that sit exactly
on a bound (ratio 1, knee 0 dB, mix 1) are represented exactly, while the clamp keeps every step inside the
range. The clamp passes the gradient of the unclamped expression (straight-through), so a value parked on a
bound still feels a gradient that can pull it back in; it is never NaN or Inf.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

MARGIN = 0.01


@dataclass(frozen=True)
class ParamSpec:
    """One tunable parameter: ``name`` (carries its unit, e.g. ``attack_ms``), ``unit``, ``min``, ``max``,
    ``default`` and ``scale`` ("linear" or "log"; log needs ``min > 0``)."""

    name: str
    unit: str
    min: float
    max: float
    default: float
    scale: str = "linear"

    def __post_init__(self) -> None:
        if self.scale not in ("linear", "log"):
            raise ValueError(f"{self.name}: scale must be 'linear' or 'log', got {self.scale!r}")
        if not self.min < self.max:
            raise ValueError(f"{self.name}: min ({self.min}) must be below max ({self.max})")
        if self.scale == "log" and self.min <= 0:
            raise ValueError(f"{self.name}: a log-scale parameter needs min > 0, got {self.min}")
        if not self.min <= self.default <= self.max:
            raise ValueError(f"{self.name}: default {self.default} outside {self.min}..{self.max}")

    @property
    def range_text(self) -> str:
        return f"{self.min:g}..{self.max:g} {self.unit}".rstrip()

    @property
    def doc_line(self) -> str:
        """One line for docstrings: name, range with unit, scale, default."""
        scale = ", log scale" if self.scale == "log" else ""
        return f"{self.name}: {self.range_text}{scale}, default {self.default:g}"

    def check(self, value: torch.Tensor) -> torch.Tensor:
        """Return ``value`` as a float64 tensor of shape () or (B,), or raise ValueError naming the range."""
        if value.ndim > 1 or value.numel() == 0:
            raise ValueError(
                f"{self.name} must be a number or a 1-D sequence of B values, got shape {tuple(value.shape)}"
            )
        bad = ~torch.isfinite(value) | (value < self.min) | (value > self.max)
        if bool(bad.any()):
            shown = value.tolist() if value.ndim else float(value)
            raise ValueError(f"{self.name} must be within {self.range_text}, got {shown}")
        return value

    def clamp(self, value: float) -> float:
        """``value`` brought into ``min..max``."""
        return min(max(value, self.min), self.max)

    def _position(self, value: torch.Tensor) -> torch.Tensor:
        """Physical value -> position q in [0, 1]."""
        if self.scale == "log":
            q = (torch.log(value) - math.log(self.min)) / (math.log(self.max) - math.log(self.min))
        else:
            q = (value - self.min) / (self.max - self.min)
        return q.clamp(0.0, 1.0)

    def to_unconstrained(self, value: torch.Tensor) -> torch.Tensor:
        """Physical value (already checked) -> unconstrained ``u`` (float64)."""
        q = self._position(value.double())
        # A value on a bound goes half the margin beyond it, so round-off cannot lift it off the bound.
        q = torch.where(q <= 0, torch.full_like(q, -MARGIN / 2), q)
        q = torch.where(q >= 1, torch.full_like(q, 1 + MARGIN / 2), q)
        p = (q + MARGIN) / (1.0 + 2.0 * MARGIN)
        return torch.log(p) - torch.log1p(-p)

    def to_physical(self, u: torch.Tensor) -> torch.Tensor:
        """Unconstrained ``u`` -> physical value, differentiable, inside [min, max] and exact on the bounds."""
        raw = (1.0 + 2.0 * MARGIN) * torch.sigmoid(u) - MARGIN
        q = raw + (raw.clamp(0.0, 1.0) - raw).detach()  # clamp forward, identity backward
        if self.scale == "log":
            lo, hi = math.log(self.min), math.log(self.max)
            value = torch.exp(lo + (hi - lo) * q)
        else:
            value = self.min + (self.max - self.min) * q
        # Snap onto the exact bound values (exp/log round-off) without touching the gradient.
        exact = torch.where(q <= 0, torch.full_like(value, self.min), value)
        exact = torch.where(q >= 1, torch.full_like(value, self.max), exact)
        return value + (exact - value).detach()
