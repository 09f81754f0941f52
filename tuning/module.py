"""The LightningModule: the processor's unconstrained parameters are the model; crops of one track the data."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger

import drl
from processors import Chain
from tuning.audio import draw_crop_starts, step_generator, take_crops
from tuning.objective import Objective, Target
from tuning.results import run_metrics, track_metrics
from tuning.solve import Solution, solve_target


def physical_params(processor: Chain) -> dict[str, torch.Tensor]:
    """Dotted name -> differentiable physical value (on the parameters' device) of every parameter."""
    return {spec.name: processor.param(spec.name) for spec in processor.specs}


#: Final metrics shown in TensorBoard's HPARAMS tab, as ``hp/<name>``.
HP_METRICS = ("drl_db", "nmr_db", "baseline_drl_db", "lufs", "true_peak_dbtp")


class TuningModule(L.LightningModule):
    """Tunes ``processor`` on random crops of ``track_audio`` (C, T) to ``target`` with least DRL.

    ``optimizer`` builds the optimiser from the parameter list (a partial, e.g. ``torch.optim.Adam``).
    ``level_param``/``ceiling_param`` are the dotted names the final solve adjusts (see
    :func:`tuning.solve.solve_target`); ``tol_lu`` is the loudness tolerance of every solve (candidates are
    compared at the same loudness: near transparency, DRL moves by hundredths of a dB per 0.001 LU).
    ``config`` is a flat dict of plain values shown as hparams.
    """

    def __init__(
        self,
        processor: torch.nn.Module,
        track_audio: torch.Tensor,
        sample_rate: int,
        objective: Objective,
        optimizer: Callable,
        crop_samples: int,
        level_param: str,
        ceiling_param: str | None = None,
        config: Mapping | None = None,
        baseline: Mapping | None = None,
        idle_values: Mapping[str, float] | None = None,
        tol_lu: float = 0.001,
        input_metrics: Mapping | None = None,
        crops_per_batch: int = 4,
        seed: int = 0,
        segments: list[tuple[int, int]] | None = None,
    ) -> None:
        super().__init__()
        # logged by on_fit_start together with the final metrics' names (the HPARAMS tab)
        self.save_hyperparameters(
            ignore=["processor", "track_audio", "objective", "optimizer", "baseline", "input_metrics", "segments"],
            logger=False,
        )
        self.input_metrics = dict(input_metrics) if input_metrics else None
        self.baseline = dict(baseline or {})
        self.processor = processor
        self.objective = objective
        self.optimizer_factory = optimizer
        self.sample_rate = int(sample_rate)
        self.crop_samples = int(crop_samples)
        self.level_param = level_param
        self.ceiling_param = ceiling_param
        self.register_buffer("track", track_audio.float(), persistent=False)
        self.crops_per_batch = int(crops_per_batch)
        self.seed = int(seed)
        # where crops may start: (offset, length) in samples of each track inside `track` (album mode)
        self.segments = [(int(o), int(n)) for o, n in segments] if segments else [(0, track_audio.shape[-1])]
        self.resumed = False
        self.final: Solution | None = None
        self.project_tol_lu = float(tol_lu)
        self.finalize_s = 0.0
        self.slope_hint: float | None = None
        self.best_drl_db: float | None = None
        self.best_step: int | None = None
        self.best_state: dict | None = None
        self.best_label = "start"
        self.idle_values = dict(idle_values or {})
        self.final_metrics: dict | None = None

    @property
    def target(self) -> Target:
        return self.objective.target

    def configure_optimizers(self):
        params = [p for p in self.processor.parameters() if p.requires_grad]
        if not params:
            raise ValueError("every processor parameter is frozen: nothing to tune")
        return self.optimizer_factory(params)

    def crop_starts(self) -> torch.Tensor:
        """This step's random crop starts: a function of (seed, DDP rank, global step) only, so a resumed run
        draws the crops of the uninterrupted one and each rank draws its own."""
        generator = step_generator(self.seed, int(self.global_step), int(self.global_rank))
        return draw_crop_starts(self.segments, self.crop_samples, self.crops_per_batch, generator)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x = take_crops(self.track, self.crop_starts(), self.crop_samples)
        y = self.processor(x)
        terms = self.objective(x, y)
        batch = x.shape[0]
        self.log("train/loss", terms["loss"], prog_bar=True, batch_size=batch)
        self.log_dict({f"train/{k}": v for k, v in terms.items() if k != "loss"}, batch_size=batch)
        params = {f"params/{k}": v.detach() for k, v in physical_params(self.processor).items() if v.ndim == 0}
        self.log_dict(params, batch_size=batch)
        return terms["loss"]

    def _measure(self, solution: Solution) -> dict[str, torch.Tensor]:
        metrics = {
            "val/lufs": torch.tensor(solution.lufs, device=self.device),
            "val/true_peak_dbtp": torch.tensor(solution.true_peak_dbtp, device=self.device),
        }
        # plain, band, frame-wise DRL and the loss's weighted mean of them (objective_drl_db)
        metrics.update({f"val/{k}": v for k, v in self.objective.measure(self.track, solution.output).items()})
        return metrics

    def _keep_if_best(self, drl_db: float, label: str = "tuned") -> None:
        if self.best_drl_db is None or drl_db < self.best_drl_db:
            self.best_drl_db = drl_db
            self.best_step = int(self.global_step)
            self.best_label = label
            self.best_state = {k: v.detach().clone() for k, v in self.processor.state_dict().items()}

    def on_fit_start(self) -> None:
        placeholders = {f"hp/{k}": math.nan for k in HP_METRICS}
        for logger in self.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.log_hyperparams(dict(self.hparams), placeholders)
            else:
                logger.log_hyperparams(dict(self.hparams))

    # The best candidate so far and the solver's slope live outside the parameters: a checkpoint carries them
    # (plain values and tensors only), so a resumed run selects what the uninterrupted one would.
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["tuning"] = {
            "best_drl_db": self.best_drl_db, "best_step": self.best_step, "best_label": self.best_label,
            "best_state": self.best_state, "slope_hint": self.slope_hint,
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint.get("tuning")
        if state is None:
            raise ValueError("the checkpoint holds no tuning state: it was not written by a tuning run")
        self.best_drl_db, self.best_step = state["best_drl_db"], state["best_step"]
        self.best_label, self.best_state = state["best_label"], state["best_state"]
        self.slope_hint = state["slope_hint"]
        self.resumed = True

    def on_train_start(self) -> None:
        """Score the candidates that exist before any step: the idle settings (the other stages transparent:
        the processor is then the gain + limiter baseline) and the starting settings (on target already).
        A resumed run scored them before it was stopped."""
        if self.resumed:
            return
        with torch.no_grad():
            if self.idle_values:
                start = {k: v.detach().clone() for k, v in self.processor.state_dict().items()}
                self._keep_if_best(self._score_idle(), "idle")
                self.processor.load_state_dict(start)
            start = self.objective.measure(self.track, self.processor(self.track))["objective_drl_db"]
            self._keep_if_best(float(start), "start")

    def _score_idle(self) -> float:
        """DRL on target of the idle settings. When the limiter matches the baseline's winner, they are that
        baseline: take its gain, ceiling and DRL instead of rendering again."""
        self.processor.set_values(**self.idle_values)
        values = self.processor.values()
        base = self.baseline
        limiter = (self.ceiling_param or "").rpartition(".")[0]
        same = bool(limiter) and all(
            key in base and values.get(f"{limiter}.{key}") == base[key] for key in ("release_ms", "lookahead_ms")
        ) and values.get(f"{limiter}.slow_release_ms") == base.get("slow_release_ms") and set(self.processor.stages) - set(self.idle_stages()) == {self.level_param.split(".")[0], limiter}
        if same:
            self.processor.set_values(**{self.level_param: base["gain_db"], self.ceiling_param: base["ceiling_db"]})
            return float(base.get("objective_drl_db", base["drl_db"]))
        solution = solve_target(self.processor, self.track, self.sample_rate, self.target, self.level_param,
                                None, tol_lu=self.project_tol_lu)
        return float(self.objective.measure(self.track, solution.output)["objective_drl_db"])

    def idle_stages(self) -> set[str]:
        """Stages the idle values make transparent."""
        return {name.split(".")[0] for name in self.idle_values}

    def validation_step(self, batch, batch_idx: int) -> None:
        """Project onto the loudness target (solve the level gain on the whole track), then log the whole
        track's loudness, true peak, DRL and band DRL there, and remember the best settings so far. Settings
        that cannot reach the target (a slow release holding the gain down) are no candidate: ``val/on_target``
        logs 0 and training goes on from them."""
        try:
            solution = solve_target(self.processor, self.track, self.sample_rate, self.target, self.level_param,
                                    None, tol_lu=self.project_tol_lu, slope_hint=self.slope_hint)
        except ValueError:
            self.log("val/on_target", 0.0, batch_size=1)
            return
        self.log("val/on_target", 1.0, batch_size=1)
        self.slope_hint = solution.slope or self.slope_hint
        metrics = self._measure(solution)
        metrics["val/solve_renders"] = torch.tensor(float(solution.renders), device=self.device)
        self.log_dict(metrics, batch_size=1)
        self._keep_if_best(float(metrics["val/objective_drl_db"]))

    def finalize(self, tol_lu: float | None = None) -> Solution:
        """Restore the best settings seen (by DRL on target), solve the level (and, if needed, the ceiling) on
        the whole track; keep the result in ``final`` and its measures in ``final_metrics``."""
        clock = time.perf_counter()
        if self.best_state is not None:
            self.processor.load_state_dict(self.best_state)
        self.final = solve_target(
            self.processor, self.track, self.sample_rate, self.target, self.level_param, self.ceiling_param,
            tol_lu=self.project_tol_lu if tol_lu is None else tol_lu, slope_hint=self.slope_hint,
        )
        output = track_metrics(self.track, self.final.output, self.sample_rate, self.objective.weights)
        base = dict(self.baseline)
        input_metrics = self.input_metrics or track_metrics(self.track, self.track, self.sample_rate,
                                                            self.objective.weights)
        self.final_metrics = run_metrics(input_metrics, output, base, self.target, self.global_step,
                                         self.best_step, self.best_label)
        hp = {f"hp/{k}": v for k, v in (("drl_db", output["drl_db"]), ("nmr_db", output.get("nmr_db")),
                                        ("baseline_drl_db", base.get("drl_db")),
                                        ("lufs", output["integrated_lufs"]),
                                        ("true_peak_dbtp", output["true_peak_dbtp"])) if v is not None}
        for logger in self.loggers:
            logger.log_metrics(hp, int(self.global_step))
        self.finalize_s = time.perf_counter() - clock
        return self.final
