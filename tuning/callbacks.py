"""Callbacks: the final solve at the end of training, and TensorBoard media and figures.

``SolveTarget`` runs first at ``on_train_end`` (the logger is still open there, unlike at ``on_fit_end``), so
``MediaLogger`` can show the final, on-target render.
"""

from __future__ import annotations

import lightning as L
import matplotlib
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the non-interactive backend)

import drl  # noqa: E402
from drl.checks import check_number  # noqa: E402
from tuning.results import summary_table  # noqa: E402
from tuning.solve import TOL_LU  # noqa: E402


class SolveTarget(L.Callback):
    """Put the run exactly on target after the last step (see :meth:`tuning.module.TuningModule.finalize`)."""

    def __init__(self, tol_lu: float = TOL_LU) -> None:
        self.tol_lu = float(tol_lu)

    def on_train_end(self, trainer: L.Trainer, pl_module) -> None:
        pl_module.finalize(tol_lu=self.tol_lu)


def _tensorboard(trainer: L.Trainer):
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger
    return None


def loudest_excerpt(audio: torch.Tensor, sample_rate: int, seconds: float) -> slice:
    """The ``seconds``-long window of ``audio`` (C, T) with the most energy, on a 0.5 s grid."""
    length = min(audio.shape[-1], int(seconds * sample_rate))
    hop = max(1, sample_rate // 2)
    energy = audio.double().square().sum(dim=0)
    cumulative = torch.cat([energy.new_zeros(1), energy.cumsum(0)])
    starts = torch.arange(0, audio.shape[-1] - length + 1, hop, device=audio.device)
    window = cumulative[starts + length] - cumulative[starts]
    start = int(starts[int(window.argmax())])
    return slice(start, start + length)


def stage_gain_reductions(processor, audio: torch.Tensor) -> dict[str, torch.Tensor]:
    """Gain reduction in dB (channel-max) over time of every stage that has one, fed its own input."""
    out = {}
    signal = audio
    with torch.no_grad():
        for name, stage in processor:
            if hasattr(stage, "gain_reduction_db"):
                out[name] = stage.gain_reduction_db(signal).amax(dim=0)
            signal = stage(signal)
    return out


def spectrum_db(audio: torch.Tensor, n_fft: int = 4096) -> torch.Tensor:
    """Average power spectrum in dB of (C, T) audio (Hann-windowed frames, channels summed)."""
    window = torch.hann_window(n_fft, dtype=audio.dtype, device=audio.device)
    frames = torch.stft(audio, n_fft, hop_length=n_fft // 2, window=window, return_complex=True)
    power = frames.abs().square().mean(dim=-1).sum(dim=0)
    return 10 * torch.log10(power.clamp_min(1e-20))


class MediaLogger(L.Callback):
    """At the end of training, in TensorBoard: input/output/residual audio and the gain reduction over time
    of each stage (the loudest ``excerpt_s``), the compressor's transfer curve, the residual's spectrum
    against the signal's (whole track) and the summary table; per setting (tags under its name) when a run
    tunes several. Rank zero only."""

    def __init__(self, excerpt_s: float = 10.0) -> None:
        self.excerpt_s = check_number("callbacks.media.excerpt_s", excerpt_s, 0.0, unit="s", low_open=True)

    @rank_zero_only
    def on_train_end(self, trainer: L.Trainer, pl_module) -> None:
        logger = _tensorboard(trainer)
        if logger is None or not getattr(pl_module, "finals", None):
            return
        several = len(pl_module.finals) > 1
        for index, final, metrics in zip(pl_module.final_indices, pl_module.finals, pl_module.final_metrics):
            item = pl_module.items[index]
            # the solver holds the setting's final values once the module is finalized
            self._log_setting(
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

    def _log_setting(self, writer, step: int, prefix: str, track, final, metrics, processor, rate: int) -> None:
        """Audio, figures and the summary of one tuned setting, its tags under ``prefix``."""
        output = final.output
        _, residual = drl.level_match(track, output)
        part = loudest_excerpt(track, rate, self.excerpt_s)
        for tag, audio in (("input", track), ("output", output), ("residual", residual)):
            mono = audio[:, part].mean(dim=0, keepdim=True).float().cpu()
            writer.add_audio(f"{prefix}audio/{tag}", mono.clamp(-1, 1), step, sample_rate=rate)

        figures = {
            "figures/gain_reduction": self._gain_reduction_figure(processor, track[:, part], rate, part.start / rate),
            "figures/residual_spectrum": self._spectrum_figure(track, output, residual, rate),
        }
        compressor = next((stage for _, stage in processor if hasattr(stage, "static_curve_db")), None)
        if compressor is not None:
            figures["figures/compressor_curve"] = self._curve_figure(compressor)
        for tag, figure in figures.items():
            writer.add_figure(f"{prefix}{tag}", figure, step)
            plt.close(figure)
        writer.add_text(f"{prefix}summary", "```\n" + summary_table(metrics, final.values) + "\n```", step)

    @staticmethod
    def _gain_reduction_figure(processor, track: torch.Tensor, rate: int, offset_s: float = 0.0):
        """Gain change per stage over (an excerpt of) the track starting at ``offset_s`` seconds."""
        figure, axis = plt.subplots(figsize=(8, 3))
        reductions = stage_gain_reductions(processor, track)
        hop = max(1, rate // 200)  # plot at 200 points per second
        for name, curve in reductions.items():
            values = curve[::hop].float().cpu()
            axis.plot(offset_s + torch.arange(values.numel()) * hop / rate, -values, label=name, linewidth=0.8)
        axis.set_xlabel("time (s)")
        axis.set_ylabel("gain change (dB)")
        if reductions:
            axis.legend(loc="lower right")
        axis.grid(alpha=0.3)
        figure.tight_layout()
        return figure

    @staticmethod
    def _spectrum_figure(track, output, residual, rate: int):
        figure, axis = plt.subplots(figsize=(8, 3))
        for label, audio in (("input", track), ("output", output), ("residual", residual)):
            power = spectrum_db(audio.float()).cpu()
            freq = torch.linspace(0, rate / 2, power.numel())
            axis.semilogx(freq[1:], power[1:], label=label, linewidth=0.8)
        axis.set_xlim(20, rate / 2)
        axis.set_xlabel("frequency (Hz)")
        axis.set_ylabel("power (dB)")
        axis.legend(loc="lower left")
        axis.grid(alpha=0.3, which="both")
        figure.tight_layout()
        return figure

    @staticmethod
    def _curve_figure(compressor):
        figure, axis = plt.subplots(figsize=(4, 4))
        level = torch.linspace(-60.0, 6.0, 265, dtype=torch.float64)
        with torch.no_grad():
            curve = compressor.static_curve_db(level).cpu()
        axis.plot(level, curve, label="tuned")
        axis.plot(level, level, "--", color="grey", linewidth=0.8, label="1:1")
        axis.set_xlabel("input level (dB)")
        axis.set_ylabel("output level (dB)")
        axis.legend()
        axis.grid(alpha=0.3)
        figure.tight_layout()
        return figure
