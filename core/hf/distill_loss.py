"""The loss a pruned Hugging Face student learns from its dense teacher with.

    L = (1 - alpha) * task + alpha * T^2 * KL(softmax(z_t / T) || softmax(z_s / T))
        + hidden_weight * mean_pairs mean_tokens ||LN(h_s) - LN(h_t)||^2 / d

The logit term is Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network"
(arXiv 1503.02531); T^2 keeps the soft-target gradients on the scale of the hard-target ones.
For a causal LM it is taken per token and averaged over the real tokens (attention mask 1), so
padding never counts. The hidden-state term compares block outputs at mapped layers, as in
TinyBERT (Jiao et al. 2020, arXiv 1909.10351) and Minitron (Muralidharan et al. 2024, arXiv
2407.14679); LN is layer normalisation without parameters, so only the direction and spread of
each token's state are matched, not the scale that differs between a student and its teacher.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.finetune import BatchLoss
from core.hf.adapter import HFAdapter
from core.losses import cross_entropy
from core.oneshot.blocks import find_blocks
from core.spec import FinetuneSpec


@dataclass(frozen=True)
class LossParts:
    """The combined loss (with its graph) and its three terms, detached (summed on the device
    by the caller: reading a number per batch would wait for the GPU every batch)."""

    total: Tensor
    task: Tensor
    kl: Tensor
    hidden: Tensor


@dataclass(frozen=True)
class LayerPairs:
    """Which student block is compared with which teacher block; empty: no hidden term.

    `skipped` says why the hidden-state term is off although its weight is positive.
    """

    pairs: tuple[tuple[int, int], ...] = ()
    skipped: str | None = None


def unpack(batch: Tensor) -> tuple[Tensor, Tensor]:
    """(input_ids, attention_mask) of a packed (N, 2, L) text batch."""
    if batch.dim() != 3 or batch.shape[1] != 2:
        raise ValueError(f"a text batch is (N, 2, L) ids and mask, got shape {tuple(batch.shape)}")
    return batch[:, 0], batch[:, 1]


def soft_kl(
    student: Tensor, teacher: Tensor, *, temperature: float, mask: Tensor | None = None
) -> Tensor:
    """T^2 * mean KL(softmax(teacher / T) || softmax(student / T)) over examples or tokens.

    Args:
        student: (N, C) or (N, L, V) logits.
        teacher: logits of the same shape.
        temperature: T > 0.
        mask: for (N, L, V) logits, the (N, L) attention mask; only positions where it is
            non-zero count (None: every position counts).
    """
    if temperature <= 0:
        raise ValueError(f"temperature={temperature!r} must be positive")
    if student.shape != teacher.shape:
        raise ValueError(
            f"student logits {tuple(student.shape)} and teacher logits "
            f"{tuple(teacher.shape)} differ in shape"
        )
    classes = student.shape[-1]
    student_flat, teacher_flat = student.reshape(-1, classes), teacher.reshape(-1, classes)
    if mask is not None and student.dim() == 3:
        keep = mask.reshape(-1) > 0
        student_flat, teacher_flat = student_flat[keep], teacher_flat[keep]
    if student_flat.shape[0] == 0:
        return student.sum() * 0.0
    log_student = F.log_softmax(student_flat.float() / temperature, dim=-1)
    log_teacher = F.log_softmax(teacher_flat.float() / temperature, dim=-1)
    per_position = (log_teacher.exp() * (log_teacher - log_student)).sum(dim=-1)
    return temperature**2 * per_position.mean()


def hidden_state_loss(
    student: Sequence[Tensor], teacher: Sequence[Tensor], *, mask: Tensor
) -> Tensor:
    """Mean over layer pairs of the mean over real tokens of ||LN(h_s) - LN(h_t)||^2 / d.

    Args:
        student: (N, L, d) block outputs of the student, one per pair.
        teacher: the teacher's block outputs for the same pairs, same shapes.
        mask: (N, L) attention mask; padding positions do not count.
    """
    if len(student) != len(teacher) or not student:
        raise ValueError("hidden_state_loss needs one teacher state per student state")
    keep = mask.reshape(-1) > 0
    terms = []
    for s, t in zip(student, teacher, strict=True):
        width = s.shape[-1]
        s_flat = F.layer_norm(s.float().reshape(-1, width), (width,))[keep]
        t_flat = F.layer_norm(t.float().reshape(-1, width), (width,))[keep]
        terms.append(F.mse_loss(s_flat, t_flat) if len(s_flat) else s.sum() * 0.0)
    return torch.stack(terms).mean()


def block_count(model: nn.Module) -> int:
    """The number of transformer blocks (encoder or decoder layers) of a Hugging Face model."""
    return len(find_blocks(_hf(model))[1])


def _hf(model: nn.Module) -> nn.Module:
    return model.hf if isinstance(model, HFAdapter) else model


def _hidden_size(model: nn.Module) -> int | None:
    config = getattr(_hf(model), "config", None)
    size = getattr(config, "hidden_size", None)
    return int(size) if isinstance(size, int) else None


def layer_pairs(
    student: nn.Module,
    teacher: nn.Module,
    *,
    hidden_weight: float,
    layer_map: Sequence[int] | None = None,
) -> LayerPairs:
    """The (student block, teacher block) pairs of the hidden-state term.

    Every student block is paired: block j with teacher block `layer_map[j]` (a depth-pruned
    student passes the teacher indices of the blocks it kept), or with teacher block j when
    both have the same depth and no map is given. A student whose hidden size differs from the
    teacher's (width pruning of the hidden size) gets no hidden term: the states live in
    different spaces and a projection would add weights the artifact does not have.

    Raises:
        ValueError: the depths differ and no `layer_map` is given, or the map does not fit.
    """
    if hidden_weight <= 0:
        return LayerPairs()
    student_size, teacher_size = _hidden_size(student), _hidden_size(teacher)
    if student_size != teacher_size:
        return LayerPairs(
            skipped=(
                f"the student's hidden size {student_size} differs from the teacher's "
                f"{teacher_size}: the hidden-state term is left out"
            )
        )
    student_blocks, teacher_blocks = block_count(student), block_count(teacher)
    if layer_map is None:
        if student_blocks != teacher_blocks:
            raise ValueError(
                f"the student has {student_blocks} blocks and the teacher {teacher_blocks}: "
                "the hidden-state term needs layer_map (the teacher index of each kept block)"
            )
        layer_map = list(range(student_blocks))
    if len(layer_map) != student_blocks:
        raise ValueError(
            f"layer_map has {len(layer_map)} entries for a student of {student_blocks} blocks"
        )
    for index in layer_map:
        if not 0 <= int(index) < teacher_blocks:
            raise ValueError(
                f"layer_map index {index} is not a teacher block (0..{teacher_blocks - 1})"
            )
    return LayerPairs(pairs=tuple((j, int(k)) for j, k in enumerate(layer_map)))


@contextmanager
def block_outputs(model: nn.Module, indices: Sequence[int]) -> Iterator[dict[int, Tensor]]:
    """Collect the outputs of blocks `indices` of `model` during the forward passes inside."""
    captured: dict[int, Tensor] = {}
    _, blocks = find_blocks(_hf(model))
    handles = []
    for index in indices:

        def hook(_module: nn.Module, _inputs: Any, output: Any, *, at: int = index) -> None:
            captured[at] = output[0] if isinstance(output, tuple) else output

        handles.append(blocks[index].register_forward_hook(hook))
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


@dataclass(frozen=True)
class DistillLoss:
    """The student's loss on one packed text batch, given the frozen teacher.

    Args:
        temperature: T of the logit term.
        alpha: weight of the logit term; the task's cross-entropy gets 1 - alpha.
        hidden_weight: weight of the hidden-state term (0: off).
        layers: the block pairs of the hidden-state term (`layer_pairs`).
    """

    temperature: float
    alpha: float
    hidden_weight: float = 0.0
    layers: LayerPairs = LayerPairs()

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise ValueError(f"temperature={self.temperature!r} must be positive")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha={self.alpha!r} must be in [0, 1]")
        if not self.hidden_weight >= 0:
            raise ValueError(f"hidden_weight={self.hidden_weight!r} must be non-negative")

    def __call__(
        self, student: nn.Module, teacher: nn.Module, batch: Tensor, targets: Tensor
    ) -> LossParts:
        """The loss of `student` on `batch` (packed ids and mask) with task `targets`."""
        _, mask = unpack(batch)
        pairs = self.layers.pairs if self.hidden_weight > 0 else ()
        teacher_device = next(teacher.parameters()).device
        with torch.no_grad(), block_outputs(teacher, [k for _, k in pairs]) as teacher_states:
            # a teacher too large for the student's device runs where it is
            teacher_logits = teacher(batch.to(teacher_device)).to(batch.device)
        with block_outputs(student, [j for j, _ in pairs]) as student_states:
            logits = student(batch)
        task = cross_entropy(logits.float(), targets)
        kl = soft_kl(logits, teacher_logits, temperature=self.temperature, mask=mask)
        total = (1.0 - self.alpha) * task + self.alpha * kl
        hidden = torch.zeros((), device=batch.device)
        if pairs:
            hidden = hidden_state_loss(
                [student_states[j] for j, _ in pairs],
                [teacher_states[k].to(batch.device) for _, k in pairs],
                mask=mask,
            )
            total = total + self.hidden_weight * hidden
        return LossParts(total=total, task=task.detach(), kl=kl.detach(), hidden=hidden.detach())


def hf_batch_loss(student: nn.Module, teacher: nn.Module, finetune: FinetuneSpec) -> BatchLoss:
    """The iterative loop's distillation loss for a Hugging Face model, from the job's
    `finetune` settings (blocks paired one to one: the loop never removes a block)."""
    loss = DistillLoss(
        temperature=finetune.distill_temperature,
        alpha=finetune.distill_weight,
        hidden_weight=finetune.distill_hidden_weight,
        layers=layer_pairs(student, teacher, hidden_weight=finetune.distill_hidden_weight),
    )

    def batch_loss(model: nn.Module, frozen: nn.Module, batch: Tensor, targets: Tensor) -> Tensor:
        return loss(model, frozen, batch, targets).total

    return batch_loss
