"""From a processor config to a processor: stages in order, settings derived from the track, frozen parameters.

A stage value ``"auto"`` is filled in from the track's level statistics (:func:`level_statistics`) before the
stage is built, so the run never starts where a processor does nothing (a compressor threshold above every
peak gets no gradient):

- ``gain_db``: the gain that would bring the input's integrated loudness to the target (then solved exactly);
- ``threshold_db``: the 90th percentile of the 50 ms RMS levels of the gained input (the compressor acts on
  the loudest tenth of the track);
- ``release_ms`` / ``lookahead_ms`` / ``slow_release_ms`` of a limiter: the winning settings of the gain +
  limiter baseline (a slow release of None: the winner has a single release, and so has the limiter).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch

import drl
from processors import Chain, Gain
from tuning.last_answer import LastAnswer
from tuning.objective import Target
from tuning.solve import solve_target

AUTO = "auto"
#: Parameters whose "auto" value may be derived as None (or not at all): the stage they belong to is then off.
OPTIONAL_STAGES = ("slow_release_ms",)


@dataclass(frozen=True)
class LevelStatistics:
    """Level statistics of a (C, T) track: integrated loudness (LUFS), sample peak (dBFS), RMS percentiles."""

    lufs: float
    peak_dbfs: float
    rms_p50_dbfs: float
    rms_p90_dbfs: float
    rms_p99_dbfs: float


def level_statistics(audio: torch.Tensor, sample_rate: int, window_ms: float = 50.0) -> LevelStatistics:
    """Measure ``audio`` (C, T): RMS over ``window_ms`` windows (channels averaged), gated at -70 dBFS. A job
    asks this of one track several times (its settings checked, then its starts): the last answer is kept."""
    return _last_statistics(
        (audio,), (sample_rate, window_ms), lambda: _level_statistics(audio, sample_rate, window_ms)
    )


_last_statistics: LastAnswer[LevelStatistics] = LastAnswer()


def _level_statistics(audio: torch.Tensor, sample_rate: int, window_ms: float) -> LevelStatistics:
    lufs = float(drl.integrated_loudness(audio, sample_rate))
    peak = float(20 * torch.log10(audio.abs().amax().clamp_min(1e-12)))
    window = max(1, int(window_ms * 1e-3 * sample_rate))
    usable = audio.shape[-1] // window * window
    if usable == 0:
        power = audio.double().square().mean()[None]
    else:
        squares = audio[:, :usable].to(torch.float64, copy=True).square_()  # one float64 copy, squared in place
        power = squares.reshape(audio.shape[0], -1, window).mean(dim=(0, 2))
    level = 10 * torch.log10(power.clamp_min(1e-20))
    level = level[level > -70.0]
    if level.numel() == 0:
        raise ValueError("the track is silent: no 50 ms window is above -70 dBFS")
    q = torch.quantile(level, torch.tensor([0.5, 0.9, 0.99], dtype=level.dtype, device=level.device))
    return LevelStatistics(lufs, peak, float(q[0]), float(q[1]), float(q[2]))


class ProcessorSpec:
    """A processor config: ``stages`` (name -> partial of a ``processors`` class, in order), ``frozen``
    dotted parameter names, the ``level_param`` solved for loudness and the limiter's ``ceiling_param``.
    ``idle`` holds the values that make the stages other than gain + limiter transparent (compressor ratio 1,
    saturator mix 0): with them the processor is the gain + limiter baseline, a candidate the run keeps if
    training finds nothing better. ``starts`` lists other starting points (dotted values over the stages'
    own), each scored on the whole track before training (:func:`choose_start`): the objective is not convex in
    the timing parameters, and gradient descent only finds the minimum nearest to where it starts.

    ``build(track_audio, sample_rate, target, suggestions)`` returns the :class:`processors.Chain`.
    """

    def __init__(
        self,
        stages: Mapping[str, Callable],
        frozen: Sequence[str] = (),
        level_param: str = "gain.gain_db",
        ceiling_param: str | None = None,
        name: str = "custom",
        idle: Mapping[str, float] | None = None,
        starts: Sequence[Mapping[str, float]] = (),
    ) -> None:
        if not stages:
            raise ValueError("processor.stages is empty: name at least one stage")
        for key, stage in stages.items():
            if not callable(stage):
                raise ValueError(f"processor.stages.{key} must build a processor (a _target_ with _partial_)")
        self.stages = dict(stages)
        self.frozen = list(frozen or [])
        self.level_param = level_param
        self.ceiling_param = ceiling_param
        self.name = name
        self.idle = {str(k): float(v) for k, v in dict(idle or {}).items()}
        self.starts = [{str(k): float(v) for k, v in dict(start).items()} for start in starts or ()]
        named = [name for start in self.starts for name in start]
        for dotted in [*self.frozen, level_param, *([ceiling_param] if ceiling_param else []), *self.idle, *named]:
            stage, _, param = str(dotted).partition(".")
            if stage not in self.stages or not param:
                raise ValueError(f"processor parameter {dotted!r} names no stage (stages: {', '.join(self.stages)})")

    def auto_names(self) -> dict[str, list[str]]:
        """Stage name -> the parameter names set to "auto"."""
        out = {}
        for key, stage in self.stages.items():
            keywords = stage.keywords if isinstance(stage, functools.partial) else {}
            out[key] = [k for k, v in keywords.items() if v == AUTO]
        return out

    def build(self, sample_rate: int, suggestions: Mapping[str, float], *, defaults: bool = False) -> Chain:
        """Build every stage at ``sample_rate``, filling "auto" values from ``suggestions`` (keyed
        ``"<stage>.<param>"`` or ``"<param>"``), then freeze the frozen parameters. With ``defaults``, an
        "auto" value without a suggestion takes the parameter's default (to check a config early)."""
        built = []
        for key, stage in self.stages.items():
            fills = {}
            for param in self.auto_names()[key]:
                name = next((n for n in (f"{key}.{param}", param) if n in suggestions), None)
                value = suggestions[name] if name is not None else None
                if name is None and defaults:
                    specs = {spec.name: spec for spec in getattr(stage.func, "specs", ())}
                    value = specs[param].default if param in specs else None
                elif value is None and param in OPTIONAL_STAGES:
                    fills[param] = None  # nothing derived, or derived as off: the stage is off
                    continue
                if value is None:
                    raise ValueError(
                        f"processor.stages.{key}.{param} is 'auto' but no value can be derived for it; give a number"
                    )
                fills[param] = float(value)
            built.append((key, stage(sample_rate=sample_rate, **fills)))
        chain = Chain(dict(built))
        for dotted in self.frozen:
            stage, _, param = dotted.partition(".")
            chain[stage].freeze(param)
        return chain


