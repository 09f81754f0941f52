"""The figures of a tuned setting (matplotlib, Agg, no pyplot state): gain reduction over time per stage, the
compressor's transfer curve, the residual's spectrum against the signal's, the objective over the run."""

from __future__ import annotations

import io
from collections.abc import Sequence

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

#: Gain reduction is drawn as its maximum over bins of this many seconds (a limiter's dips last about a ms).
GAIN_REDUCTION_BIN_S = 0.005


def _figure(width: float, height: float) -> tuple[Figure, object]:
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot()


def png_bytes(figure: Figure, dpi: int = 100) -> bytes:
    """``figure`` as PNG."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


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


def binned_max(curve: torch.Tensor, bin_samples: int) -> torch.Tensor:
    """The maximum of ``curve`` (T,) over consecutive bins of ``bin_samples`` (the last bin may be shorter):
    ``(ceil(T / bin_samples),)``. A dip narrower than a bin is kept at its full depth."""
    if bin_samples < 1:
        raise ValueError(f"bin_samples must be >= 1, got {bin_samples}")
    bins = -(-curve.shape[-1] // bin_samples)
    padded = torch.nn.functional.pad(curve, (0, bins * bin_samples - curve.shape[-1]), value=-torch.inf)
    return padded.view(bins, bin_samples).amax(dim=-1)


def gain_reduction_figure(processor, audio: torch.Tensor, sample_rate: int, offset_s: float = 0.0) -> Figure:
    """Gain change (dB, <= 0) per stage over ``audio`` (C, T), an excerpt starting ``offset_s`` seconds into the
    track: the deepest reduction of every :data:`GAIN_REDUCTION_BIN_S` bin, drawn at the bin's start."""
    figure, axis = _figure(8, 3)
    reductions = stage_gain_reductions(processor, audio)
    hop = max(1, round(GAIN_REDUCTION_BIN_S * sample_rate))
    for name, curve in reductions.items():
        deepest = binned_max(curve.double().cpu(), hop)
        times = offset_s + torch.arange(deepest.numel(), dtype=torch.float64) * hop / sample_rate
        axis.plot(times, -deepest, label=name, linewidth=0.8, drawstyle="steps-post")
    axis.set_xlabel("time (s)")
    axis.set_ylabel("gain change (dB)")
    axis.set_title(f"deepest reduction of every {1000 * hop / sample_rate:.3g} ms", fontsize="small")
    if reductions:
        axis.legend(loc="lower right")
    axis.grid(alpha=0.3)
    return figure


#: Most frames an average spectrum takes: beyond this the hop grows (a long track's average needs no more).
SPECTRUM_FRAMES = 1024


def spectrum_db(audio: torch.Tensor, n_fft: int = 4096) -> torch.Tensor:
    """Average power spectrum in dB of (C, T) audio (Hann-windowed frames, half overlapping, or at most
    :data:`SPECTRUM_FRAMES` frames spread evenly over a long track; channels summed)."""
    window = torch.hann_window(n_fft, dtype=audio.dtype, device=audio.device)
    hop = max(n_fft // 2, audio.shape[-1] // SPECTRUM_FRAMES)
    frames = torch.stft(audio, n_fft, hop_length=hop, window=window, return_complex=True)
    power = frames.abs().square().mean(dim=-1).sum(dim=0)
    return 10 * torch.log10(power.clamp_min(1e-20))


def spectrum_figure(track: torch.Tensor, output: torch.Tensor, residual: torch.Tensor, sample_rate: int) -> Figure:
    """Average power spectra (dB) of the input, the output and the residual, (C, T) each."""
    figure, axis = _figure(8, 3)
    for label, audio in (("input", track), ("output", output), ("residual", residual)):
        power = spectrum_db(audio.detach().float().cpu())
        freq = torch.linspace(0, sample_rate / 2, power.numel())
        axis.semilogx(freq[1:], power[1:], label=label, linewidth=0.8)
    axis.set_xlim(20, sample_rate / 2)
    axis.set_xlabel("frequency (Hz)")
    axis.set_ylabel("power (dB)")
    axis.legend(loc="lower left")
    axis.grid(alpha=0.3, which="both")
    return figure


def compressor_curve_figure(compressor) -> Figure:
    """The compressor's static curve (output against input level, dB, make-up included) with its threshold
    (a vertical line) and its knee (the shaded span of ``knee_db`` centred on the threshold)."""
    figure, axis = _figure(4.5, 4.5)
    level = torch.linspace(-60.0, 6.0, 265, dtype=torch.float64)
    with torch.no_grad():
        curve = compressor.static_curve_db(level).cpu()
    values = compressor.values()
    threshold, knee, ratio = float(values["threshold_db"]), float(values["knee_db"]), float(values["ratio"])
    axis.plot(level, curve, label=f"tuned, ratio {ratio:.2g}:1")
    axis.plot(level, level, "--", color="grey", linewidth=0.8, label="1:1")
    axis.axvline(threshold, color="C3", linewidth=1.0, label=f"threshold {threshold:.1f} dB")
    if knee > 0:
        axis.axvspan(threshold - knee / 2, threshold + knee / 2, color="C3", alpha=0.12, label=f"knee {knee:.1f} dB")
    axis.set_xlabel("input level (dB)")
    axis.set_ylabel("output level (dB)")
    axis.legend(loc="upper left", fontsize="small")
    axis.grid(alpha=0.3)
    return figure


def objective_figure(
    history: Sequence[tuple[int, float | None]],
    final_db: float | None = None,
    baseline_db: float | None = None,
    label: str = "objective",
    final_step: int | None = None,
) -> Figure:
    """The objective (dB) of each validation, on the whole track at the target, against the training step;
    the final result (at ``final_step``, the step its settings come from; else the last validation's) and the
    gain + limiter baseline as references."""
    figure, axis = _figure(8, 3)
    points = [(step, value) for step, value in history if value is not None]
    if points:
        axis.plot(*zip(*points), marker="o", linewidth=1.0, label="validation (whole track, on target)")
    if final_db is not None:
        step = final_step if final_step is not None else max((s for s, _ in history), default=0)
        axis.plot([step], [final_db], marker="*", markersize=12, linestyle="none", color="C2", label="result")
    if baseline_db is not None:
        axis.axhline(baseline_db, color="grey", linestyle="--", linewidth=1.0, label="gain + limiter baseline")
    if not points:
        axis.text(0.5, 0.5, "no validation ran", transform=axis.transAxes, ha="center", va="center")
    axis.set_xlabel("training step")
    axis.set_ylabel(f"{label} (dB, lower = cleaner)")
    if axis.get_legend_handles_labels()[0]:
        axis.legend(loc="best", fontsize="small")
    axis.grid(alpha=0.3)
    return figure
