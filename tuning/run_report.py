"""``report.html``: one self-contained page per tuned track, beside its outputs. The summary (loudness, true
peak, LRA, DRL and NMR of the input, the output and the gain + limiter baseline, as metrics.json has them),
an A/B of the loudest passage with input and output loudness-matched that switches in place (one play
position), the residual raised to a stated level, the figures and the objective over the run.

Audio is embedded as 16-bit WAV data URIs (10 s of stereo 44.1 kHz: about 2.4 MB each), figures as PNG, so
the page can be mailed or archived alone; it needs no network and no server.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from tuning.clips import RESIDUAL_LUFS, listening_clips, matched_residual, wav_bytes
from tuning.figures import (
    compressor_curve_figure,
    gain_reduction_figure,
    objective_figure,
    png_bytes,
    spectrum_figure,
)
from tuning.gain_alone import SELECTED as GAIN_ALONE

REPORT_NAME = "report.html"

#: Rows of the summary table: (key in metrics.json's input/output/baseline, label).
MEASURES = (
    ("integrated_lufs", "loudness (LUFS)"),
    ("true_peak_dbtp", "true peak (dBTP)"),
    ("lra", "loudness range (LU)"),
    ("drl_db", "DRL (dB)"),
    ("nmr_db", "NMR (dB)"),
)

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 62rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; }
th, td { padding: 0.2rem 0.7rem; text-align: right; border-bottom: 1px solid #ddd; }
th:first-child, td:first-child { text-align: left; }
img { max-width: 100%; }
figure { margin: 1rem 0; }
figcaption, .note { color: #555; font-size: 0.9rem; }
#ab button { font-size: 1rem; padding: 0.4rem 1rem; margin-right: 0.4rem; }
#ab button.active { background: #1f7a4d; color: #fff; border-color: #1f7a4d; }
#ab input[type=range] { width: 60%; vertical-align: middle; }
"""

# One play position for A and B: switching moves the position to the other clip and keeps playing.
_SCRIPT = """
(function () {
  "use strict";
  const box = document.getElementById("ab");
  const players = { a: document.getElementById("clip-a"), b: document.getElementById("clip-b") };
  const play = document.getElementById("ab-play");
  const position = document.getElementById("ab-position");
  const time = document.getElementById("ab-time");
  let active = "a";
  function show() {
    for (const key of ["a", "b"]) {
      document.getElementById("ab-" + key).classList.toggle("active", key === active);
    }
    box.dataset.active = active;
    play.textContent = players[active].paused ? "Play" : "Pause";
    position.value = players[active].currentTime;
    time.textContent = players[active].currentTime.toFixed(1) + " s";
  }
  function choose(key) {
    if (key === active) return;
    const from = players[active], to = players[key];
    const playing = !from.paused;
    to.currentTime = from.currentTime;
    from.pause();
    active = key;
    if (playing) to.play().catch(show);
    show();
  }
  play.addEventListener("click", function () {
    const player = players[active];
    if (player.paused) player.play().catch(show); else player.pause();
  });
  for (const key of ["a", "b"]) {
    const player = players[key];
    document.getElementById("ab-" + key).addEventListener("click", function () { choose(key); });
    for (const name of ["play", "pause", "ended"]) player.addEventListener(name, show);
    player.addEventListener("timeupdate", function () { if (key === active) show(); });
    player.addEventListener("loadedmetadata", function () { position.max = player.duration; });
  }
  position.addEventListener("input", function () { players[active].currentTime = Number(position.value); });
  document.addEventListener("keydown", function (event) {
    if (event.key === "a" || event.key === "b") choose(event.key);
  });
  show();
  box.dataset.ready = "true";
})();
"""


def check_fresh_report(folder: str | Path) -> None:
    """Raise ValueError (before any work) when ``folder`` already holds a report.html."""
    path = Path(folder) / REPORT_NAME
    if path.exists():
        raise ValueError(f"refusing to overwrite {path}: choose a new output folder (hydra.run.dir)")


