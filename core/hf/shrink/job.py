"""A width or depth job: dense metric, one cut with calibration from the train split, recovery
fine-tuning (distillation from the dense model with `finetune.distill`), the `model/` artifact.

Steps reported: 0 the dense baseline, 1 the cut (metric straight after it), 2 the recovered
model. A checkpoint follows the cut and every recovery epoch (the pruned config, weights and
optimizer), so a resumed job continues from its last epoch and ends with the same weights.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from core import artifact
from core.checkpoint import load_latest, save_checkpoint
from core.data import TaskData
from core.errors import PruneCancelled, TrainingDiverged
from core.finetune import (
    Distillation,
    batches,
    cosine_lr,
    epoch_generator,
    evaluate,
    to_tensors,
    train_epoch,
)
from core.granularity import make_granularity
from core.granularity.shrink import ShrinkGranularity
from core.hf.adapter import HFAdapter
from core.hf.distill_loss import DistillLoss, layer_pairs
from core.hf.export import recipe
from core.hf.shrink.families import family_of
from core.hf.shrink.generation import generation_speed
from core.job import JobOutput, metric_of
from core.loop import CheckpointCallback, PhaseCallback, PruneOutcome
from core.metrics import make_metric, worse_by
from core.report import Decision, PruneResult, StepCallback, StepReport, StopReason
from core.spec import JobSpec

_CALIBRATION_EPOCH = 10_000_000  # generator offset for the calibration draw, apart from epochs
# a parameter target counts as met within this many points (widths come in rounded steps)
TARGET_TOLERANCE = 0.05
GENERATE_NEW_TOKENS = 32


@dataclass
class ShrinkState:
    """What a checkpoint carries besides tensors: reports, dense figures, the cut's details,
    the pruned config and how far recovery got."""

    dense_metric: float = math.nan
    reports: list[StepReport] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    epochs_done: int = 0
    start_metric: float = math.nan
    elapsed: float = 0.0
    stop_reason: StopReason | None = None

    def encode(self) -> dict[str, Any]:
        return {
            "dense_metric": self.dense_metric,
            "reports": [report.to_dict() for report in self.reports],
            "details": self.details,
            "config": self.config,
            "epochs_done": self.epochs_done,
            "start_metric": self.start_metric,
            "elapsed": self.elapsed,
            "stop_reason": self.stop_reason,
        }

    @classmethod
    def decode(cls, data: dict[str, Any]) -> ShrinkState:
        return cls(
            dense_metric=float(data["dense_metric"]),
            reports=[StepReport.model_validate(report) for report in data["reports"]],
            details=dict(data["details"]),
            config=dict(data["config"]),
            epochs_done=int(data["epochs_done"]),
            start_metric=float(data["start_metric"]),
            elapsed=float(data["elapsed"]),
            stop_reason=data.get("stop_reason"),
        )


def params_of(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


def wrap(model: nn.Module, like: HFAdapter) -> HFAdapter:
    """`model` behind the engine's interface, as `like` wraps its own."""
    excluded = {name.removeprefix("hf."): why for name, why in like.prune_excluded.items()}
    return HFAdapter(
        model,
        kind=like.kind,
        excluded=excluded,
        forward_kwargs=like.forward_kwargs,
        source=like.source,
    )


