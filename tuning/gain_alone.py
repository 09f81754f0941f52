"""Targets a track meets with a gain alone: answered without a baseline search or training.

When the gain that puts the track's integrated loudness on target leaves its true peak under the ceiling,
that gain is the most transparent answer there is (any other processing only adds a residual), so the job
writes it at once: the processed track is the input times the gain, exactly on target, and its settings are
the processor's with every other stage transparent (its ``idle`` values) and the limiter never reached.
"""

from __future__ import annotations

import torch

import drl
from tuning.results import level_metrics, run_metrics, track_metrics

#: metrics.json's ``selected`` for a track answered by a gain alone.
SELECTED = "gain"


def gain_alone_db(
    audio: torch.Tensor, sample_rate: int, target, lufs: float | None = None, true_peak_dbtp: float | None = None
) -> tuple[float, float] | None:
    """(gain in dB, true peak after it in dBTP) when that gain brings ``audio`` (C, T) onto ``target`` with
    its true peak at or under the ceiling; None when limiting is needed (or the track is silent). ``lufs`` and
    ``true_peak_dbtp``: the track's, when measured already."""
    lufs = float(drl.integrated_loudness(audio, sample_rate)) if lufs is None else float(lufs)
    if not lufs > -70.0:  # silent, or everything gated away: nothing a gain can do
        return None
    gain_db = float(target.lufs) - lufs
    peak = float(drl.true_peak(audio, sample_rate).amax()) if true_peak_dbtp is None else float(true_peak_dbtp)
    peak_dbtp = peak + gain_db
    return (gain_db, peak_dbtp) if peak_dbtp <= float(target.ceiling_dbtp) else None


def render_gain_alone(
    audio: torch.Tensor,
    sample_rate: int,
    target,
    weights,
    gain_db: float,
    input_metrics: dict | None = None,
    reading: drl.LevelReading | None = None,
):
    """The render (C, T) and metrics.json of the gain alone; ``reason`` in the metrics says why it sufficed.
    ``input_metrics`` and ``reading``: the input's :func:`tuning.results.track_metrics` and
    :func:`drl.read_levels`, when measured already."""
    with torch.no_grad():
        output = audio * 10.0 ** (gain_db / 20.0)
    reading = reading or drl.read_levels(audio, sample_rate)
    source = input_metrics or track_metrics(audio, audio, sample_rate, weights, reading)
    # The output's levels follow from the input's reading (linear measures of a linear change), and the level
    # match cancels a gain: every distortion measure sits at its floor, as the input's against itself does.
    measured = {**source, **level_metrics(reading.summary(gain_db))}
    # the gain + limiter baseline is this same gain: the limiter never acts
    baseline = {key: measured[key] for key in ("drl_db", "nmr_db", "objective_drl_db", "band_drl_db", "frame_drl_db")}
    baseline.update(lufs=measured["integrated_lufs"], true_peak_dbtp=measured["true_peak_dbtp"], gain_db=gain_db)
    metrics = run_metrics(source, measured, baseline, target, 0, None, SELECTED)
    metrics["reason"] = (
        f"a gain of {gain_db:+.2f} dB alone reaches {target.lufs:g} LUFS with the true peak at "
        f"{measured['true_peak_dbtp']:.2f} dBTP, under the {target.ceiling_dbtp:g} dBTP ceiling: nothing to limit, "
        "so nothing was trained"
    )
    return output, metrics