def _data_uri(mime: str, payload: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(payload).decode('ascii')}"


def _number(value) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "&ndash;"
    return f"{value:.2f}"


def _summary_table(metrics: Mapping) -> str:
    base = dict(metrics.get("baseline") or {})
    columns = [("input", metrics["input"]), ("output", metrics["output"])]
    if base:
        columns.append(("baseline", {**base, "integrated_lufs": base.get("lufs")}))
    head = "".join(f"<th>{name}</th>" for name, _ in columns)
    rows = []
    for key, label in MEASURES:
        cells = "".join(
            f'<td data-side="{name}" data-measure="{key}">{_number(column.get(key))}</td>' for name, column in columns
        )
        rows.append(f"<tr><td>{label}</td>{cells}</tr>")
    return f'<table id="summary"><tr><th></th>{head}</tr>{"".join(rows)}</table>'


def _settings_table(values: Mapping[str, float]) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{value:.4g}</td></tr>"
        if isinstance(value, float)
        else f"<tr><td>{html.escape(name)}</td><td>{html.escape(str(value))}</td></tr>"
        for name, value in values.items()
    )
    return f'<table id="settings"><tr><th>parameter</th><th>value</th></tr>{rows}</table>'


def _objective_label(output: Mapping) -> str:
    objective = output.get("objective_drl_db")
    if objective is not None and objective == output.get("nmr_db"):
        return "NMR"
    if objective is not None and objective == output.get("drl_db"):
        return "plain DRL"
    return "objective"


def _audio(element_id: str, payload: bytes, level: float | None, role: str, controls: bool) -> str:
    level_attr = "" if level is None else f' data-lufs="{level:.3f}"'
    return (
        f'<audio id="{element_id}" preload="auto"{" controls" if controls else ""} data-role="{role}"{level_attr} '
        f'src="{_data_uri("audio/wav", payload)}"></audio>'
    )


def _figure(figure, alt: str, caption: str) -> str:
    source = _data_uri("image/png", png_bytes(figure))
    return (
        f'<figure><img src="{source}" alt="{html.escape(alt)}"><figcaption>{html.escape(caption)}</figcaption></figure>'
    )


