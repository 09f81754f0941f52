"""Gain: the stage that drives a limiter towards a loudness target."""

from __future__ import annotations

from processors import functional as Fn
from processors.base import Processor
from processors.params import ParamSpec


class Gain(Processor):
    """y = x 10^(gain_db / 20)."""

    specs = (ParamSpec("gain_db", "dB", -24.0, 36.0, 0.0, "linear"),)

    def __init__(self, sample_rate: int, gain_db=0.0, **unknown) -> None:
        super().__init__(sample_rate, gain_db=gain_db, **unknown)  # unknown names: ValueError

    def process(self, x, gain_db):
        return Fn.gain_bct(x, gain_db)
