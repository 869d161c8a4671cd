"""Short probes on the validation split: the criterion that suits a task, the fragile layers."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from core.granularity import Granularity, SparsityPlan
from core.importance import ScoringContext, auto_candidates, make_importance
from core.masks import prunable_parameters
from core.spec import PruneSpec

Evaluate = Callable[[nn.Module], tuple[float, float]]  # model -> (metric, loss) on validation


def _never() -> bool:
    return False


def _go_on() -> None:
    return None


@dataclass(frozen=True)
class ProbeOutcome:
    criterion: str
    losses: dict[str, float]
    metrics: dict[str, float]


def probe_criteria(
    context: ScoringContext,
    *,
    spec: PruneSpec,
    granularity: Granularity,
    plan: SparsityPlan,
    evaluate: Evaluate,
    example_inputs: Tensor,
    candidates: Sequence[str] | None = None,
    check: Callable[[], None] = _go_on,
    out_of_time: Callable[[], bool] = _never,
) -> ProbeOutcome:
    """Prune a copy of the model with each candidate criterion and keep the one that hurts least.

    Each candidate prunes, without fine-tuning, to 50 %, 75 % and 100 % of the target; the mean
    validation loss over the three decides (loss rather than accuracy: at high sparsity accuracy
    saturates at chance for every candidate and stops telling them apart). Ties keep the order
    of `candidates` (default: the registered auto candidates). `check()` runs before each trial
    (it raises to cancel); once `out_of_time()`, the candidates probed so far decide (the first
    candidate alone when none was).
    """
    candidates = tuple(candidates or auto_candidates())
    losses: dict[str, float] = {}
    metrics: dict[str, float] = {}
    for name in candidates:
        check()
        if losses and out_of_time():
            break
        scores = make_importance(name, spec)(context)
        total = 0.0
        for fraction in (0.5, 0.75, 1.0):
            check()
            trial = copy.deepcopy(context.model)
            trial_plan = copy.deepcopy(plan)
            granularity.sparsify(
                trial,
                scores=scores,
                target=spec.target * fraction,
                spec=spec,
                masks={},
                plan=trial_plan,
                example_inputs=example_inputs,
            )
            metric, loss = evaluate(trial)
            total += loss
            if fraction == 1.0:
                metrics[name] = metric
        losses[name] = total / 3
    best = min(losses, key=lambda name: losses[name])
    return ProbeOutcome(criterion=best, losses=losses, metrics=metrics)


@torch.no_grad()
def layer_sensitivity(
    model: nn.Module,
    *,
    scores: dict[str, Tensor],
    spec: PruneSpec,
    granularity: Granularity,
    evaluate: Evaluate,
    check: Callable[[], None] = _go_on,
    out_of_time: Callable[[], bool] = _never,
) -> dict[str, float]:
    """Validation-loss increase when each prunable layer alone is pruned at the target.

    The layer gets the granularity's trial mask (the N:M pattern for N:M; otherwise the target
    sparsity by its own scores). The model is restored exactly after each trial. `check()` runs
    before each layer (it raises to cancel); once `out_of_time()`, the layers not measured get
    the largest sensitivity measured (they are pruned last).
    """
    params = prunable_parameters(model)
    _, base_loss = evaluate(model)
    result: dict[str, float] = {}
    unmeasured: list[str] = []
    for name, param in params.items():
        check()
        if out_of_time():
            unmeasured.append(name)
            continue
        saved = param.detach().clone()
        mask = granularity.layer_trial_mask(name, scores[name], spec=spec)
        param.mul_(mask)
        _, loss = evaluate(model)
        param.copy_(saved)
        result[name] = max(loss - base_loss, 0.0)
    worst = max(result.values(), default=0.0)
    return {name: result.get(name, worst) for name in params}
