"""Callbacks: the final solve at the end of training, each validation's objective for the run's report, and
TensorBoard media and figures.

``SolveTarget`` runs first at ``on_train_end`` (the logger is still open there, unlike at ``on_fit_end``), so
``MediaLogger`` can show the final, on-target render.
"""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata

from drl.checks import check_number
from tuning.clips import listening_clips, matched_residual, wav_bytes
from tuning.figures import compressor_curve_figure, gain_reduction_figure, spectrum_figure
from tuning.results import summary_table
from tuning.solve import TOL_LU


class SolveTarget(L.Callback):
    """Put the run exactly on target after the last step (see :meth:`tuning.module.TuningModule.finalize`)."""

    def __init__(self, tol_lu: float = TOL_LU) -> None:
        self.tol_lu = float(tol_lu)

    def on_train_end(self, trainer: L.Trainer, pl_module) -> None:
        pl_module.finalize(tol_lu=self.tol_lu)


class ObjectiveHistory(L.Callback):
    """Each validation's objective (dB) per setting, on its whole track at the target (None where the target
    could not be met), as ``records``: [{"step": int, "objective_db": [per setting]}]. Checkpoints carry it,
    so a resumed run keeps the validations from before the stop."""

    def __init__(self) -> None:
        self.records: list[dict] = []

    def on_validation_end(self, trainer: L.Trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        scores = [None if s is None else float(s) for s in pl_module.scores]
        self.records.append({"step": int(trainer.global_step), "objective_db": scores})

    def of(self, index: int) -> list[tuple[int, float | None]]:
        """(step, objective in dB or None) of setting ``index`` at every validation."""
        return [(r["step"], r["objective_db"][index]) for r in self.records]

    def state_dict(self) -> dict:
        return {"records": [dict(r) for r in self.records]}

    def load_state_dict(self, state_dict: dict) -> None:
        self.records = [dict(r) for r in state_dict.get("records", [])]


def _tensorboard(trainer: L.Trainer):
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger
    return None


def add_audio_clip(writer, tag: str, audio: torch.Tensor, sample_rate: int, step: int, description: str) -> None:
    """``audio`` (C, T) in [-1, 1] as a TensorBoard audio summary with all its channels (24-bit WAV) and
    ``description`` shown beside it. (``SummaryWriter.add_audio`` writes one channel only.)"""
    value = Summary.Audio(
        sample_rate=float(sample_rate),
        num_channels=audio.shape[0],
        length_frames=audio.shape[-1],
        encoded_audio_string=wav_bytes(audio, sample_rate, "PCM_24"),
        content_type="audio/wav",
    )
    metadata = SummaryMetadata(display_name=tag, summary_description=description)
    summary = Summary(value=[Summary.Value(tag=tag, audio=value, metadata=metadata)])
    writer._get_file_writer().add_summary(summary, step)


class MediaLogger(L.Callback):
    """At the end of training, in TensorBoard: stereo clips of the loudest ``excerpt_s`` at the track's rate,
    the input and the output loudness-matched and the residual raised to ``residual_lufs``
    (:func:`tuning.clips.listening_clips`; each clip's description states its level); the gain reduction over
    that passage per stage, the compressor's transfer curve, the residual's spectrum against the signal's
    (whole track) and the summary table; per setting (tags under its name) when a run tunes several. Rank
    zero only."""

    def __init__(self, excerpt_s: float = 10.0, residual_lufs: float = -23.0) -> None:
        self.excerpt_s = check_number("callbacks.media.excerpt_s", excerpt_s, 0.4, unit="s")
        self.residual_lufs = check_number("callbacks.media.residual_lufs", residual_lufs, -70.0, 0.0, unit="LUFS")

    @rank_zero_only
    def on_train_end(self, trainer: L.Trainer, pl_module) -> None:
        logger = _tensorboard(trainer)
        if logger is None or not getattr(pl_module, "finals", None):
            return
        several = len(pl_module.finals) > 1
        for index, final, metrics in zip(pl_module.final_indices, pl_module.finals, pl_module.final_metrics):
            item = pl_module.items[index]
            # the solver holds the setting's final values once the module is finalized
            self.log_setting(
                logger.experiment,
                trainer.global_step,
                f"{item.name}/" if several else "",
                item.track,
                final,
                metrics,
                pl_module.solvers[index],
                pl_module.sample_rate,
            )
        logger.experiment.flush()

    def log_setting(self, writer, step: int, prefix: str, track, final, metrics, processor, rate: int) -> None:
        """Audio, figures and the summary of one tuned setting, its tags under ``prefix``."""
        output = final.output
        clips = listening_clips(track, output, rate, self.excerpt_s, self.residual_lufs)
        for tag in ("input", "output", "residual"):
            add_audio_clip(writer, f"{prefix}audio/{tag}", getattr(clips, tag), rate, step, clips.describe(tag))

        part = clips.part
        residual = matched_residual(track, output, dtype=torch.float32, gain=clips.match_gain)
        figures = {
            "figures/gain_reduction": gain_reduction_figure(processor, track[:, part], rate, clips.start_s),
            "figures/residual_spectrum": spectrum_figure(track, output, residual, rate),
        }
        compressor = next((stage for _, stage in processor if hasattr(stage, "static_curve_db")), None)
        if compressor is not None:
            figures["figures/compressor_curve"] = compressor_curve_figure(compressor)
        for tag, figure in figures.items():
            writer.add_figure(f"{prefix}{tag}", figure, step)
        writer.add_text(f"{prefix}summary", "```\n" + summary_table(metrics, final.values) + "\n```", step)
