"""Limiter: lookahead brickwall with release and an optional slow (program-dependent) release stage."""

from __future__ import annotations

import torch

from processors import functional as Fn
from processors.base import Processor, check_flag
from processors.params import ParamSpec


class Limiter(Processor):
    """Brickwall: the gain ramps down linearly over the lookahead window ahead of each peak and recovers with
    ``release_ms``; no latency (the lookahead is taken from the future offline). Every output sample stays
    within 10^(ceiling_db/20); with ``true_peak=True`` the peaks between samples are limited as well.

    ``slow_release_ms`` (None = off) adds a slow stage: a one-pole average of the reduction in dB whose
    maximum with the fast reduction is applied, so sustained overs recover slowly and transients fast.
    ``lookahead_ms`` is rounded to whole samples: it is a setting, not a gradient path (frozen at start).
    """

    specs = (
        ParamSpec("ceiling_db", "dBFS", -24.0, 0.0, -1.0, "linear"),
        ParamSpec("release_ms", "ms", 1.0, 1000.0, 50.0, "log"),
        ParamSpec("lookahead_ms", "ms", 0.5, 20.0, 5.0, "log"),
        ParamSpec("slow_release_ms", "ms", 50.0, 5000.0, 500.0, "log"),
    )

    def __init__(
        self,
        sample_rate: int,
        ceiling_db=-1.0,
        release_ms=50.0,
        lookahead_ms=5.0,
        true_peak: bool = False,
        slow_release_ms=None,
        *,
        stereo_link: bool = True,
        **unknown,
    ) -> None:
        """``slow_release_ms`` None (default) leaves the slow stage out (its parameter then does not exist);
        ``lookahead_ms`` is rounded to whole samples and frozen.

        Options (settings, not tuned):
            true_peak: limit the peaks between samples as well (BS.1770 4x oversampling), not only samples.
            stereo_link: True (default): one gain for all channels; False: a gain per channel.
        """
        self.slow_stage = slow_release_ms is not None
        values = dict(ceiling_db=ceiling_db, release_ms=release_ms, lookahead_ms=lookahead_ms)
        if self.slow_stage:
            values["slow_release_ms"] = slow_release_ms
        super().__init__(sample_rate, **values, **unknown)
        self.true_peak = check_flag("true_peak", true_peak)
        self.stereo_link = check_flag("stereo_link", stereo_link)
        self.freeze("lookahead_ms")

    def active_specs(self):
        # without the slow stage its parameter does not exist (values() does not list it)
        return self.specs if self.slow_stage else tuple(s for s in self.specs if s.name != "slow_release_ms")

    def _options(self) -> dict:
        return {"sample_rate": self.sample_rate, "true_peak": self.true_peak, "stereo_link": self.stereo_link}

    def _gain(self, xb, ceiling_db, release_ms, lookahead_ms, slow_release_ms=None):
        return Fn.limiter_gain_bct(xb, ceiling_db, release_ms, lookahead_ms, slow_release_ms, **self._options())

    def process(self, x, ceiling_db, release_ms, lookahead_ms, slow_release_ms=None):
        return Fn.limit_bct(x, ceiling_db, release_ms, lookahead_ms, slow_release_ms, **self._options())

    def gain_reduction_db(self, x: torch.Tensor) -> torch.Tensor:
        """Gain reduction >= 0 dB: the shape of x, or 1 channel when linked."""
        return Fn.on_audio(x, lambda xb: -20.0 * torch.log10(self._gain(xb, **self._batched_params(xb))))
