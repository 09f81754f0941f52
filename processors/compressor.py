"""Compressor: feed-forward, log domain, soft knee (Giannoulis, Massberg and Reiss, 2012)."""

from __future__ import annotations

import torch

from processors import functional as Fn
from processors.base import Processor, check_flag
from processors.params import ParamSpec


class Compressor(Processor):
    """Level (peak, or one-pole RMS over ``rms_ms``), soft-knee static curve, attack/release ballistics on the
    gain reduction in dB, make-up gain. ``stereo_link``: one gain for all channels from the per-sample
    maximum of the channels' levels. With ``detector="peak"`` the ``rms_ms`` parameter is unused and frozen.
    """

    specs = (
        ParamSpec("threshold_db", "dB", -60.0, 0.0, -20.0, "linear"),
        ParamSpec("ratio", ":1", 1.0, 20.0, 4.0, "log"),
        ParamSpec("knee_db", "dB", 0.0, 24.0, 6.0, "linear"),
        ParamSpec("attack_ms", "ms", 0.1, 100.0, 5.0, "log"),
        ParamSpec("release_ms", "ms", 5.0, 2000.0, 100.0, "log"),
        ParamSpec("makeup_db", "dB", -12.0, 24.0, 0.0, "linear"),
        ParamSpec("rms_ms", "ms", 1.0, 100.0, 10.0, "log"),
    )

    def __init__(
        self,
        sample_rate: int,
        threshold_db=-20.0,
        ratio=4.0,
        knee_db=6.0,
        attack_ms=5.0,
        release_ms=100.0,
        makeup_db=0.0,
        *,
        detector: str = "peak",
        rms_ms=10.0,
        stereo_link: bool = True,
        **unknown,
    ) -> None:
        """``detector`` and ``stereo_link`` are settings, not tuned.

        Options:
            detector: "peak" (default) or "rms" (the one-pole mean square over ``rms_ms``); with "peak",
                ``rms_ms`` is unused and frozen.
            stereo_link: True (default): one gain for all channels, from the per-sample maximum of their
                levels; False: a gain per channel.
        """
        Fn._check_choice("detector", detector, Fn.DETECTORS)
        super().__init__(
            sample_rate,
            threshold_db=threshold_db,
            ratio=ratio,
            knee_db=knee_db,
            attack_ms=attack_ms,
            release_ms=release_ms,
            makeup_db=makeup_db,
            rms_ms=rms_ms,
            **unknown,
        )
        self.detector = detector
        self.stereo_link = check_flag("stereo_link", stereo_link)
        if detector == "peak":
            self.freeze("rms_ms")

    def _options(self) -> dict:
        return {"sample_rate": self.sample_rate, "detector": self.detector, "stereo_link": self.stereo_link}

    def process(self, x, threshold_db, ratio, knee_db, attack_ms, release_ms, makeup_db, rms_ms):
        return Fn.compress_bct(
            x, threshold_db, ratio, knee_db, attack_ms, release_ms, makeup_db, rms_ms=rms_ms, **self._options()
        )

    def gain_reduction_db(self, x: torch.Tensor) -> torch.Tensor:
        """Smoothed gain reduction s >= 0 dB (before make-up): the shape of x, or 1 channel when linked."""
        return Fn.on_audio(x, self._gain_reduction_db)

    def _gain_reduction_db(self, xb: torch.Tensor) -> torch.Tensor:
        p = self._batched_params(xb)
        return Fn.compressor_gain_reduction_db_bct(
            xb,
            p["threshold_db"],
            p["ratio"],
            p["knee_db"],
            p["attack_ms"],
            p["release_ms"],
            rms_ms=p["rms_ms"],
            **self._options(),
        )

    def static_curve_db(self, level_db: torch.Tensor) -> torch.Tensor:
        """Output level (dB) of the static curve incl. make-up for input levels ``level_db`` (any shape);
        with B batched settings the result gains a leading (B,) dimension."""
        level_db = torch.as_tensor(level_db)
        dtype = level_db.dtype if level_db.is_floating_point() else torch.float64
        level_db = level_db.to(dtype)

        def p(name):
            v = self.param(name).to(device=level_db.device, dtype=dtype)
            return v.reshape((-1,) + (1,) * level_db.ndim) if v.ndim else v

        curve = Fn.static_curve_db(level_db, p("threshold_db"), p("ratio"), p("knee_db"))
        return curve + p("makeup_db")
