"""Saturator: tanh waveshaper with drive, bias (asymmetry: even harmonics), dry/wet mix and output level."""

from __future__ import annotations

from processors import functional as Fn
from processors.base import Processor, check_flag
from processors.params import ParamSpec


class Saturator(Processor):
    """y = mix post (tanh(g x + b) - tanh(b)) + (1 - mix) x, g = 10^(drive_db/20), post = 10^(output_db/20).

    ``unity_gain=True`` divides the wet path by its small-signal slope g sech^2(b), so quiet passages keep
    their level whatever the drive. ``oversample`` (1, 2, 4 or 8) runs the tanh at that multiple of the rate
    between zero-phase anti-alias filters; the output stays aligned with the input.
    """

    specs = (
        ParamSpec("drive_db", "dB", 0.0, 48.0, 6.0, "linear"),
        ParamSpec("bias", "", -1.0, 1.0, 0.0, "linear"),
        ParamSpec("mix", "", 0.0, 1.0, 1.0, "linear"),
        ParamSpec("output_db", "dB", -24.0, 24.0, 0.0, "linear"),
    )

    def __init__(
        self,
        sample_rate: int,
        drive_db=6.0,
        bias=0.0,
        mix=1.0,
        output_db=0.0,
        *,
        oversample: int = 1,
        unity_gain: bool = False,
        **unknown,
    ) -> None:
        """``oversample`` and ``unity_gain`` are settings, not tuned.

        Options:
            oversample: 1 (default), 2, 4 or 8: run the tanh at that multiple of the rate between zero-phase
                anti-alias filters.
            unity_gain: divide the wet path by its small-signal slope, so quiet passages keep their level.
        """
        Fn._check_choice("oversample", oversample, Fn.OVERSAMPLE_FACTORS)
        super().__init__(sample_rate, drive_db=drive_db, bias=bias, mix=mix, output_db=output_db, **unknown)
        self.oversample = int(oversample)
        self.unity_gain = check_flag("unity_gain", unity_gain)

    def process(self, x, drive_db, bias, mix, output_db):
        return Fn.saturate_bct(
            x, drive_db, bias, mix, output_db, oversample=self.oversample, unity_gain=self.unity_gain
        )