def render_report(
    name: str,
    track: torch.Tensor,
    output: torch.Tensor,
    sample_rate: int,
    metrics: Mapping,
    processor,
    history: Sequence[tuple[int, float | None]] = (),
    excerpt_s: float = 10.0,
    residual_lufs: float = RESIDUAL_LUFS,
    reading=None,
) -> str:
    """The page (HTML text) of one tuned track: ``track`` and ``output`` (C, T), its ``metrics`` (metrics.json's
    content), the tuned ``processor`` (one setting, at its final values) and the objective at each validation
    (``history``: (step, dB or None)); ``reading``: ``track``'s :func:`drl.read_levels`, when read already."""
    clips = listening_clips(track, output, sample_rate, excerpt_s, residual_lufs, reading)
    residual = matched_residual(track, output, dtype=torch.float32, gain=clips.match_gain)  # the spectrum: float32
    out, target = metrics["output"], metrics.get("target") or {}
    selected = metrics.get("selected")
    best_step = metrics.get("best_step") if isinstance(metrics.get("best_step"), int) else None
    facts = []
    if target:
        facts.append(
            f"target {target.get('lufs'):.1f} LUFS, true peak &le; {target.get('ceiling_dbtp'):.1f} dBTP; "
            f"on target: {'yes' if metrics.get('on_target') else 'no'}"
        )
    if selected:
        facts.append(f"selected: {html.escape(str(selected))} (best at step {metrics.get('best_step')})")

    excerpt = track[:, clips.part].detach()  # on the processor's device, in its dtype
    # a gain alone: no stage changes the gain over time, and the compressor is idle (ratio 1)
    stages_act = selected != GAIN_ALONE
    figures = [
        _figure(
            spectrum_figure(track, output, residual, sample_rate),
            "power spectra of input, output and residual",
            "Average power spectra of the whole track: input, output and the residual at its own level.",
        )
    ]
    if stages_act:
        figures.insert(
            0,
            _figure(
                gain_reduction_figure(processor, excerpt, sample_rate, clips.start_s),
                "gain reduction over time per stage",
                "Gain change per stage over the passage: the deepest reduction of every 5 ms.",
            ),
        )
    compressor = next((stage for _, stage in processor if hasattr(stage, "static_curve_db")), None)
    if compressor is not None and stages_act:
        figures.append(
            _figure(
                compressor_curve_figure(compressor),
                "compressor transfer curve",
                "The compressor's static curve with its threshold and knee (make-up included).",
            )
        )
    label = _objective_label(out)
    objective = (
        _figure(
            objective_figure(
                history, out.get("objective_drl_db"), metrics.get("baseline_objective_drl_db"), label, best_step
            ),
            "objective over the run",
            f"The {label} of each validation (whole track, solved onto the target) against the training step; "
            "the star is the result (at the step its settings come from; the final solve may lower the "
            "ceiling), the dashed line the gain + limiter baseline.",
        )
        if stages_act
        else "<p>No run: a gain alone met the target.</p>"
    )
    title = f"drl-tune: {html.escape(name)}"
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>{_STYLE}</style>
</head>
<body>
<h1>{title}</h1>
<p>{"; ".join(facts)}</p>
<h2>Summary</h2>
{_summary_table(metrics)}
<h2>Listen</h2>
<p class="note">A is the input, B the output, over {clips.passage}: both play
at {clips.matched_lufs:.1f} LUFS (BS.1770 integrated loudness of the passage; input
{clips.input_gain_db:+.2f} dB, output {clips.output_gain_db:+.2f} dB), so that the louder one does not win.
Switching keeps the play position (keys A and B switch too). 16-bit WAV at {sample_rate} Hz,
{clips.input.shape[0]} channel(s).</p>
<div id="ab">
{_audio("clip-a", wav_bytes(clips.input, sample_rate), clips.matched_lufs, "input", False)}
{_audio("clip-b", wav_bytes(clips.output, sample_rate), clips.matched_lufs, "output", False)}
<p><button id="ab-play" type="button">Play</button><button id="ab-a" type="button">A: input</button><button
id="ab-b" type="button">B: output</button>
<input id="ab-position" type="range" min="0" max="{clips.seconds:.3f}" step="0.01" value="0">
<span id="ab-time">0.0 s</span></p>
</div>
<h3>Residual</h3>
<p class="note">{html.escape(clips.describe("residual"))}</p>
{_audio("clip-residual", wav_bytes(clips.residual, sample_rate), clips.residual_lufs, "residual", True)}
<h2>Figures</h2>
{"".join(figures)}
<h2>Objective over the run</h2>
{objective}
<h2>Tuned settings</h2>
{_settings_table(processor.values())}
<script>{_SCRIPT}</script>
</body>
</html>
"""


def write_report(
    folder: str | Path,
    name: str,
    track: torch.Tensor,
    output: torch.Tensor,
    sample_rate: int,
    metrics: Mapping,
    processor,
    history: Sequence[tuple[int, float | None]] = (),
    excerpt_s: float = 10.0,
    residual_lufs: float = RESIDUAL_LUFS,
    reading=None,
) -> Path:
    """Write ``folder``/report.html (:func:`render_report`; never over an existing file); return its path."""
    path = Path(folder) / REPORT_NAME
    check_fresh_report(folder)
    page = render_report(
        name, track, output, sample_rate, metrics, processor, history, excerpt_s, residual_lufs, reading
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("x", encoding="utf-8") as handle:
        handle.write(page)
    return path
