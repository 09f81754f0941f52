"""The training objective: DRL plus penalties pulling loudness to the target and true peak under the ceiling.

A batch of crops ``(B, C, L)`` is scored as one signal: crops are joined end to end per channel, so the DRL's
level match ``g`` is shared by all crops (a crop-wise ``g`` would forgive slow gain changes, which the
whole-track DRL counts as distortion) and the integrated loudness of the batch estimates the track's.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

import drl
from drl.bands import check_bands
from drl.checks import check_number
from drl.nmr import MaskedReference
from tuning.last_answer import LastAnswer

#: "On target" (metrics.json's ``on_target``): the loudness within this many LU of the target and the true peak
#: at most ON_TARGET_DB above the ceiling. Every solve lands far closer (``solve.tol_lu``); the margins cover
#: a file of an album, which is solved as part of the album, and a true peak rounded by a codec.
ON_TARGET_LU, ON_TARGET_DB = 0.2, 0.1


@dataclass(frozen=True)
class Target:
    """A delivery target: integrated loudness ``lufs`` (LUFS) and true-peak ceiling ``ceiling_dbtp`` (dBTP).

    A preset (configs/target/) gives its ``name`` and its own values as ``preset_lufs`` and
    ``preset_ceiling_dbtp``; a value overridden on top of it shows in :attr:`label`."""

    lufs: float
    ceiling_dbtp: float
    name: str = "custom"
    preset_lufs: float | None = None
    preset_ceiling_dbtp: float | None = None

    @property
    def label(self) -> str:
        """The name the outputs give the target: the preset's name, followed by the values that differ from the
        preset's ("streaming (lufs=-9)")."""
        changed = [
            f"{key}={value:g}"
            for key, value, preset in (
                ("lufs", self.lufs, self.preset_lufs),
                ("ceiling_dbtp", self.ceiling_dbtp, self.preset_ceiling_dbtp),
            )
            if preset is not None and float(value) != float(preset)
        ]
        return f"{self.name} ({', '.join(changed)})" if changed else self.name

    def met_by(self, lufs: float, true_peak_dbtp: float) -> bool:
        """Whether a render of integrated loudness ``lufs`` and true peak ``true_peak_dbtp`` is on this target:
        within :data:`ON_TARGET_LU` of the loudness and at most :data:`ON_TARGET_DB` above the ceiling."""
        return bool(abs(lufs - self.lufs) <= ON_TARGET_LU and true_peak_dbtp <= self.ceiling_dbtp + ON_TARGET_DB)

    def __post_init__(self) -> None:
        check_number("target.lufs", self.lufs, -70.0, 0.0, unit="LUFS", low_open=True, high_open=True)
        check_number("target.ceiling_dbtp", self.ceiling_dbtp, -30.0, 0.0, unit="dBTP")
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
    max(0, dBTP - ceiling)^2 in dB^2; ``bands``: optional {"low_high": weight} adding weighted band DRLs;
    ``frame``: the frame-wise DRL in dB (level matched per Hann frame of ``frame_ms``, see :mod:`drl.frames`);
    ``nmr``: the noise-to-mask ratio in dB (the residual against the reference's masking threshold per
    critical band and frame, see :mod:`drl.nmr`).

    The distortion terms (``drl``, ``bands``, ``frame``) also define the measure that selects the best
    settings: :meth:`objective_drl_db`, their weighted mean.
    """

    drl: float = 1.0
    loudness: float = 1.0
    true_peak: float = 10.0
    bands: Mapping[str, float] = field(default_factory=dict)
    frame: float = 0.0
    frame_ms: float = 50.0
    nmr: float = 0.0

    def __post_init__(self) -> None:
        for key in ("drl", "loudness", "true_peak", "frame", "nmr"):
            check_number(f"loss.{key}", getattr(self, key), 0.0)
        for key, value in dict(self.bands or {}).items():
            parse_band_key(key)
            check_number(f"loss.bands.{key}", value, 0.0)
        if self.drl == 0 and self.frame == 0 and self.nmr == 0 and not any(dict(self.bands or {}).values()):
            raise ValueError(
                "loss.drl, loss.frame and loss.nmr are 0 and no band weight is set: the objective "
                "would ignore distortion"
            )
        check_number("loss.frame_ms", self.frame_ms, 1.0, 1000.0, unit="ms")

    def band_weights(self) -> dict[str, float]:
        """The bands with a weight > 0, {"low_high": weight}."""
        return {str(k): float(v) for k, v in dict(self.bands or {}).items() if v > 0}

    def objective_drl_db(self, measures: Mapping[str, torch.Tensor | float]):
        """The weighted mean of the distortion measures the loss weights, in dB: ``(drl * drl_db + sum_b w_b *
        band_drl_db/b + frame * frame_drl_db + nmr * nmr_db) / (drl + sum_b w_b + frame + nmr)``; with ``drl``
        alone (loss=plain) it is exactly ``drl_db``. ``measures`` as returned by :func:`distortion_measures`."""
        parts = [(self.drl, "drl_db"), (self.frame, "frame_drl_db"), (self.nmr, "nmr_db")]
        parts += [(w, f"band_drl_db/{k}") for k, w in self.band_weights().items()]
        parts = [(float(w), key) for w, key in parts if w > 0]
        total = sum(w for w, _ in parts)
        return sum(w * measures[key] for w, key in parts) / total


def parse_band_key(key: str) -> tuple[float, float]:
    """``"200_2000"`` -> (200.0, 2000.0), the inverse of :func:`drl.band_key`."""
    parts = str(key).split("_")
    try:
        low, high = float(parts[0]), float(parts[1])
        if len(parts) != 2 or not 0 <= low < high:
            raise ValueError
    except (ValueError, IndexError):
        raise ValueError(
            f"a band key must read 'low_high' in Hz with low < high, e.g. '200_2000', got {key!r}"
        ) from None
    return low, high


def distortion_measures(
    reference: torch.Tensor,
    output: torch.Tensor,
    sample_rate: int,
    weights: LossWeights | None = None,
    masked: MaskedReference | None = None,
    known: Mapping[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Every run's distortion measures of ``output`` against ``reference`` (both (C, T)), 0-d tensors (means
    over channels, differentiable): ``drl_db``, ``band_drl_db/<key>`` for :func:`drl.default_bands` and the
    loss's bands, ``frame_drl_db`` (frames of ``weights.frame_ms``, 50 ms without weights), ``nmr_db`` and
    ``objective_drl_db`` (:meth:`LossWeights.objective_drl_db`; plain DRL without weights). ``masked``: the
    reference's half of the NMR computed already (:class:`drl.nmr.MaskedReference`); ``known``: measures of
    this very pair computed already (``drl_db``, ``frame_drl_db``, ``nmr_db``), taken as they are."""
    weights, known = weights or LossWeights(), known or {}
    bands = drl.default_bands(sample_rate)
    bands += [b for b in map(parse_band_key, weights.band_weights()) if b not in bands]
    measures = {"drl_db": known["drl_db"] if "drl_db" in known else drl.drl_db(reference, output).mean()}
    values = drl.band_drl_db(reference, output, sample_rate, bands).mean(dim=-1)
    for (low, high), value in zip(bands, values):
        measures[f"band_drl_db/{drl.band_key(low, high)}"] = value
    # band keys of the loss as written in the config ("200_2000" and "200.0_2000.0" name the same band)
    for key in weights.band_weights():
        measures[f"band_drl_db/{key}"] = measures[f"band_drl_db/{drl.band_key(*parse_band_key(key))}"]
    if "frame_drl_db" in known:
        measures["frame_drl_db"] = known["frame_drl_db"]
    else:
        measures["frame_drl_db"] = drl.frame_drl_db(reference, output, sample_rate, weights.frame_ms).mean()
    if "nmr_db" in known:
        measures["nmr_db"] = known["nmr_db"]
    else:
        nmr = masked.nmr_db(output) if masked is not None else drl.nmr_db(reference, output, sample_rate)
        measures["nmr_db"] = nmr.mean()
    measures["objective_drl_db"] = weights.objective_drl_db(measures)
    return measures


