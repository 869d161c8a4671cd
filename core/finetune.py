"""Training pieces: batching, a masked training epoch, evaluation and distillation."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.errors import PruneCancelled, TrainingDiverged
from core.losses import cross_entropy, cross_entropy_sum, scored
from core.metrics import Accuracy, Metric, batch_stats, metric_value
from core.precision import autocast

StopCheck = Callable[[], bool]


@dataclass(frozen=True)
class Evaluation:
    metric: float
    loss: float


BatchLoss = Callable[[nn.Module, nn.Module, Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class Distillation:
    """Soft-target distillation from the dense teacher (Hinton et al. 2015, arXiv 1503.02531).

    `batch_loss(student, teacher, x, y)`, when given, replaces `distillation_loss` (a Hugging
    Face model's loss masks by the attention mask and may add hidden states:
    `core.hf.distill_loss`).
    """

    teacher: nn.Module
    temperature: float
    weight: float
    batch_loss: BatchLoss | None = None


def to_tensors(x: np.ndarray, y: np.ndarray, *, device: torch.device) -> tuple[Tensor, Tensor]:
    """Move one split to `device`: int64 labels; features int64 when integral, else float32.

    Integer features are token ids or category codes: an embedding needs them as integers.
    """
    features = torch.float32 if x.dtype.kind not in "iu" else torch.int64
    return (
        torch.as_tensor(np.ascontiguousarray(x), dtype=features, device=device),
        torch.as_tensor(np.ascontiguousarray(y), dtype=torch.int64, device=device),
    )


def epoch_generator(*, seed: int, epoch: int) -> torch.Generator:
    """A CPU generator derived from (seed, epoch), so a resumed run shuffles exactly as before."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def batches(
    x: Tensor, y: Tensor, *, batch_size: int, generator: torch.Generator | None = None
) -> Iterator[tuple[Tensor, Tensor]]:
    """Yield (x, y) mini-batches; shuffled when a generator is given, in order otherwise.

    When shuffling (training), a final batch of a single example is merged into the one before.
    """
    count = x.shape[0]
    if generator is None:
        order = torch.arange(count, device=x.device)
    else:
        order = torch.randperm(count, generator=generator).to(x.device)
    starts = list(range(0, count, batch_size))
    if generator is not None and len(starts) > 1 and count - starts[-1] == 1:
        # a training batch of one breaks BatchNorm; the last example joins the batch before it
        starts.pop()
    for index, start in enumerate(starts):
        end = starts[index + 1] if index + 1 < len(starts) else count
        rows = order[start:end]
        yield x[rows], y[rows]


def distillation_loss(
    student: Tensor, teacher: Tensor, targets: Tensor, *, temperature: float, weight: float
) -> Tensor:
    """(1 - w) * CE(student, y) + w * T^2 * KL(softmax(teacher / T) || softmax(student / T)).

    Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network" (arXiv 1503.02531);
    the T^2 factor keeps the soft-target gradients on the scale of the hard-target ones. For
    token-level logits (a causal LM) the KL term is averaged over the scored positions.
    """
    hard = cross_entropy(student, targets)
    student_scored, _ = scored(student, targets)
    teacher_scored, _ = scored(teacher, targets)
    soft = F.kl_div(
        F.log_softmax(student_scored / temperature, dim=-1),
        F.log_softmax(teacher_scored / temperature, dim=-1),
        log_target=True,
        reduction="batchmean",
    )
    return (1.0 - weight) * hard + weight * temperature**2 * soft


