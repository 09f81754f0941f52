"""Subsonic filter: removes a DC offset and infrasound ahead of the chain, time-aligned."""

from __future__ import annotations

from processors import functional as Fn
from processors.base import Processor


class Subsonic(Processor):
    """Zero-phase high-pass at ``cutoff_hz`` (a fourth-order Butterworth run forwards and backwards: -6 dB at
    the cutoff, -0.33 dB at 1.5 times it, -0.02 dB at twice it, -21 dB at 0.75 times it; DC removed exactly).
    Real files carry DC offsets, slow drifts and infrasonic drones that take headroom from the limiter without
    being heard; mastering removes them first. No tunable parameters: the cutoff is a setting."""

    specs = ()

    def __init__(self, sample_rate: int, cutoff_hz: float = 20.0, **unknown) -> None:
        """``cutoff_hz``, the filter's -6 dB point, is a setting, not tuned: in 1..40 Hz (default 20)."""
        super().__init__(sample_rate, **unknown)  # unknown names: ValueError
        self.cutoff_hz = Fn.check_cutoff_hz(cutoff_hz, sample_rate)

    def process(self, x):
        return Fn.subsonic_bct(x, sample_rate=self.sample_rate, cutoff_hz=self.cutoff_hz)

    def extra_repr(self) -> str:
        return f"sample_rate={self.sample_rate}, cutoff_hz={self.cutoff_hz}"