def suggest_settings(
    audio: torch.Tensor, sample_rate: int, target: Target, baseline: Mapping[str, float] | None = None
) -> dict[str, float]:
    """Starting values derived from the track (see the module docstring); ``baseline`` adds the winning
    limiter settings of the gain + limiter baseline."""
    stats = level_statistics(audio, sample_rate)
    gain_db = target.lufs - stats.lufs
    out = {
        "gain_db": Gain.spec_of("gain_db").clamp(gain_db),
        "threshold_db": min(max(stats.rms_p90_dbfs + gain_db, -60.0), 0.0),
    }
    for key in ("release_ms", "lookahead_ms"):
        if baseline and key in baseline:
            out[f"limiter.{key}"] = float(baseline[key])
    if baseline:  # a baseline without a slow stage (or from a grid without one) gives a single release
        slow = baseline.get("slow_release_ms")
        out["limiter.slow_release_ms"] = None if slow is None else float(slow)
    if not all(v is None or math.isfinite(v) for v in out.values()):
        raise ValueError(f"cannot derive starting settings from the track: {out}")
    return out


def choose_start(
    spec: ProcessorSpec,
    audio: torch.Tensor,
    sample_rate: int,
    target: Target,
    suggestions: Mapping[str, float],
    score: Callable[[torch.Tensor, torch.Tensor], float],
    tol_lu: float,
) -> tuple[Chain, list[dict]]:
    """The processor to start training from, on the loudness target: built from ``suggestions`` and, for each
    of ``spec.starts``, with those values over it; each solved onto ``target`` on ``audio`` (C, T: the track
    or the excerpt candidates are compared on) and scored by ``score(audio, output)`` (the objective in dB,
    e.g. :meth:`tuning.objective.Objective.score`), the best kept. Returns it with every
    candidate's values and score (``starts`` in metrics.json; None for a start that cannot reach the target).
    Raises ValueError when none can."""
    best, best_score, scored, failure = None, None, [], None
    for overrides in [{}, *spec.starts]:
        processor = spec.build(sample_rate, suggestions).to(audio.device)
        if overrides:
            processor.set_values(**overrides)
        try:
            with torch.no_grad():
                solution = solve_target(processor, audio, sample_rate, target, spec.level_param, None, tol_lu=tol_lu)
        except ValueError as error:  # this start cannot reach the target; another one may
            failure = error
            scored.append({"values": dict(overrides), "objective_drl_db": None})
            continue
        value = float(score(audio, solution.output))
        scored.append({"values": dict(overrides), "objective_drl_db": value})
        if best is None or value < best_score:
            best, best_score = processor, value
    if best is None:
        raise failure
    return best, scored