class ShrinkRun:
    """One width or depth job's working context (`run_shrink` is its only user)."""

    def __init__(
        self,
        spec: JobSpec,
        *,
        dense: HFAdapter,
        data: TaskData,
        device: torch.device,
        checkpoint_dir: Path,
        on_step: StepCallback | None,
        on_phase: PhaseCallback | None,
        on_checkpoint: CheckpointCallback | None,
        should_stop: Callable[[], bool] | None,
    ) -> None:
        family_of(dense.hf)  # an unsupported model is refused before anything runs
        self.spec = spec
        self.device = device
        self.dense = dense.to(device).eval()
        self.model: HFAdapter = dense
        self.checkpoint_dir = checkpoint_dir
        self.on_step, self.on_phase = on_step, on_phase
        self.on_checkpoint, self.should_stop = on_checkpoint, should_stop
        self.x_train, self.y_train = to_tensors(data.x_train, data.y_train, device=device)
        self.x_val, self.y_val = to_tensors(data.x_val, data.y_val, device=device)
        self.metric = make_metric(spec.task.metric)
        granularity = make_granularity(spec.prune.granularity)
        assert isinstance(granularity, ShrinkGranularity)
        self.granularity = granularity
        self.state = ShrinkState()
        self.optimizer: torch.optim.Optimizer | None = None
        self.started = time.perf_counter()

    def elapsed(self) -> float:
        return self.state.elapsed + time.perf_counter() - self.started

    def out_of_time(self) -> bool:
        return self.elapsed() >= self.spec.budget.max_runtime_s

    def check(self) -> None:
        if self.should_stop is not None and self.should_stop():
            raise PruneCancelled("stop requested")

    def phase(self, name: str) -> None:
        if self.on_phase is not None:
            self.on_phase(name)

    def evaluate(self, model: nn.Module) -> tuple[float, float]:
        result = evaluate(model, x=self.x_val, y=self.y_val, metric=self.metric)
        return result.metric, result.loss

    def removed(self) -> float:
        return 1.0 - params_of(self.model) / params_of(self.dense)

    def drop(self, metric: float) -> float:
        return worse_by(self.metric, reference=self.state.dense_metric, value=metric)

    def report(
        self, *, metric: float, loss: float, decision: Decision, seconds: float, epochs: int
    ) -> None:
        report = StepReport(
            step=len(self.state.reports),
            target_sparsity=0.0 if decision == "baseline" else round(self.spec.prune.target, 6),
            sparsity=0.0 if decision == "baseline" else self.removed(),
            metric=metric,
            loss=loss,
            decision=decision,
            seconds=seconds,
            epochs=epochs,
        )
        self.state.reports.append(report)
        if self.on_step is not None:
            self.on_step(report)

    def new_optimizer(self) -> torch.optim.Optimizer:
        finetune = self.spec.finetune
        return torch.optim.AdamW(
            self.model.parameters(), lr=finetune.lr, weight_decay=finetune.weight_decay
        )

    def checkpoint(self) -> None:
        self.state.elapsed = self.elapsed()
        self.started = time.perf_counter()
        path = save_checkpoint(
            self.checkpoint_dir,
            step=len(self.state.reports) + self.state.epochs_done,
            model=self.model,
            masks={},
            optimizer=self.optimizer,
            state=self.state.encode(),
        )
        if self.on_checkpoint is not None:
            self.on_checkpoint(path)

    def restore(self) -> bool:
        """Continue from the newest checkpoint, if there is one."""
        found = load_latest(self.checkpoint_dir, device=self.device)
        if found is None:
            return False
        self.state = ShrinkState.decode(found.state)
        hf: Any = self.dense.hf
        config = type(hf.config).from_dict(copy.deepcopy(self.state.config))
        model = type(hf)(config)
        self.model = wrap(model, self.dense).to(self.device)
        self.model.load_state_dict(found.model_state)
        self.optimizer = self.new_optimizer()
        if found.optimizer_state is not None:
            self.optimizer.load_state_dict(found.optimizer_state)
        self.started = time.perf_counter()
        return True

    # ------------------------------------------------------------------ phases
    def baseline(self) -> None:
        self.phase("baseline")
        self.check()
        start = time.perf_counter()
        metric, loss = self.evaluate(self.dense)
        if not math.isfinite(loss):
            raise TrainingDiverged(f"the dense model's validation loss is {loss}")
        self.state.dense_metric = metric
        self.report(
            metric=metric,
            loss=loss,
            decision="baseline",
            seconds=time.perf_counter() - start,
            epochs=0,
        )

    def calibration(self) -> list[Tensor]:
        """Up to `calibration_samples` training sequences, in `batch_size` batches."""
        generator = epoch_generator(seed=self.spec.seed, epoch=_CALIBRATION_EPOCH)
        chosen: list[Tensor] = []
        left = self.spec.prune.calibration_samples
        for xb, _ in batches(
            self.x_train,
            self.y_train,
            batch_size=self.spec.finetune.batch_size,
            generator=generator,
        ):
            chosen.append(xb[:left])
            left -= chosen[-1].shape[0]
            if left <= 0:
                break
        return chosen

    def cut(self) -> None:
        self.phase("scoring")
        self.check()
        start = time.perf_counter()
        shrunk = self.granularity.shrink(
            self.dense.hf,
            spec=self.spec.prune,
            batches=self.calibration(),
            forward=self.checked_forward,
            device=self.device,
        )
        self.model = wrap(shrunk.model, self.dense).to(self.device)
        hf: Any = shrunk.model
        self.state.config = hf.config.to_dict()
        self.state.details = shrunk.details
        metric, loss = self.evaluate(self.model)
        self.state.start_metric = metric
        self.report(
            metric=metric,
            loss=loss,
            decision="scheduled",
            seconds=time.perf_counter() - start,
            epochs=0,
        )
        self.optimizer = self.new_optimizer()
        self.checkpoint()

    def checked_forward(self, batch: Tensor) -> Tensor:
        """The dense model on one calibration batch, after checking for a stop request."""
        self.check()
        logits: Tensor = self.dense(batch)
        return logits

    def distillation(self) -> Distillation | None:
        """With `finetune.distill`: the loss of `core.hf.distill_loss` (logits, and block
        outputs when `distill_hidden_weight` > 0, each kept block against the teacher block
        it was: a depth-pruned student passes their indices)."""
        finetune = self.spec.finetune
        if not finetune.distill:
            return None
        kept = self.state.details.get("kept_blocks")
        loss = DistillLoss(
            temperature=finetune.distill_temperature,
            alpha=finetune.distill_weight,
            hidden_weight=finetune.distill_hidden_weight,
            layers=layer_pairs(
                self.model,
                self.dense,
                hidden_weight=finetune.distill_hidden_weight,
                layer_map=kept,
            ),
        )
        self.state.details["distill_hidden_skipped"] = loss.layers.skipped

        def batch_loss(model: nn.Module, teacher: nn.Module, batch: Tensor, y: Tensor) -> Tensor:
            return loss(model, teacher, batch, y).total

        return Distillation(
            teacher=self.dense,
            temperature=finetune.distill_temperature,
            weight=finetune.distill_weight,
            batch_loss=batch_loss,
        )

    def epochs(self) -> int:
        finetune, budget = self.spec.finetune, self.spec.budget
        return min(finetune.final_epochs, budget.max_epochs)

    def recover(self) -> None:
        """Fine-tune the pruned model with a cosine decay, one checkpoint per epoch."""
        self.phase("finetuning")
        start = time.perf_counter()
        total = self.epochs()
        assert self.optimizer is not None
        loss = math.nan
        lr = self.spec.finetune.lr
        distill = self.distillation()
        tokens_per_epoch = int(self.x_train[:, 1].sum())
        for epoch in range(self.state.epochs_done, total):
            self.check()
            if self.out_of_time():
                self.state.stop_reason = "max_runtime"
                break
            epoch_start = time.perf_counter()
            torch.manual_seed(self.spec.seed * 1_000_003 + epoch)
            loss = train_epoch(
                self.model,
                x=self.x_train,
                y=self.y_train,
                optimizer=self.optimizer,
                batch_size=self.spec.finetune.batch_size,
                generator=epoch_generator(seed=self.spec.seed, epoch=epoch),
                distill=distill,
                should_stop=self.should_stop,
                out_of_time=self.out_of_time,
                lr_at=cosine_lr(base=lr, epoch=epoch, epochs=total),
            )
            self.state.epochs_done = epoch + 1
            recovery = self.state.details.setdefault(
                "recovery", {"distill": distill is not None, "seconds": 0.0, "tokens": 0}
            )
            recovery["seconds"] += time.perf_counter() - epoch_start
            recovery["tokens"] += tokens_per_epoch
            recovery["tokens_per_s"] = recovery["tokens"] / max(recovery["seconds"], 1e-9)
            self.checkpoint()
        metric, val_loss = self.evaluate(self.model)
        if not math.isfinite(val_loss):
            raise TrainingDiverged(f"validation loss became {val_loss} during recovery")
        self.report(
            metric=metric,
            loss=val_loss if math.isnan(loss) else loss,
            decision="final",
            seconds=time.perf_counter() - start,
            epochs=self.state.epochs_done,
        )

    def result(self) -> PruneResult:
        last = self.state.reports[-1]
        target = self.spec.prune.target
        within = self.drop(last.metric) <= self.spec.prune.max_metric_drop
        removed = self.removed()
        reasons = []
        if abs(removed - target) > TARGET_TOLERANCE:
            reasons.append(
                f"{removed:.3f} of the parameters removed, target {target:g}: the nearest the "
                "rounded widths or whole blocks allow"
            )
        if not within:
            reasons.append(
                f"the metric is {self.drop(last.metric):.4g} worse than dense, past "
                f"max_metric_drop {self.spec.prune.max_metric_drop:g}"
            )
        curve = [
            {"sparsity": report.sparsity, "metric": report.metric} for report in self.state.reports
        ]
        return PruneResult(
            criterion=str(self.state.details.get("mode", self.spec.prune.granularity)),
            dense_metric=self.state.dense_metric,
            metric=last.metric,
            sparsity=removed,
            best_sparsity_within_tolerance=removed if within else 0.0,
            within_tolerance=within,
            stop_reason=self.state.stop_reason or "schedule_done",
            epochs=self.state.epochs_done,
            seconds=self.elapsed(),
            steps=list(self.state.reports),
            layer_sparsity={},
            target_sparsity=target,
            target_reached=not reasons,
            target_missed_reason="; ".join(reasons) or None,
            curve=curve,
        )


