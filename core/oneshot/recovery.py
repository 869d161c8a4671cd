"""Recovery after a one-shot run: masked fine-tuning for `finetune.final_epochs`."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from core.data import TaskData
from core.finetune import (
    Distillation,
    cosine_lr,
    epoch_generator,
    evaluate,
    to_tensors,
    train_epoch,
)
from core.hf.adapter import HFAdapter
from core.oneshot.outcome import Tolerance
from core.spec import JobSpec


def recover(
    adapter: HFAdapter,
    data: TaskData,
    spec: JobSpec,
    *,
    masks: dict[str, Tensor],
    dense: nn.Module,
    device: torch.device,
    tolerance: Tolerance,
    start_metric: float,
    should_stop: Callable[[], bool] | None,
    out_of_time: Callable[[], bool],
) -> tuple[float, float, int]:
    """Masked fine-tuning for `finetune.final_epochs` (cosine decay, as the loop's final phase);
    the weights it started from are kept when it ends worse. Returns (metric, loss, epochs)."""
    finetune = spec.finetune
    epochs = min(finetune.final_epochs, spec.budget.max_epochs)
    adapter.to(device)
    masks = {name: mask.to(device) for name, mask in masks.items()}
    params = dict(adapter.named_parameters())
    x, y = to_tensors(data.x_train, data.y_train, device=device)
    x_val, y_val = to_tensors(data.x_val, data.y_val, device=device)
    before = {k: v.detach().cpu().clone() for k, v in adapter.state_dict().items()}
    optimizer = torch.optim.AdamW(
        adapter.parameters(), lr=finetune.lr, weight_decay=finetune.weight_decay
    )
    distill = None
    if finetune.distill:
        teacher = copy.deepcopy(dense).to(device).eval()
        distill = Distillation(
            teacher=teacher,
            temperature=finetune.distill_temperature,
            weight=finetune.distill_weight,
        )
    loss, done = math.nan, 0
    for epoch in range(epochs):
        if out_of_time():
            break
        torch.manual_seed(spec.seed * 1_000_003 + epoch)
        loss = train_epoch(
            adapter,
            x=x,
            y=y,
            optimizer=optimizer,
            batch_size=finetune.batch_size,
            generator=epoch_generator(seed=spec.seed, epoch=epoch),
            masks={name: masks[name] for name in masks if name in params},
            params=params,
            distill=distill,
            should_stop=should_stop,
            out_of_time=out_of_time,
            lr_at=cosine_lr(base=finetune.lr, epoch=epoch, epochs=epochs),
        )
        done += 1
    result = evaluate(adapter, x=x_val, y=y_val, metric=tolerance.metric)
    if tolerance.drop(result.metric) > tolerance.drop(start_metric):
        adapter.load_state_dict(before)
        return start_metric, math.nan, done
    return result.metric, loss, done
