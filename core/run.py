"""One pruning run's working context: the model, its data, optimizer and masks, around a RunState.

The phases (planning in `core.planning`, the step in `core.step`, baseline and final fine-tuning
in `core.loop`) act through the helpers here: training, evaluation, scoring batches, reports,
checkpoints and the rollback snapshot.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from core.checkpoint import Checkpoint, load_latest, save_checkpoint
from core.contract.layout import CHECKPOINT_DENSE
from core.controller import AdaptiveController, over_tolerance
from core.data import TaskData
from core.errors import PruneCancelled
from core.finetune import (
    Distillation,
    batches,
    epoch_generator,
    evaluate,
    to_tensors,
    train_epoch,
)
from core.granularity import SparsityPlan, make_granularity
from core.hf.adapter import HFAdapter
from core.hf.distill_loss import hf_batch_loss
from core.importance import Importance, ScoringContext, make_importance
from core.losses import cross_entropy
from core.masks import prunable_parameters
from core.metrics import make_metric, worse_by
from core.report import Decision, StepCallback, StepReport, StopReason
from core.run_state import RunState, decode_run_state, encode_run_state
from core.spec import JobSpec
from core.structured import resize_to_shapes, shapes_of

PhaseCallback = Callable[[str], None]
CheckpointCallback = Callable[[Path], None]
DENSE_WEIGHTS = CHECKPOINT_DENSE
_CALIBRATION_EPOCH = 10_000_000  # generator offset for calibration batches, apart from epochs


@dataclass
class Snapshot:
    """The tensors before a step, kept on the CPU; a rollback restores them."""

    model: nn.Module
    masks: dict[str, Tensor]
    optimizer: dict[str, Any] | None  # None: a fresh optimizer (the held-back fallback)
    plan: SparsityPlan


class Run:
    """The working context of one pruning run; `core.loop.prune()` is its only user."""

    def __init__(
        self,
        model: nn.Module,
        data: TaskData,
        spec: JobSpec,
        *,
        device: torch.device,
        checkpoint_dir: Path | None,
        on_step: StepCallback | None,
        on_phase: PhaseCallback | None,
        on_checkpoint: CheckpointCallback | None,
        should_stop: Callable[[], bool] | None,
    ) -> None:
        self.spec = spec
        self.device = device
        self.model = model.to(device)
        self.dense_model: nn.Module = model
        self.checkpoint_dir = checkpoint_dir
        self.on_step = on_step
        self.on_phase = on_phase
        self.on_checkpoint = on_checkpoint
        self.should_stop = should_stop
        self.x_train, self.y_train = to_tensors(data.x_train, data.y_train, device=device)
        self.x_val, self.y_val = to_tensors(data.x_val, data.y_val, device=device)
        self.example = self.x_train[:1]
        self.masks: dict[str, Tensor] = {}
        self.optimizer: torch.optim.Optimizer | None = None
        # the last model within tolerance while the run builds on a provisional step (every
        # checkpoint carries it; its sparsity is the controller's `within_sparsity`)
        self.fallback: Snapshot | None = None
        self.state = RunState(criterion=spec.prune.criterion, target=spec.prune.target)
        self.granularity = make_granularity(spec.prune.granularity)
        self.metric = make_metric(spec.task.metric)
        self.controller = AdaptiveController(
            tolerance=spec.prune.max_metric_drop, examples=self.counted_examples()
        )
        self.started = time.perf_counter()

    # ----------------------------------------------------------------- helpers
    def phase(self, name: str) -> None:
        if self.on_phase is not None:
            self.on_phase(name)

    def elapsed(self) -> float:
        return self.state.counters.elapsed + time.perf_counter() - self.started

    def evaluate(self, model: nn.Module | None = None) -> tuple[float, float]:
        result = evaluate(model or self.model, x=self.x_val, y=self.y_val, metric=self.metric)
        return result.metric, result.loss

    def new_optimizer(self, lr: float) -> torch.optim.Optimizer:
        return torch.optim.AdamW(
            self.model.parameters(), lr=lr, weight_decay=self.spec.finetune.weight_decay
        )

    def _distillation(self) -> Distillation | None:
        finetune = self.spec.finetune
        if not finetune.distill:
            return None
        return Distillation(
            teacher=self.dense_model,
            temperature=finetune.distill_temperature,
            weight=finetune.distill_weight,
            batch_loss=hf_batch_loss(self.model, self.dense_model, finetune)
            if isinstance(self.model, HFAdapter)
            else None,
        )

    def check(self) -> None:
        """Raise PruneCancelled when the caller asked to stop; every phase's loop calls it."""
        if self.should_stop is not None and self.should_stop():
            raise PruneCancelled("stop requested")

    def out_of_time(self) -> bool:
        """Whether `budget.max_runtime_s` is spent (bounds pre-training and the probes too)."""
        return self.elapsed() >= self.spec.budget.max_runtime_s

    def budget_left(self) -> StopReason | None:
        if self.state.counters.finetune_epochs >= self.spec.budget.max_epochs:
            return "max_epochs"
        if self.elapsed() >= self.spec.budget.max_runtime_s:
            return "max_runtime"
        return None

    def train(
        self,
        epochs: int,
        *,
        lr_at: Callable[[int], Callable[[float], float]] | None,
        count: bool = True,
    ) -> float:
        """Run up to `epochs` epochs (fewer if the budget runs out); return the last mean loss."""
        assert self.optimizer is not None
        counters = self.state.counters
        loss = math.nan
        for index in range(epochs):
            self.check()
            if (count and self.budget_left() is not None) or self.out_of_time():
                break
            # dropout and other global-RNG users draw from a stream fixed by the epoch counter
            torch.manual_seed(self.spec.seed * 1_000_003 + counters.epoch)
            loss = train_epoch(
                self.model,
                x=self.x_train,
                y=self.y_train,
                optimizer=self.optimizer,
                batch_size=self.spec.finetune.batch_size,
                generator=epoch_generator(seed=self.spec.seed, epoch=counters.epoch),
                masks=self.masks,
                params=prunable_parameters(self.model) if self.masks else None,
                distill=self._distillation() if count else None,
                should_stop=self.should_stop,
                out_of_time=self.out_of_time,
                lr_at=lr_at(index) if lr_at is not None else None,
            )
            counters.epoch += 1
            if count:
                counters.finetune_epochs += 1
        return loss

    def scoring_context(self) -> ScoringContext:
        generator = epoch_generator(
            seed=self.spec.seed, epoch=_CALIBRATION_EPOCH + self.state.counters.step
        )
        calibration = []
        for xb, yb in batches(
            self.x_train,
            self.y_train,
            batch_size=self.spec.finetune.batch_size,
            generator=generator,
        ):
            calibration.append((xb, yb))
            if len(calibration) >= self.spec.prune.calibration_batches:
                break
        return ScoringContext(
            model=self.model,
            params=prunable_parameters(self.model),
            batches=calibration,
            loss_fn=cross_entropy,
        )

    def frozen_copy(self, model: nn.Module) -> nn.Module:
        """The dense reference: on the device only when it teaches (distillation)."""
        frozen = copy.deepcopy(model).eval()
        for param in frozen.parameters():
            param.requires_grad_(False)
        return frozen.to(self.device if self.spec.finetune.distill else torch.device("cpu"))

    def drop(self, metric: float) -> float:
        """How much worse than the dense model `metric` is, in the metric's direction."""
        return worse_by(self.metric, reference=self.state.dense_metric, value=metric)

    def counted_examples(self) -> int:
        """Validation examples when the metric moves in whole examples (accuracy), else 0.

        Such a metric is compared against the tolerance in whole examples; any other metric
        with an epsilon (see `core.controller.over_tolerance`).
        """
        return len(self.y_val) if getattr(self.metric, "counts_examples", False) else 0

    def within(self, metric: float) -> bool:
        """The one test of tolerance, shared by the controller's inputs and the result."""
        return not over_tolerance(
            self.drop(metric), self.spec.prune.max_metric_drop, self.counted_examples()
        )

    def importance(self) -> Importance:
        return make_importance(self.state.criterion, self.spec.prune)

    def report(
        self,
        *,
        target: float,
        metric: float,
        loss: float,
        decision: Decision,
        seconds: float,
        epochs: int,
        phases: dict[str, float],
        recovery_epochs: int = 0,
    ) -> None:
        sparsity, _ = self.granularity.count(self.model, plan=self.state.plan)
        report = StepReport(
            step=self.state.counters.step,
            target_sparsity=round(target, 6),
            sparsity=sparsity,
            metric=metric,
            loss=loss,
            decision=decision,
            seconds=seconds,
            epochs=epochs,
            phase_seconds=phases,
            recovery_epochs=recovery_epochs,
        )
        self.state.reports.append(report)
        if decision != "rollback" and self.within(metric):
            self.state.best_within = max(self.state.best_within, sparsity)
        if self.on_step is not None:
            self.on_step(report)

    # ------------------------------------------------------------- checkpoints
    def checkpoint(self) -> None:
        if self.checkpoint_dir is None:
            return
        self.state.shapes = shapes_of(self.model)
        saved = replace(self.state, counters=replace(self.state.counters, elapsed=self.elapsed()))
        path = save_checkpoint(
            self.checkpoint_dir,
            step=self.state.counters.step,
            model=self.model,
            masks=self.masks,
            optimizer=self.optimizer,
            state=encode_run_state(saved),
            fallback=None if self.fallback is None else (self.fallback.model, self.fallback.masks),
        )
        if self.on_checkpoint is not None:
            self.on_checkpoint(path)

    def restore(self) -> bool:
        """Load the newest checkpoint, if any; return whether one was found."""
        if self.checkpoint_dir is None:
            return False
        checkpoint = load_latest(self.checkpoint_dir, device=self.device)
        if checkpoint is None:
            return False
        self.state = decode_run_state(checkpoint.state)
        dense = copy.deepcopy(self.model)
        dense.load_state_dict(load_file(str(self.checkpoint_dir / DENSE_WEIGHTS)))
        self.dense_model = self.frozen_copy(dense)
        held = self._held_back(checkpoint)
        resize_to_shapes(self.model, self.state.shapes)
        self.model.to(self.device)
        self.model.load_state_dict(checkpoint.model_state)
        self.masks = checkpoint.masks
        self.fallback = held
        self.started = time.perf_counter()
        if checkpoint.optimizer_state is not None:
            self.optimizer = self.new_optimizer(self.spec.finetune.lr)
            self.optimizer.load_state_dict(checkpoint.optimizer_state)
        return True

    def _held_back(self, checkpoint: Checkpoint) -> Snapshot | None:
        """The held-back model a checkpoint carries, rebuilt on the CPU at its own shapes
        (channel pruning may have made the current model smaller)."""
        if checkpoint.fallback_state is None or checkpoint.fallback_masks is None:
            return None
        model = copy.deepcopy(self.model).cpu()  # not resized yet: the architecture as built
        resize_to_shapes(model, self.state.fallback_shapes)
        model.load_state_dict(checkpoint.fallback_state)
        return Snapshot(
            model=model,
            masks=checkpoint.fallback_masks,
            optimizer=None,
            plan=self.state.fallback_plan,
        )

    # ---------------------------------------------------------------- fallback
    def hold_fallback(self, snapshot: Snapshot) -> None:
        """Keep `snapshot`, a model within tolerance, as the one to return if the run ends
        past tolerance; no-op while one is held."""
        if self.fallback is not None:
            return
        # no optimizer moments: nothing trains it after the run returns to it
        self.fallback = replace(snapshot, optimizer=None)
        self.state.fallback_shapes = shapes_of(snapshot.model)
        self.state.fallback_plan = copy.deepcopy(snapshot.plan)

    def release_fallback(self) -> None:
        """A step within tolerance: the model itself is what the run would return."""
        self.fallback = None
        self.state.fallback_shapes, self.state.fallback_plan = {}, SparsityPlan()

    def load_fallback(self) -> float:
        """Return to the held-back model within tolerance (with a fresh optimizer: nothing
        trains it after); return the sparsity it was asked for."""
        assert self.fallback is not None and self.state.controller is not None
        target = self.state.controller.within_sparsity
        self.load_snapshot(self.fallback)
        self.release_fallback()
        return target

    def snapshot(self) -> Snapshot:
        """The state before a step, kept on the CPU; a rollback restores it."""
        assert self.optimizer is not None
        optimizer_state = self.optimizer.state_dict()
        return Snapshot(
            model=copy.deepcopy(self.model).cpu(),
            masks={k: v.cpu() for k, v in self.masks.items()},
            optimizer={
                "state": {
                    i: {k: v.cpu() if isinstance(v, Tensor) else v for k, v in entry.items()}
                    for i, entry in optimizer_state["state"].items()
                },
                "param_groups": copy.deepcopy(optimizer_state["param_groups"]),
            },
            plan=copy.deepcopy(self.state.plan),
        )

    def load_snapshot(self, snapshot: Snapshot) -> None:
        self.model = snapshot.model.to(self.device)
        self.masks = {k: v.to(self.device) for k, v in snapshot.masks.items()}
        self.state.plan = snapshot.plan
        self.optimizer = self.new_optimizer(self.spec.finetune.lr)
        if snapshot.optimizer is not None:
            self.optimizer.load_state_dict(snapshot.optimizer)
