"""prune(): the adaptive score -> mask -> fine-tune loop, with per-step checkpoints and resume.

1. Baseline: train the dense model when no weights were given, evaluate it, checkpoint step 0.
2. Score every prunable weight with the job's criterion ("auto" probes the candidates first).
3. Mask (or remove channels) at the sparsity the schedule or the adaptive controller asks for.
4. Fine-tune with the masks enforced after every optimizer step; evaluate on validation.
5. Decide: a fixed schedule moves on; the adaptive controller accelerates, keeps, shrinks or
   rolls back to the state before the step. Checkpoint, report, repeat.
6. Final fine-tuning at the accepted sparsity, with a cosine learning-rate decay.
Every source of randomness is derived from (seed, epoch counter), so a run resumed from any
checkpoint ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from core.checkpoint import load_latest, save_checkpoint
from core.data import TaskData
from core.errors import SpecInvalid, TrainingDiverged
from core.finetune import (
    Distillation,
    batches,
    cosine_lr,
    epoch_generator,
    evaluate,
    to_tensors,
    train_epoch,
)
from core.importance import Importance, ScoringContext, make_importance
from core.masks import nm_incompatible, prunable_parameters
from core.probe import ProbeOutcome, layer_sensitivity, probe_criteria
from core.report import Decision, PruneResult, StepCallback, StepReport, StopReason
from core.schedule import AdaptiveController, ControllerState, fixed_schedule
from core.sparsify import (
    SparsityPlan,
    count_params,
    model_sparsity,
    nm_reachable,
    sparsify,
)
from core.spec import JobSpec, parse_nm
from core.structured import resize_to_shapes, shapes_of
from core.structured.target import channel_reach

PhaseCallback = Callable[[str], None]
CheckpointCallback = Callable[[Path], None]
DENSE_WEIGHTS = "dense.safetensors"
_CALIBRATION_EPOCH = 10_000_000  # generator offset for calibration batches, apart from epochs


@dataclass
class PruneOutcome:
    result: PruneResult
    model: nn.Module
    dense_model: nn.Module
    masks: dict[str, Tensor]


@dataclass
class _Counters:
    step: int = 0
    epoch: int = 0  # every epoch run so far, pre-training included: seeds the shuffles
    finetune_epochs: int = 0
    elapsed: float = 0.0


class _Run:
    """The state of one pruning run; `prune()` is its only entry point."""

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
        self.counters = _Counters()
        self.plan = SparsityPlan()
        self.reports: list[StepReport] = []
        self.dense_metric = 0.0
        self.criterion: str = spec.prune.criterion
        self.probe: dict[str, float] = {}
        self.controller = AdaptiveController(tolerance=spec.prune.max_metric_drop)
        self.controller_state: ControllerState | None = None
        self.next_target = 0.0
        self.target = spec.prune.target_sparsity
        self.best_within = 0.0
        self.stop_reason: StopReason | None = None
        self.finished = False
        self.started = time.perf_counter()

    # ----------------------------------------------------------------- helpers
    def _phase(self, name: str) -> None:
        if self.on_phase is not None:
            self.on_phase(name)

    def _elapsed(self) -> float:
        return self.counters.elapsed + time.perf_counter() - self.started

    def _evaluate(self, model: nn.Module | None = None) -> tuple[float, float]:
        result = evaluate(model or self.model, x=self.x_val, y=self.y_val)
        return result.metric, result.loss

    def _new_optimizer(self, lr: float) -> torch.optim.Optimizer:
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
        )

    def _budget_left(self) -> StopReason | None:
        if self.counters.finetune_epochs >= self.spec.budget.max_epochs:
            return "max_epochs"
        if self._elapsed() >= self.spec.budget.max_runtime_s:
            return "max_runtime"
        return None

    def _train(
        self,
        epochs: int,
        *,
        lr_at: Callable[[int], Callable[[float], float]] | None,
        count: bool = True,
    ) -> float:
        """Run up to `epochs` epochs (fewer if the budget runs out); return the last mean loss."""
        assert self.optimizer is not None
        loss = math.nan
        for index in range(epochs):
            if count and self._budget_left() is not None:
                break
            # dropout and other global-RNG users draw from a stream fixed by the epoch counter
            torch.manual_seed(self.spec.seed * 1_000_003 + self.counters.epoch)
            loss = train_epoch(
                self.model,
                x=self.x_train,
                y=self.y_train,
                optimizer=self.optimizer,
                batch_size=self.spec.finetune.batch_size,
                generator=epoch_generator(seed=self.spec.seed, epoch=self.counters.epoch),
                masks=self.masks,
                params=prunable_parameters(self.model) if self.masks else None,
                distill=self._distillation() if count else None,
                should_stop=self.should_stop,
                lr_at=lr_at(index) if lr_at is not None else None,
            )
            self.counters.epoch += 1
            if count:
                self.counters.finetune_epochs += 1
        return loss

    def _scoring_context(self) -> ScoringContext:
        generator = epoch_generator(
            seed=self.spec.seed, epoch=_CALIBRATION_EPOCH + self.counters.step
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
            loss_fn=F.cross_entropy,
        )

    def _frozen_copy(self, model: nn.Module) -> nn.Module:
        """The dense reference: on the device only when it teaches (distillation)."""
        frozen = copy.deepcopy(model).eval()
        for param in frozen.parameters():
            param.requires_grad_(False)
        return frozen.to(self.device if self.spec.finetune.distill else torch.device("cpu"))

    def _within(self, metric: float) -> bool:
        """The one test of tolerance, shared by the controller's inputs and the result."""
        return self.dense_metric - metric <= self.spec.prune.max_metric_drop

    def _importance(self) -> Importance:
        return make_importance(self.criterion, self.spec.prune)

    def _report(
        self,
        *,
        target: float,
        metric: float,
        loss: float,
        decision: Decision,
        seconds: float,
        epochs: int,
        phases: dict[str, float],
    ) -> None:
        sparsity, _ = model_sparsity(self.model, spec=self.spec.prune, plan=self.plan)
        report = StepReport(
            step=self.counters.step,
            target_sparsity=round(target, 6),
            sparsity=sparsity,
            metric=metric,
            loss=loss,
            decision=decision,
            seconds=seconds,
            epochs=epochs,
            phase_seconds=phases,
        )
        self.reports.append(report)
        if decision != "rollback" and self._within(metric):
            self.best_within = max(self.best_within, sparsity)
        if self.on_step is not None:
            self.on_step(report)

    # ------------------------------------------------------------- checkpoints
    def _state(self) -> dict[str, Any]:
        return {
            "counters": vars(self.counters) | {"elapsed": self._elapsed()},
            "dense_metric": self.dense_metric,
            "criterion": self.criterion,
            "probe": self.probe,
            "controller": None
            if self.controller_state is None
            else self.controller_state.to_dict(),
            "next_target": self.next_target,
            "target": self.target,
            "best_within": self.best_within,
            "stop_reason": self.stop_reason,
            "finished": self.finished,
            "reports": [r.to_dict() for r in self.reports],
            "plan": vars(self.plan),
            "shapes": shapes_of(self.model),
        }

    def _checkpoint(self) -> None:
        if self.checkpoint_dir is None:
            return
        path = save_checkpoint(
            self.checkpoint_dir,
            step=self.counters.step,
            model=self.model,
            masks=self.masks,
            optimizer=self.optimizer,
            state=self._state(),
        )
        if self.on_checkpoint is not None:
            self.on_checkpoint(path)

    def _restore(self) -> bool:
        """Load the newest checkpoint, if any; return whether one was found."""
        if self.checkpoint_dir is None:
            return False
        checkpoint = load_latest(self.checkpoint_dir, device=self.device)
        if checkpoint is None:
            return False
        state = checkpoint.state
        dense = copy.deepcopy(self.model)
        dense.load_state_dict(load_file(str(self.checkpoint_dir / DENSE_WEIGHTS)))
        self.dense_model = self._frozen_copy(dense)
        resize_to_shapes(self.model, state["shapes"])
        self.model.to(self.device)
        self.model.load_state_dict(checkpoint.model_state)
        self.masks = checkpoint.masks
        self.counters = _Counters(**state["counters"])
        self.started = time.perf_counter()
        self.dense_metric = state["dense_metric"]
        self.criterion = state["criterion"]
        self.probe = state["probe"]
        if state["controller"] is not None:
            self.controller_state = ControllerState(**state["controller"])
        self.next_target = state["next_target"]
        self.target = state["target"]
        self.best_within = state["best_within"]
        self.stop_reason = state["stop_reason"]
        self.finished = state["finished"]
        self.reports = [StepReport(**r) for r in state["reports"]]
        self.plan = SparsityPlan(**state["plan"])
        if checkpoint.optimizer_state is not None:
            self.optimizer = self._new_optimizer(self.spec.finetune.lr)
            self.optimizer.load_state_dict(checkpoint.optimizer_state)
        return True

    # -------------------------------------------------------------- the phases
    def baseline(self, *, pretrain: bool) -> None:
        self._phase("baseline")
        start = time.perf_counter()
        finetune = self.spec.finetune
        loss = math.nan
        if pretrain and finetune.pretrain_epochs > 0:
            lr = finetune.pretrain_lr or finetune.lr
            self.optimizer = self._new_optimizer(lr)
            epochs = finetune.pretrain_epochs
            loss = self._train(
                epochs,
                lr_at=lambda i: cosine_lr(base=lr, epoch=i, epochs=epochs),
                count=False,
            )
        self.dense_metric, val_loss = self._evaluate()
        self.dense_model = self._frozen_copy(self.model)
        self.plan.dense_params = count_params(self.model)
        if self.checkpoint_dir is not None:
            self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
            dense_state = {
                k: v.detach().contiguous().cpu() for k, v in self.model.state_dict().items()
            }
            save_file(dense_state, str(self.checkpoint_dir / DENSE_WEIGHTS))
        self._plan_layers()
        self.optimizer = self._new_optimizer(finetune.lr)
        if self.spec.prune.schedule.kind == "adaptive":
            self.controller_state = AdaptiveController.initial_state(
                target=self.target, steps=self.spec.prune.schedule.steps
            )
            self.next_target = self.controller.first_sparsity(self.controller_state)
        self._report(
            target=0.0,
            metric=self.dense_metric,
            loss=val_loss if math.isnan(loss) else loss,
            decision="baseline",
            seconds=time.perf_counter() - start,
            epochs=0,
            phases={},
        )
        self._checkpoint()

    def _plan_layers(self) -> None:
        """Check the target can be met, then probe layer sensitivities and criteria as needed.

        Sensitivities come first so that the criterion probe prunes exactly as the run will;
        with `criterion: auto` they are measured with magnitude scores.
        """
        prune_spec = self.spec.prune
        nm = parse_nm(prune_spec.granularity)
        if nm is not None:
            reachable = nm_reachable(prunable_parameters(self.model), n=nm[0], m=nm[1])
            if reachable <= 0.0:
                raise SpecInvalid(
                    f"granularity {prune_spec.granularity!r}: no prunable layer has an input "
                    f"dimension divisible by {nm[1]}"
                )
            # layers that cannot take the pattern stay dense, so the target is what the rest give
            self.target = min(self.target, reachable)
        if prune_spec.granularity == "channel":
            self._check_channels_removable()
        if prune_spec.scope == "sensitivity" or nm is not None:
            criterion = "magnitude" if prune_spec.criterion == "auto" else self.criterion
            scores = make_importance(criterion, prune_spec)(self._scoring_context())
            sensitivity = layer_sensitivity(
                self.model, scores=scores, spec=prune_spec, evaluate=self._evaluate
            )
            self.plan.sensitivity = sensitivity
            shapes = {name: list(p.shape) for name, p in prunable_parameters(self.model).items()}
            fixed = set(nm_incompatible(shapes, nm[1])) if nm is not None else set()
            self.plan.layer_order = sorted(
                (name for name in sensitivity if name not in fixed), key=sensitivity.__getitem__
            )
        if prune_spec.criterion == "auto":
            self._phase("scoring")
            outcome: ProbeOutcome = probe_criteria(
                self._scoring_context(),
                spec=prune_spec,
                plan=self.plan,
                evaluate=self._evaluate,
                example_inputs=self.example,
            )
            self.criterion = outcome.criterion
            self.probe = {f"loss.{k}": v for k, v in outcome.losses.items()} | {
                f"metric.{k}": v for k, v in outcome.metrics.items()
            }

    def _check_channels_removable(self) -> None:
        """Refuse a channel job whose parameter target is out of reach, naming what blocks it."""
        reach = channel_reach(
            self.model,
            example_inputs=self.example,
            round_to=self.spec.prune.round_to,
            dense_params=self.plan.dense_params or count_params(self.model),
        )
        problem = reach.refusal(self.target, round_to=self.spec.prune.round_to)
        if problem is not None:
            raise SpecInvalid(problem)

    def _target_for(self, step: int) -> float:
        schedule = self.spec.prune.schedule
        if schedule.kind == "adaptive":
            return self.next_target
        return fixed_schedule(schedule.kind, final=self.target, steps=schedule.steps)(step)

    def prune_step(self) -> bool:
        """Take one step; return False when the pruning phase is over."""
        prune_spec = self.spec.prune
        adaptive = prune_spec.schedule.kind == "adaptive"
        limit = {"adaptive": 3 * prune_spec.schedule.steps, "oneshot": 1}.get(
            prune_spec.schedule.kind, prune_spec.schedule.steps
        )
        if self.counters.step >= limit:
            self.stop_reason = "step_limit" if adaptive else "schedule_done"
            return False
        reason = self._budget_left()
        if reason is not None:
            self.stop_reason = reason
            return False
        self.counters.step += 1
        target = self._target_for(self.counters.step)
        phases: dict[str, float] = {}
        start = time.perf_counter()
        snapshot = self._snapshot() if adaptive else None

        self._phase("scoring")
        scores = self._importance()(self._scoring_context())
        phases["scoring"] = time.perf_counter() - start
        mark = time.perf_counter()
        self.masks = sparsify(
            self.model,
            scores=scores,
            target=target,
            spec=prune_spec,
            masks=self.masks,
            plan=self.plan,
            example_inputs=self.example,
        )
        del scores
        if prune_spec.granularity == "channel":
            self.optimizer = self._new_optimizer(self.spec.finetune.lr)
        phases["masking"] = time.perf_counter() - mark

        self._phase("finetuning")
        mark = time.perf_counter()
        epochs_before = self.counters.finetune_epochs
        loss = self._train(self.spec.finetune.epochs_per_step, lr_at=None)
        phases["finetuning"] = time.perf_counter() - mark
        mark = time.perf_counter()
        metric, val_loss = self._evaluate()
        if not math.isfinite(val_loss):
            raise TrainingDiverged(
                f"validation loss became {val_loss} at step {self.counters.step}"
            )
        phases["evaluation"] = time.perf_counter() - mark
        drop = self.dense_metric - metric

        decision: Decision = "scheduled"
        done = self.counters.step >= limit
        if adaptive:
            assert self.controller_state is not None
            # The controller plans in requested sparsities: the measured one differs by count
            # rounding, floors or channel widths, and chasing that gap would repeat the step.
            verdict = self.controller.decide(self.controller_state, sparsity=target, drop=drop)
            decision = verdict.verdict
            self.controller_state = verdict.state
            self.next_target = verdict.next_sparsity
            done = verdict.done
            if decision == "rollback":
                self._report(
                    target=target,
                    metric=metric,
                    loss=val_loss,
                    decision=decision,
                    seconds=time.perf_counter() - start,
                    epochs=self.counters.finetune_epochs - epochs_before,
                    phases=phases,
                )
                assert snapshot is not None
                self._load_snapshot(snapshot)
                if done:
                    self.stop_reason = "no_headroom"
                self._checkpoint()
                return not done
            if done:
                reached = target >= self.target - 1e-9
                self.stop_reason = "target_reached" if reached else "no_headroom"
        elif done:
            self.stop_reason = "schedule_done"
        self._report(
            target=target,
            metric=metric,
            loss=val_loss if math.isnan(loss) else loss,
            decision=decision,
            seconds=time.perf_counter() - start,
            epochs=self.counters.finetune_epochs - epochs_before,
            phases=phases,
        )
        self._checkpoint()
        return not done

    def _snapshot(self) -> dict[str, Any]:
        """The state before a step, kept on the CPU; a rollback restores it."""
        assert self.optimizer is not None
        optimizer_state = self.optimizer.state_dict()
        return {
            "model": copy.deepcopy(self.model).cpu(),
            "masks": {k: v.cpu() for k, v in self.masks.items()},
            "optimizer": {
                "state": {
                    i: {k: v.cpu() if isinstance(v, Tensor) else v for k, v in entry.items()}
                    for i, entry in optimizer_state["state"].items()
                },
                "param_groups": copy.deepcopy(optimizer_state["param_groups"]),
            },
            "plan": copy.deepcopy(self.plan),
        }

    def _load_snapshot(self, snapshot: dict[str, Any]) -> None:
        self.model = snapshot["model"].to(self.device)
        self.masks = {k: v.to(self.device) for k, v in snapshot["masks"].items()}
        self.plan = snapshot["plan"]
        self.optimizer = self._new_optimizer(self.spec.finetune.lr)
        self.optimizer.load_state_dict(snapshot["optimizer"])

    def final(self) -> None:
        start = time.perf_counter()
        self._phase("finetuning")
        finetune = self.spec.finetune
        epochs = min(
            finetune.final_epochs, self.spec.budget.max_epochs - self.counters.finetune_epochs
        )
        loss = math.nan
        if epochs > 0 and self.stop_reason != "max_runtime":
            self.optimizer = self._new_optimizer(finetune.lr)
            before = self.counters.finetune_epochs
            loss = self._train(
                epochs, lr_at=lambda i: cosine_lr(base=finetune.lr, epoch=i, epochs=epochs)
            )
            epochs = self.counters.finetune_epochs - before
        metric, val_loss = self._evaluate()
        self.counters.step += 1
        # the model is at the last accepted step's sparsity; rolled-back targets do not count
        accepted = [r for r in self.reports if r.decision not in ("rollback", "final")]
        target = accepted[-1].target_sparsity if accepted else 0.0
        self._report(
            target=target,
            metric=metric,
            loss=val_loss if math.isnan(loss) else loss,
            decision="final",
            seconds=time.perf_counter() - start,
            epochs=max(epochs, 0),
            phases={"finetuning": time.perf_counter() - start},
        )
        self.finished = True
        self._checkpoint()

    def result(self) -> PruneResult:
        last = self.reports[-1]
        _, per_layer = model_sparsity(self.model, spec=self.spec.prune, plan=self.plan)
        return PruneResult(
            criterion=self.criterion,
            dense_metric=self.dense_metric,
            metric=last.metric,
            sparsity=last.sparsity,
            best_sparsity_within_tolerance=self.best_within,
            within_tolerance=self._within(last.metric),
            stop_reason=self.stop_reason or "schedule_done",
            epochs=self.counters.finetune_epochs,
            seconds=self._elapsed(),
            steps=list(self.reports),
            probe=dict(self.probe),
            layer_sparsity=per_layer,
        )


