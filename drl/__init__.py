"""drl: the Distortion Residual Level (DRL) metric and loss, BS.1770-4 loudness and true peak. Torch only.

The DRL metric and loss, exact bands and delay alignment (``metric``, ``bands``, ``align``); what the ear hears
of a residual, the noise-to-mask ratio (``nmr``), and what lies below the audible band (``infrasound``);
BS.1770-4 loudness, loudness range, true peak and sample peak (``loudness``, ``peak``).
"""

from drl.align import align, estimate_delay, fractional_delay
from drl.bands import DEFAULT_BANDS, band_key, default_bands
from drl.infrasound import dc_offset, infrasound_share
from drl.loudness import (
    LevelReading,
    Loudness,
    integrated_loudness,
    loudness_range,
    loudness_summary,
    momentary_loudness,
    read_levels,
    short_term_loudness,
)
from drl.metric import DRL, band_drl_db, drl_db, drl_ratio, frame_drl_db, level_match, null
from drl.nmr import nmr_db
from drl.peak import TruePeak, sample_peak, true_peak

__all__ = [
    "align",
    "estimate_delay",
    "fractional_delay",
    "DEFAULT_BANDS",
    "band_key",
    "default_bands",
    "DRL",
    "band_drl_db",
    "drl_db",
    "drl_ratio",
    "frame_drl_db",
    "level_match",
    "null",
    "Loudness",
    "integrated_loudness",
    "loudness_range",
    "loudness_summary",
    "LevelReading",
    "read_levels",
    "momentary_loudness",
    "short_term_loudness",
    "TruePeak",
    "sample_peak",
    "true_peak",
    "dc_offset",
    "infrasound_share",
    "nmr_db",
]
