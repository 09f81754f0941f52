"""The LightningModule: B settings of one processor tuned side by side, each on crops of its own track.

One module serves every mode: one track (B = 1), an album (B = 1, crops drawn from every file's segment of
the joined album), and many tracks tuned per track (B files, parameters of shape (B,)). Every step draws K
crops per setting and processes all K x B crops in one call (the parameters tiled over the crops); every
decision (the projection onto the target, the best candidate, the final solve) is taken per setting on its
whole track, through a one-setting copy of the processor (its ``solver``) whose solved gain and ceiling are
written back into the batch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger

from processors import Chain
from tuning.audio import draw_crop_starts, step_generator, take_crops
from tuning.excerpt import Excerpt, whole_track
from tuning.objective import Objective
from tuning.population import Population, exploit
from tuning.progress import SILENT
from tuning.results import run_metrics, track_metrics
from tuning.solve import PEAK_MARGIN_DB, TOL_LU, Solution, ceiling_gain_step, solve_target


def physical_params(processor: Chain) -> dict[str, torch.Tensor]:
    """Dotted name -> differentiable physical value (on the parameters' device) of every parameter."""
    return {spec.name: processor.param(spec.name) for spec in processor.specs}


def batch_values(chains: Sequence[torch.nn.Module]) -> dict[str, list[float]]:
    """The settings of B one-setting chains as {dotted name: [B values]}."""
    per_item = [chain.values() for chain in chains]
    return {name: [values[name] for values in per_item] for name in per_item[0]}


def item_values(values: Mapping[str, float | list[float]], index: int) -> dict[str, float]:
    """Item ``index`` of batched settings {name: [B values]} (unbatched values are every item's)."""
    return {name: float(value[index] if isinstance(value, list) else value) for name, value in values.items()}


#: Candidates of a population solved to the end besides candidate 0: the best by their validations.
FINALISTS = 2

#: How much lower (dB) than a chain's own ceiling round would put it the final solve may keep a limiter ceiling
#: it started from (the baseline winner's): within this, no second solve to raise it.
CEILING_SLACK_DB = 0.001

#: Final metrics shown in TensorBoard's HPARAMS tab, as ``hp/<name>`` (means over the settings).
HP_METRICS = ("drl_db", "nmr_db", "baseline_drl_db", "lufs", "true_peak_dbtp")


@dataclass
class Item:
    """What one setting is tuned on: its ``track`` (C, T), where crops may start in it (``segments``:
    (offset, length) in samples), its ``objective``, its gain + limiter ``baseline``, the input's measures
    (None: measured at the end) and the ``excerpt`` its candidates are compared on (default: the whole track;
    :mod:`tuning.excerpt`)."""

    name: str
    track: torch.Tensor
    objective: Objective
    segments: list[tuple[int, int]] | None = None
    baseline: dict = field(default_factory=dict)
    input_metrics: dict | None = None
    excerpt: Excerpt | None = None

    def __post_init__(self) -> None:
        self.segments = [(int(o), int(n)) for o, n in (self.segments or [(0, self.track.shape[-1])])]
        if self.excerpt is None:
            self.excerpt = whole_track(self.track, self.objective.target)


@dataclass
class Best:
    """The best candidate of one setting so far: its objective on target (dB), its processor state (the
    solver's state dict), the step and how it was found ("start", "idle" or "tuned")."""

    objective_db: float | None = None
    state: dict | None = None
    step: int | None = None
    label: str = "start"

    def offer(self, objective_db: float, solver: torch.nn.Module, step: int, label: str) -> None:
        if self.objective_db is None or objective_db < self.objective_db:
            self.objective_db, self.step, self.label = float(objective_db), int(step), label
            self.state = {k: v.detach().clone() for k, v in solver.state_dict().items()}


class TuningModule(L.LightningModule):
    """Tunes ``processor`` so that each of its B settings brings its :class:`Item` to that item's target with
    the least distortion (the measure its objective's loss weights).

    ``processor`` holds the B settings (parameters of shape (B,); unbatched when there is one item, which is
    then its own solver); ``solvers`` are B one-setting processors of the same layout, used for whole-track
    solves. ``optimizer`` builds the optimiser from the parameter list (a partial, e.g. ``torch.optim.Adam``).
    ``level_param``/``ceiling_param`` are the dotted names the solves adjust (see
    :func:`tuning.solve.solve_target`); ``tol_lu`` is the loudness tolerance of every projection (candidates
    are compared at the same loudness: near transparency DRL moves by hundredths of a dB per 0.001 LU).
    ``idle_values`` make the extra stages transparent (the processor is then the gain + limiter baseline);
    ``config`` is a flat dict of plain values shown as hparams. The loss is the sum of the items' objectives:
    a setting reaches only its own term and Adam scales every element on its own, so the settings are
    optimised as in separate jobs.

    With a ``population`` the items are candidates for one track (:mod:`tuning.population`): after every
    ``population.every`` validations the worst are replaced by perturbed copies of the best, and only the best
    candidate seen is finalized. ``idle_items`` are the items whose idle settings are scored (default: all).
    ``start_scores``: each item's starting settings' objective on target, when the caller measured it already
    (default: rendered and measured when training starts).
    """

    def __init__(
        self,
        processor: torch.nn.Module,
        items: Sequence[Item],
        sample_rate: int,
        optimizer: Callable,
        crop_samples: int,
        level_param: str,
        ceiling_param: str | None = None,
        *,
        solvers: Sequence[torch.nn.Module] | None = None,
        config: Mapping | None = None,
        idle_values: Mapping[str, float] | None = None,
        tol_lu: float = TOL_LU,
        crops_per_batch: int = 4,
        seed: int = 0,
        population: Population | None = None,
        idle_items: Sequence[int] | None = None,
        start_scores: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        # logged by on_fit_start together with the final metrics' names (the HPARAMS tab)
        self.save_hyperparameters(
            ignore=["processor", "items", "optimizer", "solvers", "population", "idle_items", "start_scores"],
            logger=False,
        )
        self.processor = processor
        self.items = list(items)
        if not self.items:
            raise ValueError("nothing to tune: no track")
        batch = processor.batch_size()
        if solvers is None:
            if batch is not None or len(self.items) != 1:
                raise ValueError("a batched processor needs one solver per item")
            solvers = [processor]
        elif len(solvers) != len(self.items) or (batch is not None and batch != len(self.items)):
            raise ValueError(
                f"{len(self.items)} items need as many solvers and settings, got {len(solvers)} "
                f"solvers and a batch of {batch}"
            )
        self.solvers = list(solvers)  # a plain list: not part of the state dict (their values are the batch's)
        self.optimizer_factory = optimizer
        self.sample_rate = int(sample_rate)
        self.crop_samples = int(crop_samples)
        self.level_param, self.ceiling_param = level_param, ceiling_param
        self.idle_values = dict(idle_values or {})
        self.tol_lu = float(tol_lu)
        self.crops_per_batch, self.seed = int(crops_per_batch), int(seed)
        self.population = population
        self.idle_items = list(range(len(self.items)) if idle_items is None else idle_items)
        self.start_scores = list(start_scores) if start_scores is not None else None
        if self.start_scores is not None and len(self.start_scores) != len(self.items):
            raise ValueError(f"{len(self.items)} items need as many start scores, got {len(self.start_scores)}")
        self.best = [Best() for _ in self.items]
        self.slope_hints: list[float | None] = [None] * len(self.items)
        self.scores: list[float | None] = [None] * len(self.items)  # of the last validation, on target
        self.resumed = False
        self.progress = SILENT  # a job sets its own: one line per validation and for the final solve
        self.finals: list[Solution] | None = None
        self.final_metrics: list[dict] | None = None
        self.final_indices: list[int] = []  # the items that were finalized, in the order of ``finals``
        self.finalize_s = 0.0

    @property
    def batched(self) -> bool:
        return self.solvers[0] is not self.processor

    def configure_optimizers(self):
        params = [p for p in self.processor.parameters() if p.requires_grad]
        if not params:
            raise ValueError("every processor parameter is frozen: nothing to tune")
        return self.optimizer_factory(params)

    def on_fit_start(self) -> None:
        moved = {}  # items may share one track (a population): move each tensor once
        for item in self.items:
            item.track = moved.setdefault(id(item.track), item.track.float().to(self.device))
            excerpt = item.excerpt
            audio = item.track if excerpt.whole else excerpt.audio.float().to(self.device)
            item.excerpt = replace(excerpt, audio=moved.setdefault(id(excerpt.audio), audio))
        self.solvers = [s.to(self.device) for s in self.solvers]

    # --- training ---------------------------------------------------------------------------------------------
    def crops(self) -> torch.Tensor:
        """This step's crops, (K, B, C, L): K random crops of every item's track, drawn from a generator seeded
        by (seed, DDP rank, global step) only, so a resumed run draws the crops of the uninterrupted one and
        each rank draws its own."""
        generator = step_generator(self.seed, int(self.global_step), int(self.global_rank))
        return torch.stack(
            [
                take_crops(
                    item.track,
                    draw_crop_starts(item.segments, self.crop_samples, self.crops_per_batch, generator),
                    self.crop_samples,
                )
                for item in self.items
            ],
            dim=1,
        )

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x = self.crops()
        y = self.processor(x.flatten(0, 1)).view_as(x)  # all K x B crops in one call
        terms = [item.objective(x[:, b], y[:, b]) for b, item in enumerate(self.items)]
        loss = torch.stack([t["loss"] for t in terms]).sum()
        count = x.shape[0] * x.shape[1]
        self.log("train/loss", loss, prog_bar=True, batch_size=count)
        self.log_dict(
            {f"train/{k}": torch.stack([t[k].detach() for t in terms]).mean() for k in terms[0] if k != "loss"},
            batch_size=count,
        )
        self.log_dict(self._params_to_log(), batch_size=count)
        return loss

    def _params_to_log(self) -> dict[str, torch.Tensor]:
        """``params/<name>`` in physical units; ``params/<name>/<item>`` for each of B > 1 settings."""
        out = {}
        for name, value in physical_params(self.processor).items():
            value = value.detach()
            if value.ndim == 0:
                out[f"params/{name}"] = value
            else:
                out.update({f"params/{name}/{item.name}": v for item, v in zip(self.items, value)})
        return out

    # --- one setting at a time --------------------------------------------------------------------------------
    def load_item(self, index: int, state: Mapping | None = None) -> torch.nn.Module:
        """The solver of item ``index`` at the batch's current setting (or at a saved ``state``)."""
        solver = self.solvers[index]
        if state is not None:
            solver.load_state_dict(state)
        elif self.batched:
            solver.set_values(**item_values(self.processor.values(), index))
        return solver

    def store_item(self, index: int, names: Sequence[str] | None = None) -> None:
        """Write the solver's ``names`` (default: the solved gain and ceiling) into item ``index`` of the batch,
        in place (the optimiser keeps its parameters)."""
        if not self.batched:
            return
        names = names or [n for n in (self.level_param, self.ceiling_param) if n]
        batch, solved = self.processor.values(), self.solvers[index].values()
        update = {}
        for name in names:
            update[name] = list(batch[name])
            update[name][index] = solved[name]
        self.processor.set_values(**update)

    def solve_item(
        self, index: int, ceiling: bool = False, tol_lu: float | None = None, whole: bool = False
    ) -> Solution:
        """Solve item ``index``'s solver onto its target on its excerpt (``whole``: on its whole track): the
        level, and the ceiling too when asked; ValueError when the target cannot be met."""
        item = self.items[index]
        solution = solve_target(
            self.solvers[index],
            item.track if whole else item.excerpt.audio,
            self.sample_rate,
            item.objective.target if whole else item.excerpt.target,
            self.level_param,
            self.ceiling_param if ceiling else None,
            tol_lu=self.tol_lu if tol_lu is None else tol_lu,
            slope_hint=self.slope_hints[index],
        )
        self.slope_hints[index] = solution.slope or self.slope_hints[index]
        return solution

    def measure_item(self, index: int, output: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every measure of a render of item ``index``'s excerpt."""
        item = self.items[index]
        return item.objective.measure(item.excerpt.audio, output)

    def score_item(self, index: int, output: torch.Tensor) -> float:
        """The objective of a render of item ``index``'s excerpt."""
        item = self.items[index]
        return item.objective.score(item.excerpt.audio, output)

    # --- candidates before the first step ---------------------------------------------------------------------
    def on_train_start(self) -> None:
        """Score the candidates that exist before any step, per item: the idle settings (the other stages
        transparent: the processor is then the gain + limiter baseline) and the starting settings (on target
        already). A resumed run scored them before it was stopped."""
        if self.resumed:
            return
        with torch.no_grad():
            for index in range(len(self.items)):
                solver = self.load_item(index)
                start = {k: v.detach().clone() for k, v in solver.state_dict().items()}
                if self.idle_values and index in self.idle_items:
                    self.best[index].offer(self._score_idle(index), solver, self.global_step, "idle")
                    solver.load_state_dict(start)
                if self.start_scores is not None:
                    score = self.start_scores[index]
                else:
                    score = self.score_item(index, solver(self.items[index].excerpt.audio))
                self.best[index].offer(score, solver, self.global_step, "start")

    def _score_idle(self, index: int) -> float:
        """The objective on target of item ``index``'s idle settings. When the limiter then matches the
        item's baseline winner, they are that baseline: take its gain, ceiling and score instead of solving."""
        solver = self.solvers[index]
        solver.set_values(**self.idle_values)
        if self._idle_is_baseline(index):  # the baseline's winner as solved on the excerpt
            on_excerpt = self.items[index].baseline["excerpt"]
            solver.set_values(**{self.level_param: on_excerpt["gain_db"], self.ceiling_param: on_excerpt["ceiling_db"]})
            return float(on_excerpt["objective_drl_db"])
        return self.score_item(index, self.solve_item(index).output)

    def _idle_is_baseline(self, index: int) -> bool:
        """Whether item ``index``'s solver, at its idle settings, is its gain + limiter baseline's winner: the
        other stages idle and the limiter's timing that of the winner."""
        solver, base = self.solvers[index], self.items[index].baseline
        values = solver.values()
        limiter = (self.ceiling_param or "").rpartition(".")[0]
        idle_stages = {name.split(".")[0] for name in self.idle_values}
        return (
            bool(limiter)
            and all(
                key in base and values.get(f"{limiter}.{key}") == base[key] for key in ("release_ms", "lookahead_ms")
            )
            and values.get(f"{limiter}.slow_release_ms") == base.get("slow_release_ms")
            and set(solver.stages) - idle_stages == {self.level_param.split(".")[0], limiter}
        )

    # --- validation -------------------------------------------------------------------------------------------
    def validation_step(self, batch, batch_idx: int) -> None:
        """Project every setting onto its loudness target (solve the level gain on its whole track), log the
        measures there (means over the settings) and keep each setting's best. Settings that cannot reach the
        target (a slow release holding the gain down) are no candidate: ``val/on_target`` logs the share that
        can, and training goes on from them."""
        logged: list[dict[str, torch.Tensor]] = []
        self.scores = [None] * len(self.items)
        for index in range(len(self.items)):
            solver = self.load_item(index)
            try:
                solution = self.solve_item(index)
            except ValueError:
                continue
            self.store_item(index)
            measures = self.measure_item(index, solution.output)
            self.scores[index] = float(measures["objective_drl_db"])
            self.best[index].offer(self.scores[index], solver, self.global_step, "tuned")
            logged.append(
                {
                    "lufs": torch.tensor(solution.lufs),
                    "true_peak_dbtp": torch.tensor(solution.true_peak_dbtp),
                    **{k: v.detach().cpu() for k, v in measures.items()},
                    "solve_renders": torch.tensor(float(solution.renders)),
                }
            )
        self.log("val/on_target", len(logged) / len(self.items), batch_size=1)
        if self._trainer is not None and not self.trainer.sanity_checking:
            self._say_validation()
        if logged:
            self.log_dict(
                {f"val/{k}": torch.stack([m[k].double() for m in logged]).mean().to(self.device) for k in logged[0]},
                batch_size=1,
            )
        if self.population is not None and not self.trainer.sanity_checking:
            self._exploit()

    def _say_validation(self) -> None:
        scored = [s for s in self.scores if s is not None]
        where = "" if self.items[0].excerpt.whole else " (on the excerpt)"
        if len(self.items) == 1:
            best = self.best[0]
            now = "cannot reach the target" if not scored else f"objective {scored[0]:.2f} dB on target{where}"
            kept = f"best {best.objective_db:.2f} dB: {best.label} at step {best.step}" if best.state else ""
            line = f"{now}; {kept}" if kept else now
        else:
            line = f"{len(scored)}/{len(self.items)} settings on target{where}" + (
                f", objective {min(scored):.2f} to {max(scored):.2f} dB" if scored else ""
            )
        self.progress.say(f"  step {self.global_step}/{self.trainer.max_steps}: {line}")

    def _exploit(self) -> None:
        """Every ``population.every`` validations: the worst candidates become perturbed copies of the best."""
        best = min((s for s in self.scores if s is not None), default=None)
        if best is not None:
            self.log("val/population_best", best, batch_size=1)
        if (self.current_epoch + 1) % self.population.every:
            return
        generator = step_generator(self.seed, int(self.global_step), int(self.global_rank))
        optimizer = self.optimizers().optimizer if self._trainer is not None else None
        pairs = exploit(self.processor, optimizer, self.scores, self.population, generator)
        for loser, source in pairs:
            self.slope_hints[loser] = self.slope_hints[source]
        self.log("val/population_replaced", float(len(pairs)), batch_size=1)

    # --- resume -----------------------------------------------------------------------------------------------
    # The best candidates and the solver's slopes live outside the parameters: a checkpoint carries them
    # (plain values and tensors only), so a resumed run selects what the uninterrupted one would.
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["tuning"] = {"best": [vars(best) for best in self.best], "slope_hints": self.slope_hints}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint.get("tuning")
        if state is None or "best" not in state:
            raise ValueError("the checkpoint holds no tuning state: it was not written by a tuning run")
        if len(state["best"]) != len(self.items):
            raise ValueError(
                f"the checkpoint holds {len(state['best'])} settings, this run tunes "
                f"{len(self.items)}: resume with the same tracks and settings"
            )
        self.best = [Best(**best) for best in state["best"]]
        self.slope_hints = list(state["slope_hints"])
        self.resumed = True

    # --- the end ----------------------------------------------------------------------------------------------
    def finalize(self, tol_lu: float | None = None) -> list[Solution]:
        """Per setting: restore its best candidate, solve the level (and, if needed, the ceiling) on its whole
        track and measure; the results in ``finals`` and ``final_metrics``, for the items in ``final_indices``.

        With a population only the best candidate is kept. The validations rank the candidates with the level
        solved alone, and a final solve may yet lower the ceiling (a true peak above it), so candidate 0 (the
        single-start run's) and the :data:`FINALISTS` best are solved to the end and the best of them kept."""
        with self.progress.stage("final solve on the whole track") as end:
            self._finalize(tol_lu)
            if len(self.finals) == 1:
                final, metrics = self.finals[0], self.final_metrics[0]
                end["result"] = (
                    f"{final.lufs:.2f} LUFS, {final.true_peak_dbtp:.2f} dBTP, objective "
                    f"{metrics['output']['objective_drl_db']:.2f} dB; selected {metrics['selected']}"
                )
        return self.finals

    def _finalize(self, tol_lu: float | None) -> None:
        clock = time.perf_counter()
        indices = list(range(len(self.items)))
        if self.population is not None:
            ranked = sorted(
                (i for i, best in enumerate(self.best) if best.objective_db is not None),
                key=lambda i: self.best[i].objective_db,
            )
            indices = list(dict.fromkeys([0, *ranked[:FINALISTS]]))
        finished = [self._finalize_item(index, tol_lu) for index in indices]
        if self.population is not None:
            finished = [min(finished, key=lambda done: done[2]["output"]["objective_drl_db"])]
        self.final_indices = [index for index, _, _ in finished]
        self.finals = [solution for _, solution, _ in finished]
        self.final_metrics = [metrics for _, _, metrics in finished]
        self._log_final()
        self.finalize_s = time.perf_counter() - clock

    def _finalize_item(self, index: int, tol_lu: float | None) -> tuple[int, Solution, dict]:
        """Item ``index``'s best candidate solved onto its target on the whole track and measured there. When
        it then reads worse than the gain + limiter baseline (candidates were compared on an excerpt, or the
        final solve lowered the ceiling), the idle settings (that baseline) are finalized instead."""
        item, best = self.items[index], self.best[index]
        self.load_item(index, best.state)
        finished = self._finish(index, tol_lu, best.step, best.label)
        baseline_db = item.baseline.get("objective_drl_db", item.baseline.get("drl_db"))
        worse = baseline_db is not None and finished[2]["output"]["objective_drl_db"] > baseline_db
        if worse and best.label != "idle" and self.idle_values and index in self.idle_items:
            solved = {k: v.detach().clone() for k, v in self.solvers[index].state_dict().items()}
            self.solvers[index].set_values(**self.idle_values)
            if self._idle_is_baseline(index):  # start where the baseline's winner landed on the whole track
                base = item.baseline
                self.solvers[index].set_values(
                    **{self.level_param: base["gain_db"], self.ceiling_param: base["ceiling_db"]}
                )
            idle = self._finish(index, tol_lu, 0, "idle")
            if idle[2]["output"]["objective_drl_db"] < finished[2]["output"]["objective_drl_db"]:
                return idle
            self.load_item(index, solved)
            self.store_item(index, list(finished[1].values))
        return finished

    def _finish(self, index: int, tol_lu: float | None, step: int | None, label: str) -> tuple[int, Solution, dict]:
        """Item ``index``'s solver solved onto its target on the whole track and measured there. The solve
        starts from the solver's gain (solved on the excerpt, whose target is shifted by its loudness
        difference to the whole track: the same gain puts both on target) and from the lower of its ceiling
        and the baseline winner's on the whole track when both limiters are of one kind (true-peak or
        sample-peak: its peaks overshoot the ceiling on this track by about as much whatever the stages ahead of
        it, so a ceiling round is saved)."""
        item, solver = self.items[index], self.solvers[index]
        base_ceiling, lowered = item.baseline.get("ceiling_db"), False
        if self.ceiling_param and base_ceiling is not None:
            stages, name = getattr(solver, "stages", {}), self.ceiling_param.rpartition(".")[0]
            limiter = stages[name] if name in stages else None
            ceiling = float(solver.values()[self.ceiling_param])
            same_kind = getattr(limiter, "true_peak", None) == item.baseline.get("true_peak", True)
            if same_kind and base_ceiling < ceiling:
                lowered_db = ceiling - solver.spec(self.ceiling_param).clamp(base_ceiling)
                # and the gain raised by what keeps the loudness under the lower ceiling
                gain = float(solver.values()[self.level_param])
                keep = ceiling_gain_step(lowered_db, self.slope_hints[index])
                solver.set_values(
                    **{
                        self.ceiling_param: ceiling - lowered_db,
                        self.level_param: solver.spec(self.level_param).clamp(gain + keep),
                    }
                )
                lowered = True
        solution = self.solve_item(index, ceiling=True, tol_lu=tol_lu, whole=True)
        # this chain's own ceiling round would have left its true peak PEAK_MARGIN_DB under the ceiling: when the
        # baseline's ceiling put it further under, raise the ceiling by the difference and solve again
        room = item.objective.target.ceiling_dbtp - PEAK_MARGIN_DB - solution.true_peak_dbtp
        if lowered and room > CEILING_SLACK_DB:
            raised = float(solver.values()[self.ceiling_param]) + room
            solver.set_values(**{self.ceiling_param: solver.spec(self.ceiling_param).clamp(raised)})
            solution = self.solve_item(index, ceiling=True, tol_lu=tol_lu, whole=True)
        self.store_item(index, list(solution.values))
        weights = item.objective.weights
        # the objective keeps the track's half of the NMR and the measures of the render it scored last
        measured = item.objective.measure(item.track, solution.output)
        output = track_metrics(item.track, solution.output, self.sample_rate, weights, measures=measured)
        source = item.input_metrics or track_metrics(item.track, item.track, self.sample_rate, weights)
        metrics = run_metrics(source, output, item.baseline, item.objective.target, self.global_step, step, label)
        return index, solution, metrics

    def _log_final(self) -> None:
        """The HPARAMS tab, logged once at the end (TensorBoard keeps the first hparams of a run): the run's
        ``config``, the tuned settings (``tuned/<stage>.<param>``, when one setting was finalized) and the final
        measures, means over the settings."""
        table = dict(self.hparams.get("config") or {})
        if len(self.finals) == 1:
            table.update({f"tuned/{name}": value for name, value in self.finals[0].values.items()})
        placeholders = {f"hp/{k}": math.nan for k in HP_METRICS}
        for logger in self.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.log_hyperparams(table, placeholders)
            else:
                logger.log_hyperparams(table)
        hp = {}
        for key, path in (
            ("drl_db", ("output", "drl_db")),
            ("nmr_db", ("output", "nmr_db")),
            ("baseline_drl_db", ("baseline_drl_db",)),
            ("lufs", ("output", "integrated_lufs")),
            ("true_peak_dbtp", ("output", "true_peak_dbtp")),
        ):
            values = []
            for metrics in self.final_metrics:
                value = metrics
                for part in path:
                    value = value.get(part) if isinstance(value, Mapping) else None
                if value is not None:
                    values.append(float(value))
            if values:
                hp[f"hp/{key}"] = sum(values) / len(values)
        for logger in self.loggers:
            logger.log_metrics(hp, int(self.global_step))
