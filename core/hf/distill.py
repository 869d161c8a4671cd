"""Recovery of a pruned Hugging Face student by distillation from its dense teacher.

`distill()` trains the student on the task's training text for a number of epochs with the loss
of `core.hf.distill_loss` (logits, optionally block outputs). After every epoch it checkpoints
the student, the optimizer and the epoch count (atomically, `core.checkpoint`); a run resumed
from the newest checkpoint shuffles, drops out and decays its learning rate exactly as the
uninterrupted run would, so it ends with the same weights. Cancel and the time budget are
checked every `check_every` batches. The teacher runs in eval mode without gradients, under
bf16 autocast on CUDA, on the student's device when it fits there.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from core.checkpoint import load_latest, save_checkpoint
from core.data import TaskData
from core.errors import CheckpointInvalid, PruneCancelled, TrainingDiverged
from core.finetune import batches, cosine_lr, epoch_generator, to_tensors
from core.hf.distill_loss import DistillLoss, layer_pairs, unpack
from core.precision import autocast
from core.spec import JobSpec

DistillStop = Literal["epochs_done", "max_runtime"]
# free device memory a teacher must leave after moving there: activations and the student's
# optimizer still need room
_TEACHER_HEADROOM = 1.5


@dataclass(frozen=True)
class DistillSettings:
    """How the student is trained.

    Args:
        epochs: passes over the training split.
        lr: AdamW peak learning rate, decayed by a cosine to 0 over `epochs`.
        batch_size: examples per batch.
        temperature: T of the logit term.
        alpha: weight of the logit term; the task loss gets 1 - alpha.
        hidden_weight: weight of the hidden-state term (0: logits only).
        weight_decay: AdamW weight decay.
        seed: seeds the shuffles and dropout, per epoch.
        check_every: batches between checks of cancel, time budget and a diverged loss.
        max_grad_norm: gradient-norm clipping (None: none).
    """

    epochs: int
    lr: float
    batch_size: int
    temperature: float = 2.0
    alpha: float = 0.5
    hidden_weight: float = 0.0
    weight_decay: float = 0.0
    seed: int = 0
    check_every: int = 4
    max_grad_norm: float | None = 1.0

    def __post_init__(self) -> None:
        if self.epochs < 0:
            raise ValueError(f"epochs={self.epochs!r} must be non-negative")
        if not self.lr > 0:
            raise ValueError(f"lr={self.lr!r} must be positive")
        if self.batch_size < 1 or self.check_every < 1:
            raise ValueError(
                f"batch_size={self.batch_size!r} and check_every={self.check_every!r} "
                "must be positive"
            )
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            raise ValueError(f"max_grad_norm={self.max_grad_norm!r} must be positive or None")
        DistillLoss(
            temperature=self.temperature, alpha=self.alpha, hidden_weight=self.hidden_weight
        )

    @classmethod
    def from_spec(cls, spec: JobSpec, *, epochs: int | None = None) -> DistillSettings:
        """The settings of a job: `finetune.lr`, `batch_size`, `weight_decay`,
        `distill_temperature`, `distill_weight` (alpha), `distill_hidden_weight` and `seed`;
        `epochs` defaults to `finetune.final_epochs`, capped by `budget.max_epochs`."""
        finetune = spec.finetune
        count = finetune.final_epochs if epochs is None else epochs
        return cls(
            epochs=min(count, spec.budget.max_epochs),
            lr=finetune.lr,
            batch_size=finetune.batch_size,
            temperature=finetune.distill_temperature,
            alpha=finetune.distill_weight,
            hidden_weight=finetune.distill_hidden_weight,
            weight_decay=finetune.weight_decay,
            seed=spec.seed,
        )


@dataclass(frozen=True)
class DistillEpoch:
    """One epoch's mean losses over its batches, its tokens and seconds.

    `complete` is False for an epoch the time budget cut short.
    """

    epoch: int
    loss: float
    task_loss: float
    kl: float
    hidden: float
    batches: int
    tokens: int
    seconds: float
    complete: bool = True


@dataclass(frozen=True)
class DistillResult:
    """What a distillation did: epochs run (over every attempt), why it stopped, throughput.

    `tokens_per_s` counts real (unpadded) training tokens per second of distillation;
    `hidden_skipped` says why the hidden-state term was off although asked for;
    `resumed_at` is the epoch count read from a checkpoint (None: started afresh).
    """

    epochs: int
    stop_reason: DistillStop
    history: list[DistillEpoch] = field(default_factory=list)
    seconds: float = 0.0
    tokens: int = 0
    tokens_per_s: float = 0.0
    hidden_skipped: str | None = None
    resumed_at: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Progress:
    epochs_done: int = 0
    seconds: float = 0.0
    tokens: int = 0
    finished: bool = False
    stop_reason: DistillStop = "epochs_done"
    history: list[DistillEpoch] = field(default_factory=list)

    def encode(self, settings: DistillSettings) -> dict[str, Any]:
        return {
            "kind": "distill",
            "settings": asdict(settings),
            "epochs_done": self.epochs_done,
            "seconds": self.seconds,
            "tokens": self.tokens,
            "finished": self.finished,
            "stop_reason": self.stop_reason,
            "history": [asdict(epoch) for epoch in self.history],
        }

    @classmethod
    def decode(cls, state: dict[str, Any], settings: DistillSettings) -> _Progress:
        if state.get("kind") != "distill" or state.get("settings") != asdict(settings):
            raise CheckpointInvalid(
                "the checkpoint was not written by a distillation with these settings "
                f"({state.get('settings')!r} != {asdict(settings)!r})"
            )
        return cls(
            epochs_done=int(state["epochs_done"]),
            seconds=float(state["seconds"]),
            tokens=int(state["tokens"]),
            finished=bool(state["finished"]),
            stop_reason=state["stop_reason"],
            history=[DistillEpoch(**epoch) for epoch in state["history"]],
        )


def _parameter_bytes(model: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


def teacher_device(teacher: nn.Module, device: torch.device) -> torch.device:
    """Where the teacher runs: `device` when it is already there, when `device` is not CUDA,
    or when CUDA has room for it with headroom; otherwise where it is now."""
    current = next(teacher.parameters()).device
    if current == device or device.type != "cuda":
        return device
    free, _ = torch.cuda.mem_get_info(device)
    return device if free > _TEACHER_HEADROOM * _parameter_bytes(teacher) else current


def _restore(
    student: nn.Module, checkpoint_dir: Path, device: torch.device, settings: DistillSettings
) -> tuple[_Progress, dict[str, Any] | None] | None:
    checkpoint = load_latest(checkpoint_dir, device=device)
    if checkpoint is None:
        return None
    progress = _Progress.decode(checkpoint.state, settings)
    try:
        student.load_state_dict(checkpoint.model_state)
    except RuntimeError as error:
        raise CheckpointInvalid(
            f"checkpoint {checkpoint.path.name} does not fit the student: {error}"
        ) from error
    return progress, checkpoint.optimizer_state


def distill(
    student: nn.Module,
    teacher: nn.Module,
    data: TaskData,
    *,
    settings: DistillSettings,
    device: str | torch.device = "cpu",
    layer_map: Sequence[int] | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_epoch: Callable[[DistillEpoch], None] | None = None,
    checkpoint_dir: Path | None = None,
    resume: bool = False,
    time_left_s: float | None = None,
) -> DistillResult:
    """Distil `teacher` into `student` on `data`'s training split (in place).

    Args:
        student: the pruned model (an `HFAdapter`: packed (N, 2, L) ids and mask in, logits
            out); trained in place, returned in eval mode.
        teacher: the dense model, same interface; never trained. It is moved to `device` for
            the run when it fits there and moved back afterwards.
        data: the task; `x_train` packed ids and masks, `y_train` labels or next-token targets.
        settings: epochs, learning rate, loss weights (`DistillSettings.from_spec`).
        device: where the student trains.
        layer_map: for the hidden-state term, the teacher block index of each student block
            (a depth-pruned student's kept blocks); None pairs blocks one to one.
        should_stop: polled every `settings.check_every` batches; True raises PruneCancelled
            (the newest checkpoint stays, so the run resumes at the epoch after it).
        on_epoch: receives each epoch's figures after its checkpoint is written.
        checkpoint_dir: a checkpoint after every epoch goes there (None: none).
        resume: continue from the newest checkpoint in `checkpoint_dir`, if any.
        time_left_s: the most seconds the distillation may take, over resumed attempts too
            (their time is kept in the checkpoint); polled like `should_stop`. When spent, the
            epoch under way ends there and the run stops with stop_reason "max_runtime".

    Raises:
        PruneCancelled: `should_stop()` returned True.
        TrainingDiverged: the loss became NaN or infinite.
        CheckpointInvalid: the checkpoint was written with other settings or another student.
        ValueError: `layer_map` does not fit the student and teacher.
    """
    if resume and checkpoint_dir is None:
        raise ValueError("resume=True needs a checkpoint_dir")
    target = torch.device(device)
    student.to(target)
    loss_fn = DistillLoss(
        temperature=settings.temperature,
        alpha=settings.alpha,
        hidden_weight=settings.hidden_weight,
        layers=layer_pairs(
            student, teacher, hidden_weight=settings.hidden_weight, layer_map=layer_map
        ),
    )
    trainable = [p for p in student.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=settings.lr, weight_decay=settings.weight_decay)
    progress, resumed_at = _Progress(), None
    if resume and checkpoint_dir is not None:
        restored = _restore(student, checkpoint_dir, target, settings)
        if restored is not None:
            progress, optimizer_state = restored
            resumed_at = progress.epochs_done
            if optimizer_state is not None:
                optimizer.load_state_dict(optimizer_state)
    home, was_training = next(teacher.parameters()).device, teacher.training
    flags = [p.requires_grad for p in teacher.parameters()]
    try:
        teacher.eval().requires_grad_(False)
        teacher.to(teacher_device(teacher, target))
        if not progress.finished:
            _epochs(
                student,
                teacher,
                data,
                settings=settings,
                device=target,
                loss_fn=loss_fn,
                optimizer=optimizer,
                progress=progress,
                should_stop=should_stop,
                on_epoch=on_epoch,
                checkpoint_dir=checkpoint_dir,
                time_left_s=time_left_s,
            )
    finally:
        teacher.to(home).train(was_training)
        for param, flag in zip(teacher.parameters(), flags, strict=True):
            param.requires_grad_(flag)
    student.eval()
    return DistillResult(
        epochs=progress.epochs_done,
        stop_reason=progress.stop_reason,
        history=list(progress.history),
        seconds=progress.seconds,
        tokens=progress.tokens,
        tokens_per_s=progress.tokens / progress.seconds if progress.seconds > 0 else 0.0,
        hidden_skipped=loss_fn.layers.skipped,
        resumed_at=resumed_at,
    )


def _epochs(
    student: nn.Module,
    teacher: nn.Module,
    data: TaskData,
    *,
    settings: DistillSettings,
    device: torch.device,
    loss_fn: DistillLoss,
    optimizer: torch.optim.Optimizer,
    progress: _Progress,
    should_stop: Callable[[], bool] | None,
    on_epoch: Callable[[DistillEpoch], None] | None,
    checkpoint_dir: Path | None,
    time_left_s: float | None,
) -> None:
    x, y = to_tensors(data.x_train, data.y_train, device=device)
    trainable = [p for group in optimizer.param_groups for p in group["params"]]
    started, before = time.perf_counter(), progress.seconds

    def spent() -> float:
        return before + time.perf_counter() - started

    count = x.shape[0]
    while progress.epochs_done < settings.epochs:
        epoch = progress.epochs_done
        epoch_start = spent()
        lr_at = cosine_lr(base=settings.lr, epoch=epoch, epochs=settings.epochs)
        # dropout draws from a stream fixed by the epoch, so a resumed epoch repeats it
        torch.manual_seed(settings.seed * 1_000_003 + epoch)
        generator = epoch_generator(seed=settings.seed, epoch=epoch)
        student.train()
        sums = torch.zeros(4, device=device, dtype=torch.float64)
        tokens = torch.zeros((), device=device, dtype=torch.int64)
        seen, done, complete = 0, 0, True
        for xb, yb in batches(x, y, batch_size=settings.batch_size, generator=generator):
            if done % settings.check_every == 0:
                if should_stop is not None and should_stop():
                    raise PruneCancelled("stop requested")
                _check_finite(sums, done, epoch)
                if time_left_s is not None and done and spent() >= time_left_s:
                    complete = False
                    break
            for group in optimizer.param_groups:
                group["lr"] = lr_at(seen / count)
            with autocast(device):
                parts = loss_fn(student, teacher, xb, yb)
            optimizer.zero_grad(set_to_none=True)
            parts.total.backward()  # type: ignore[no-untyped-call]
            if settings.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(trainable, settings.max_grad_norm)
            optimizer.step()
            terms = torch.stack([parts.total.detach(), parts.task, parts.kl, parts.hidden])
            sums += terms.double()
            tokens += unpack(xb)[1].sum()
            seen += xb.shape[0]
            done += 1
        _check_finite(sums, done, epoch)
        means = (sums / max(done, 1)).tolist()
        record = DistillEpoch(
            epoch=epoch + 1,
            loss=means[0],
            task_loss=means[1],
            kl=means[2],
            hidden=means[3],
            batches=done,
            tokens=int(tokens),
            seconds=spent() - epoch_start,
            complete=complete,
        )
        progress.history.append(record)
        progress.epochs_done += 1
        progress.tokens += record.tokens
        if not complete or (time_left_s is not None and spent() >= time_left_s):
            progress.stop_reason = "max_runtime"
        progress.finished = progress.stop_reason == "max_runtime" or (
            progress.epochs_done >= settings.epochs
        )
        progress.seconds = spent()
        if checkpoint_dir is not None:
            save_checkpoint(
                checkpoint_dir,
                step=progress.epochs_done,
                model=student,
                masks={},
                optimizer=optimizer,
                state=progress.encode(settings),
            )
        if on_epoch is not None:
            on_epoch(record)
        if progress.finished:
            break
    progress.finished = True


def _check_finite(sums: Tensor, done: int, epoch: int) -> None:
    if done and not math.isfinite(float(sums[0])):
        raise TrainingDiverged(
            f"distillation loss became {float(sums[0])} in epoch {epoch + 1} by batch {done}"
        )