def join_crops(audio: torch.Tensor) -> torch.Tensor:
    """(B, C, L) crops -> (C, B * L): each channel's crops end to end."""
    return audio.transpose(0, 1).reshape(audio.shape[1], -1)


class Objective(nn.Module):
    """DRL + loudness + true-peak terms of a batch; ``forward(x, y)`` returns a dict of 0-d tensors.

    With ``input_lufs`` (the whole input track's integrated loudness) the loudness term compares the
    batch's loudness change with the change the track needs, ``target.lufs - input_lufs``, which is far less
    noisy than the crops' absolute loudness; without it, the batch's loudness is compared with the target.

    ``x`` the input crops, ``y`` the processed crops, both (B, C, L). Keys: ``loss``, ``drl_db``,
    ``lufs``, ``loudness_error_lu``, ``true_peak_dbtp`` (the batch maximum), ``peak_excess_db``, one
    ``band_drl_db/<key>`` per weighted band, and ``frame_drl_db`` and ``nmr_db`` when weighted. The frame-wise
    DRL runs on the joined crops: the joins are the same in ``x`` and ``y``, so they add no residual of their own.
    """

    def __init__(self, sample_rate: int, target: Target, weights: LossWeights, input_lufs: float | None = None) -> None:
        super().__init__()
        self.sample_rate = int(sample_rate)
        self.target = target
        self.input_lufs = None if input_lufs is None else float(input_lufs)
        self.weights = weights
        self.band_weights = weights.band_weights()
        self.bands = [parse_band_key(k) for k in self.band_weights]
        check_bands(self.bands, self.sample_rate)
        self._masked: LastAnswer[MaskedReference] = LastAnswer()
        self._scored: list[tuple[weakref.ref, weakref.ref, dict[str, torch.Tensor]]] = []

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
        if w.frame > 0:
            frame_db = drl.frame_drl_db(x_all, y_all, self.sample_rate, w.frame_ms).mean()
            loss = loss + w.frame * frame_db
            terms["frame_drl_db"] = frame_db
        if w.nmr > 0:
            nmr_db = drl.nmr_db(x_all, y_all, self.sample_rate).mean()
            loss = loss + w.nmr * nmr_db
            terms["nmr_db"] = nmr_db
        terms["loss"] = loss
        return terms

    def measure(self, reference: torch.Tensor, output: torch.Tensor) -> dict[str, torch.Tensor]:
        """:func:`distortion_measures` of a whole-track ``output`` (C, T) with this objective's weights. The
        reference's half of the NMR is kept for later calls with the same ``reference`` tensor (a baseline
        grid, the starting points and every validation score outputs against one track); the measures that the
        last two :meth:`score` calls computed are taken from them when they scored these very tensors (the
        baseline's finalists scored, then the winner measured in full)."""
        known = next((m for ref, out, m in self._scored if ref() is reference and out() is output), None)
        return distortion_measures(
            reference, output, self.sample_rate, self.weights, self._masked_reference(reference), known
        )

    def score(self, reference: torch.Tensor, output: torch.Tensor) -> float:
        """``measure(reference, output)["objective_drl_db"]`` computing only the measures the loss weights:
        what ranking candidates needs."""
        w = self.weights
        measures = {}
        if w.drl > 0:
            measures["drl_db"] = drl.drl_db(reference, output).mean()
        keys = list(w.band_weights())
        if keys:
            values = drl.band_drl_db(reference, output, self.sample_rate, [parse_band_key(k) for k in keys])
            measures.update({f"band_drl_db/{k}": v for k, v in zip(keys, values.mean(dim=-1))})
        if w.frame > 0:
            measures["frame_drl_db"] = drl.frame_drl_db(reference, output, self.sample_rate, w.frame_ms).mean()
        if w.nmr > 0:
            measures["nmr_db"] = self._masked_reference(reference).nmr_db(output).mean()
        self._scored = [(weakref.ref(reference), weakref.ref(output), measures), *self._scored][:2]
        return float(w.objective_drl_db(measures))

    def _masked_reference(self, reference: torch.Tensor) -> MaskedReference:
        """The reference's half of the NMR, kept for the last reference tensor only: the whole track's (about two
        copies of it) goes as soon as the excerpt is scored again, and the excerpt's is cheap to make."""
        return self._masked((reference,), None, lambda: MaskedReference(reference, self.sample_rate))
