"""Per-track tuning of several tracks in one job: one processor whose parameters carry a batch of B settings
(shape (B,)), trained on crops of all tracks at once; every per-track decision (loudness solve, best settings,
baseline) is taken on that track alone.

Tracks may differ in length: each step draws every track's crops from that track only, and each solve renders
its own whole track through a one-setting copy of the processor (``solvers``), whose solved gain and ceiling
are written back into the batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

import lightning as L
import torch

from tuning.audio import draw_crop_starts, step_generator, take_crops
from tuning.objective import Objective
from tuning.results import run_metrics, track_metrics
from tuning.solve import Solution, solve_target


def batch_values(chains: Sequence[torch.nn.Module]) -> dict[str, list[float]]:
    """The settings of B one-setting chains as {dotted name: [B values]}."""
    per_item = [chain.values() for chain in chains]
    return {name: [values[name] for values in per_item] for name in per_item[0]}


def item_values(values: Mapping[str, list[float]], index: int) -> dict[str, float]:
    """Item ``index`` of batched settings {name: [B values]}."""
    return {name: float(value[index]) for name, value in values.items()}


class PerTrackModule(L.LightningModule):
    """Tunes ``processor`` (parameters of shape (B,)) on crops of ``tracks`` (B tensors (C, T_b)) so that each
    track reaches ``objectives[b].target`` with least distortion, independently of the others.

    ``solvers`` are B one-setting processors of the same layout (used for the whole-track solves);
    ``baselines`` the B gain + limiter baselines; ``idle_values`` as in :class:`tuning.module.TuningModule`.
    The loss is the sum of the per-track objectives: each track's settings only reach its own term, and Adam
    scales every element on its own, so the tracks are optimised as if in separate jobs.
    """

    def __init__(
        self,
        processor: torch.nn.Module,
        solvers: Sequence[torch.nn.Module],
        tracks: Sequence[torch.Tensor],
        sample_rate: int,
        objectives: Sequence[Objective],
        optimizer: Callable,
        crop_samples: int,
        level_param: str,
        ceiling_param: str | None = None,
        config: Mapping | None = None,
        baselines: Sequence[Mapping] = (),
        idle_values: Mapping[str, float] | None = None,
        tol_lu: float = 0.001,
        crops_per_batch: int = 4,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(
            ignore=["processor", "solvers", "tracks", "objectives", "optimizer", "baselines"], logger=False
        )
        self.processor = processor
        self.solvers = list(solvers)  # plain list: not part of the state dict (their values are the batch's)
        self.tracks = [t.float() for t in tracks]
        self.objectives = list(objectives)
        self.optimizer_factory = optimizer
        self.sample_rate = int(sample_rate)
        self.crop_samples = int(crop_samples)
        self.level_param, self.ceiling_param = level_param, ceiling_param
        self.baselines = [dict(b) for b in baselines]
        self.idle_values = dict(idle_values or {})
        self.tol_lu = float(tol_lu)
        self.crops_per_batch, self.seed = int(crops_per_batch), int(seed)
        count = len(self.tracks)
        self.best_drl_db: list[float | None] = [None] * count
        self.best_values: list[dict | None] = [None] * count
        self.best_step: list[int | None] = [None] * count
        self.best_label = ["start"] * count
        self.slope_hints: list[float | None] = [None] * count
        self.resumed = False
        self.finals: list[Solution] | None = None
        self.final_metrics: list[dict] | None = None
        self.finalize_s = 0.0

    def configure_optimizers(self):
        params = [p for p in self.processor.parameters() if p.requires_grad]
        if not params:
            raise ValueError("every processor parameter is frozen: nothing to tune")
        return self.optimizer_factory(params)

    def on_fit_start(self) -> None:
        device = self.device
        self.tracks = [t.to(device) for t in self.tracks]
        self.solvers = [s.to(device) for s in self.solvers]

    # --- training ---------------------------------------------------------------------------------------------
    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        generator = step_generator(self.seed, int(self.global_step), int(self.global_rank))
        starts = [draw_crop_starts([(0, t.shape[-1])], self.crop_samples, self.crops_per_batch, generator)
                  for t in self.tracks]
        # (K, B, C, L): crop k of every track side by side, so the processor sees each item's own settings
        x = torch.stack([take_crops(t, s, self.crop_samples) for t, s in zip(self.tracks, starts)], dim=1)
        y = torch.stack([self.processor(x[k]) for k in range(self.crops_per_batch)])
        terms = [objective(x[:, b], y[:, b]) for b, objective in enumerate(self.objectives)]
        loss = torch.stack([t["loss"] for t in terms]).sum()
        self.log("train/loss", loss, prog_bar=True, batch_size=len(terms))
        for key in ("drl_db", "loudness_error_lu", "true_peak_dbtp"):
            self.log(f"train/{key}", torch.stack([t[key].detach() for t in terms]).mean(), batch_size=len(terms))
        return loss

    # --- per-track solves and candidates ----------------------------------------------------------------------
    def _load_item(self, index: int, values: Mapping[str, float] | None = None) -> torch.nn.Module:
        """The one-setting solver of track ``index`` at the batch's current settings (or at ``values``)."""
        solver = self.solvers[index]
        solver.set_values(**(values if values is not None else item_values(self.processor.values(), index)))
        return solver

    def _store_item(self, index: int, names: Sequence[str] | None = None) -> None:
        """Write the solver's ``names`` (default: the solved gain and ceiling) back into item ``index`` of the
        batch, in place (the optimiser keeps its parameters)."""
        names = names or [n for n in (self.level_param, self.ceiling_param) if n]
        batch, solved = self.processor.values(), self.solvers[index].values()
        update = {}
        for name in names:
            update[name] = list(batch[name])
            update[name][index] = solved[name]
        self.processor.set_values(**update)

    def _solve_item(self, index: int, ceiling: bool = False, tol_lu: float | None = None) -> Solution:
        solution = solve_target(
            self.solvers[index], self.tracks[index], self.sample_rate, self.objectives[index].target,
            self.level_param, self.ceiling_param if ceiling else None,
            tol_lu=self.tol_lu if tol_lu is None else tol_lu, slope_hint=self.slope_hints[index],
        )
        self.slope_hints[index] = solution.slope or self.slope_hints[index]
        return solution

    def _score(self, index: int, output: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.objectives[index].measure(self.tracks[index], output)

    def _keep_if_best(self, index: int, drl_db: float, label: str) -> None:
        if self.best_drl_db[index] is None or drl_db < self.best_drl_db[index]:
            self.best_drl_db[index] = drl_db
            self.best_values[index] = dict(self.solvers[index].values())
            self.best_step[index] = int(self.global_step)
            self.best_label[index] = label

    def on_train_start(self) -> None:
        """Score each track's starting settings and its idle settings (the gain + limiter baseline inside this
        processor), as the single-track module does. A resumed run scored them before it was stopped."""
        if self.resumed:
            return
        with torch.no_grad():
            for index in range(len(self.tracks)):
                start = item_values(self.processor.values(), index)
                if self.idle_values:
                    self._load_item(index, {**start, **self.idle_values})
                    solution = self._solve_item(index)
                    self._keep_if_best(index, float(self._score(index, solution.output)["objective_drl_db"]), "idle")
                output = self._load_item(index, start)(self.tracks[index])
                self._keep_if_best(index, float(self._score(index, output)["objective_drl_db"]), "start")

    def validation_step(self, batch, batch_idx: int) -> None:
        """Project every track onto its loudness target, log the mean measures, keep each track's best."""
        scores, lufs = [], []
        for index in range(len(self.tracks)):
            self._load_item(index)
            try:
                solution = self._solve_item(index)
            except ValueError:  # settings that cannot reach the target are no candidate (see TuningModule)
                continue
            self._store_item(index)
            measures = self._score(index, solution.output)
            self._keep_if_best(index, float(measures["objective_drl_db"]), "tuned")
            scores.append(measures["objective_drl_db"])
            lufs.append(solution.lufs)
        self.log("val/on_target", len(scores) / len(self.tracks), batch_size=1)
        if scores:
            self.log("val/objective_drl_db", torch.stack(scores).mean(), batch_size=1)
            self.log("val/lufs", torch.tensor(sum(lufs) / len(lufs)), batch_size=1)

    # --- resume -----------------------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["tuning"] = {"best_drl_db": self.best_drl_db, "best_values": self.best_values,
                                "best_step": self.best_step, "best_label": self.best_label,
                                "slope_hints": self.slope_hints}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint.get("tuning")
        if state is None or len(state["best_drl_db"]) != len(self.tracks):
            raise ValueError("the checkpoint holds no per-track tuning state for these tracks")
        self.best_drl_db, self.best_values = list(state["best_drl_db"]), list(state["best_values"])
        self.best_step, self.best_label = list(state["best_step"]), list(state["best_label"])
        self.slope_hints = list(state["slope_hints"])
        self.resumed = True

    # --- the end ------------------------------------------------------------------------------------------------
    def finalize(self, tol_lu: float | None = None) -> list[Solution]:
        """Per track: restore its best settings, solve level (and ceiling) on the whole track, measure."""
        clock = time.perf_counter()
        self.finals, self.final_metrics = [], []
        for index, track in enumerate(self.tracks):
            self._load_item(index, self.best_values[index])
            solution = self._solve_item(index, ceiling=True, tol_lu=tol_lu)
            self._store_item(index, list(solution.values))
            objective = self.objectives[index]
            output = track_metrics(track, solution.output, self.sample_rate, objective.weights)
            base = self.baselines[index] if index < len(self.baselines) else {}
            self.finals.append(solution)
            metrics = run_metrics(track_metrics(track, track, self.sample_rate, objective.weights), output, base,
                                  objective.target, self.global_step, self.best_step[index], self.best_label[index])
            self.final_metrics.append({**metrics, "mode": "per_track"})
        self.finalize_s = time.perf_counter() - clock
        return self.finals