def _generation(run: ShrinkRun, data: TaskData) -> dict[str, Any] | None:
    """Tokens/s of `generate` for a causal LM (one validation prompt), timed for up to
    `export.latency_seconds`; None for other models, with no latency time asked for, or when
    the budget has too little time left."""
    hf: Any = run.model.hf
    if not callable(getattr(hf, "can_generate", None)) or not hf.can_generate():
        return None
    seconds = run.spec.export.latency_seconds
    if seconds <= 0 or run.spec.budget.max_runtime_s - run.elapsed() < 2 * seconds:
        return None
    row = torch.as_tensor(data.x_val[:1], device=run.device)
    length = max(1, int(row[0, 1].sum()) // 2)
    prompt = row[:, 0, :length]
    return generation_speed(
        run.dense.hf,
        run.model.hf,
        prompt=prompt,
        new_tokens=GENERATE_NEW_TOKENS,
        seconds=seconds,
    )


def _steps(run: ShrinkRun) -> Iterator[Callable[[], None]]:
    if not run.state.reports:
        yield run.baseline
    if len(run.state.reports) < 2:
        yield run.cut
    if len(run.state.reports) < 3:
        yield run.recover


def run_shrink(
    spec: JobSpec,
    *,
    model: HFAdapter,
    data: TaskData,
    out_dir: Path,
    work_dir: Path,
    device: torch.device,
    resume: bool = False,
    on_step: StepCallback | None = None,
    on_phase: PhaseCallback | None = None,
    on_checkpoint: CheckpointCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> JobOutput:
    """Run a width or depth job on the loaded Hugging Face model and export its artifact.

    Args:
        model: the dense model (as `core.job.prepare` loaded it); it stays the reference.
        resume: continue from the newest checkpoint in `work_dir/checkpoints`.
    """
    run = ShrinkRun(
        spec,
        dense=model,
        data=data,
        device=device,
        checkpoint_dir=work_dir / "checkpoints",
        on_step=on_step,
        on_phase=on_phase,
        on_checkpoint=on_checkpoint,
        should_stop=should_stop,
    )
    if resume:
        run.restore()
    for step in _steps(run):
        step()
    run.check()
    run.model.eval()
    result = run.result()
    run.phase("exporting")
    extra = {
        "shrink": {
            **run.state.details,
            "latency_sequence_length": int(data.x_val.shape[-1]),
            "generate": _generation(run, data),
        }
    }
    manifest = artifact.export(
        out_dir,
        model=run.model,
        dense_model=run.dense,
        result=result,
        spec=spec,
        architecture=recipe(run.model, input_shape=data.input_shape, num_classes=data.num_classes),
        data=data,
        evaluate=metric_of(spec.task.metric),
        device=str(device),
        time_left_s=spec.budget.max_runtime_s - run.elapsed(),
        extra=extra,
    )
    outcome = PruneOutcome(result=result, model=run.model, dense_model=run.dense, masks={})
    return JobOutput(outcome=outcome, manifest=manifest, artifact_dir=out_dir)