def prune(
    model: nn.Module,
    data: TaskData,
    spec: JobSpec,
    *,
    device: str | torch.device = "cpu",
    checkpoint_dir: Path | None = None,
    resume: bool = False,
    on_step: StepCallback | None = None,
    on_phase: PhaseCallback | None = None,
    on_checkpoint: CheckpointCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> PruneOutcome:
    """Run the adaptive pruning loop of `spec` on `model` for the task `data`.

    Args:
        model: the dense model, freshly built; trained first when `spec.model.weights` is None.
        data: the task's splits; validation decides, test is left to the caller.
        spec: the job spec (pruning method, fine-tuning, budget, seed).
        device: where to run; masks and scores stay there.
        checkpoint_dir: a checkpoint is written there after every step (None: no checkpoints).
        resume: continue from the newest checkpoint in `checkpoint_dir` when there is one.
        on_step: receives every StepReport as it happens (not the replayed ones on resume).
        on_phase: receives "baseline", "scoring", "finetuning" as the run moves through them.
        on_checkpoint: receives each checkpoint directory after it is complete.
        should_stop: polled between batches; True raises PruneCancelled.

    Returns:
        The pruned model (masks applied), the dense model and the PruneResult.
    """
    if resume and checkpoint_dir is None:
        raise ValueError("resume=True needs a checkpoint_dir")
    torch.manual_seed(spec.seed)
    run = _Run(
        model,
        data,
        spec,
        device=torch.device(device),
        checkpoint_dir=checkpoint_dir,
        on_step=on_step,
        on_phase=on_phase,
        on_checkpoint=on_checkpoint,
        should_stop=should_stop,
    )
    if not (resume and run._restore()):
        run.baseline(pretrain=spec.model.weights is None)
    while not run.finished and run.stop_reason is None and run.prune_step():
        pass
    if not run.finished:
        run.final()
    run.model.eval()
    return PruneOutcome(
        result=run.result(), model=run.model, dense_model=run.dense_model, masks=run.masks
    )
