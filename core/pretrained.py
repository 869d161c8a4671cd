"""Fine-tuning a network that arrived trained: learning-rate warm-up and BatchNorm re-estimation.

A cut changes the distribution of every activation after it, while BatchNorm keeps normalising
with the running statistics of the dense network; re-estimating them on a few calibration
batches removes much of the damage without a single gradient step (the "adaptive batch
normalisation" of Li et al. 2020, "EagleEye: Fast Sub-net Evaluation for Efficient Neural
Network Pruning", ECCV).
The spec turns both on by default when `model.weights` is given (see `core.spec`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn

# the warm-up starts at this fraction of the learning rate rather than at 0, so no batch is wasted
WARMUP_START = 0.1


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The BatchNorm layers of `model` that keep running statistics."""
    return [
        module
        for module in model.modules()
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats
    ]


@torch.no_grad()
def reestimate_batchnorm(model: nn.Module, inputs: Iterable[Tensor]) -> int:
    """Recompute every BatchNorm's running mean and variance from `inputs`, in place.

    The statistics are reset and accumulated as a cumulative average (momentum=None) over
    forward passes without gradient, with only the BatchNorm layers in training mode (dropout
    and the like stay off); the momenta and the model's training flag are restored afterwards.
    Weights are not touched, so masks stay as they are.

    Args:
        model: the model (already on the inputs' device).
        inputs: calibration batches, each of more than one example.

    Returns:
        The number of BatchNorm layers re-estimated (0 when the model has none or no batch came).
    """
    layers = batchnorm_layers(model)
    batches = list(inputs) if layers else []
    if not batches:
        return 0
    was_training = model.training
    momenta = [layer.momentum for layer in layers]
    model.eval()
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None
        layer.train()
    try:
        for batch in batches:
            model(batch)
    finally:
        for layer, momentum in zip(layers, momenta, strict=True):
            layer.momentum = momentum
        model.train(was_training)
    return len(layers)


def warmup_lr(*, base: float, fraction: float) -> Callable[[int], Callable[[float], float]] | None:
    """A linear warm-up over the first `fraction` of the first epoch after a cut.

    lr(t) = base * (s + (1 - s) * min(1, t / fraction)) in epoch 0 (t its completed fraction,
    s = WARMUP_START) and `base` in later epochs; None when `fraction` is 0 (no warm-up).
    The result has the shape the loop's `lr_at` takes: epoch index -> (fraction done -> lr).
    """
    if fraction <= 0:
        return None

    def at(epoch: int) -> Callable[[float], float]:
        if epoch > 0:
            return lambda done: base
        return lambda done: base * (WARMUP_START + (1 - WARMUP_START) * min(1.0, done / fraction))

    return at


def step_lr(
    *, base: float, warmup_fraction: float, decay_epochs: int
) -> Callable[[int], Callable[[float], float]] | None:
    """The learning rate of one pruning step's fine-tuning: warm-up, then an optional decay.

    lr(e, t) = w(e, t) * c(e, t), with w the warm-up of `warmup_lr` (1 when `warmup_fraction`
    is 0) and, when `decay_epochs` > 0, c(e, t) = (1 + cos(pi (e + t) / decay_epochs)) / 2 over
    the step's epochs (the warm restarts of Loshchilov & Hutter 2017, SGDR, one per step). A
    step that ends annealed is measured near its recovered metric rather than mid-way through
    training at the base rate, which is what the adaptive controller judges. None when the step
    trains at the constant base rate.
    """
    warmup = warmup_lr(base=base, fraction=warmup_fraction)
    if decay_epochs <= 0:
        return warmup

    def at(epoch: int) -> Callable[[float], float]:
        ramp = warmup(epoch) if warmup is not None else (lambda done: base)
        return lambda done: ramp(done) * (1 + math.cos(math.pi * (epoch + done) / decay_epochs)) / 2

    return at