def train_epoch(
    model: nn.Module,
    *,
    x: Tensor,
    y: Tensor,
    optimizer: torch.optim.Optimizer,
    batch_size: int,
    generator: torch.Generator,
    masks: Mapping[str, Tensor] | None = None,
    params: Mapping[str, nn.Parameter] | None = None,
    distill: Distillation | None = None,
    should_stop: StopCheck | None = None,
    out_of_time: StopCheck | None = None,
    lr_at: Callable[[float], float] | None = None,
) -> float:
    """One pass over (x, y); pruned weights are zeroed after every optimizer step.

    Gradients of pruned weights are zeroed before the step too, so optimizer moments never
    build up behind a mask. `lr_at(fraction_of_epoch_done)` sets the learning rate per batch.
    `out_of_time()` True between batches ends the epoch early (the runtime budget is spent).

    Returns:
        The mean training loss.

    Raises:
        TrainingDiverged: the loss became NaN or infinite.
        PruneCancelled: `should_stop()` returned True (checked between batches).
    """
    device = x.device
    model.train()
    total, seen = 0.0, 0
    masks = masks or {}
    masked: list[Tensor] = [params[name] for name in masks] if params else []
    # float copies once per epoch: one fused multiply per batch instead of one op per layer
    factors = [mask.to(param.dtype) for param, mask in zip(masked, masks.values(), strict=True)]
    count = x.shape[0]
    for xb, yb in batches(x, y, batch_size=batch_size, generator=generator):
        if should_stop is not None and should_stop():
            raise PruneCancelled("stop requested")
        if out_of_time is not None and seen and out_of_time():
            break
        if lr_at is not None:
            for group in optimizer.param_groups:
                group["lr"] = lr_at(seen / count)
        with autocast(device):
            if distill is not None and distill.batch_loss is not None:
                loss = distill.batch_loss(model, distill.teacher, xb, yb)
            elif distill is None:
                loss = cross_entropy(model(xb), yb)
            else:
                logits = model(xb)
                with torch.no_grad():
                    teacher_logits = distill.teacher(xb)
                loss = distillation_loss(
                    logits.float(),
                    teacher_logits.float(),
                    yb,
                    temperature=distill.temperature,
                    weight=distill.weight,
                )
        value = float(loss.detach())
        if not math.isfinite(value):
            raise TrainingDiverged(f"training loss became {value} at example {seen}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        if masked:
            with_grad = [
                (p.grad, f) for p, f in zip(masked, factors, strict=True) if p.grad is not None
            ]
            torch._foreach_mul_([g for g, _ in with_grad], [f for _, f in with_grad])
        optimizer.step()
        if masked:
            with torch.no_grad():
                torch._foreach_mul_(masked, factors)
        total += value * xb.shape[0]
        seen += xb.shape[0]
    return total / max(seen, 1)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    *,
    x: Tensor,
    y: Tensor,
    batch_size: int = 1024,
    metric: Metric | None = None,
) -> Evaluation:
    """The task metric (accuracy by default) and mean cross-entropy of `model` on (x, y).

    The loss is averaged over the examples, or over the scored token positions of token-level
    targets (see `core.losses`).
    """
    scorer = metric or Accuracy()
    was_training = model.training
    model.eval()
    stats: Tensor | None = None
    loss_sum, scored_count = 0.0, 0
    try:
        for xb, yb in batches(x, y, batch_size=batch_size):
            with autocast(x.device):
                logits = model(xb).float()
            batch_loss, batch_count = cross_entropy_sum(logits, yb)
            loss_sum += batch_loss
            scored_count += batch_count
            found = batch_stats(scorer, logits, yb)
            stats = found if stats is None else stats + found
    finally:
        model.train(was_training)
    return Evaluation(metric=metric_value(scorer, stats), loss=loss_sum / max(scored_count, 1))


def cosine_lr(*, base: float, epoch: int, epochs: int) -> Callable[[float], float]:
    """Cosine decay from `base` to 0 over `epochs` epochs (Loshchilov & Hutter 2017, SGDR).

    lr(t) = base * (1 + cos(pi * t / epochs)) / 2, with t the fractional epoch.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    return lambda done: base * (1.0 + math.cos(math.pi * (epoch + done) / epochs)) / 2.0
