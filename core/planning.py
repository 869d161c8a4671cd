"""Planning before the first step: what the granularity can reach, layer order, the criterion.

Runs once, after the dense baseline. Sensitivities come first so that the criterion probe prunes
exactly as the run will; with `criterion: auto` they are measured with magnitude scores.
"""

from __future__ import annotations

import copy

from core.errors import SpecInvalid
from core.importance import make_importance
from core.masks import nm_incompatible, prunable_parameters
from core.probe import ProbeOutcome, layer_sensitivity, probe_criteria
from core.run import Run
from core.sparsify import channel_fraction_removed, nm_reachable, sparsify
from core.spec import parse_nm


def plan_layers(run: Run) -> None:
    """Check the target can be met, then probe layer sensitivities and criteria as needed."""
    prune_spec = run.spec.prune
    state = run.state
    nm = parse_nm(prune_spec.granularity)
    if nm is not None:
        reachable = nm_reachable(prunable_parameters(run.model), n=nm[0], m=nm[1])
        if reachable <= 0.0:
            raise SpecInvalid(
                f"granularity {prune_spec.granularity!r}: no prunable layer has an input "
                f"dimension divisible by {nm[1]}"
            )
        # layers that cannot take the pattern stay dense, so the target is what the rest give
        state.target = min(state.target, reachable)
    if prune_spec.granularity == "channel":
        check_channels_removable(run)
    if prune_spec.scope == "sensitivity" or nm is not None:
        criterion = "magnitude" if prune_spec.criterion == "auto" else state.criterion
        scores = make_importance(criterion, prune_spec)(run.scoring_context())
        sensitivity = layer_sensitivity(
            run.model, scores=scores, spec=prune_spec, evaluate=run.evaluate
        )
        state.plan.sensitivity = sensitivity
        shapes = {name: list(p.shape) for name, p in prunable_parameters(run.model).items()}
        fixed = set(nm_incompatible(shapes, nm[1])) if nm is not None else set()
        state.plan.layer_order = sorted(
            (name for name in sensitivity if name not in fixed), key=sensitivity.__getitem__
        )
    if prune_spec.criterion == "auto":
        run.phase("scoring")
        outcome: ProbeOutcome = probe_criteria(
            run.scoring_context(),
            spec=prune_spec,
            plan=state.plan,
            evaluate=run.evaluate,
            example_inputs=run.example,
        )
        state.criterion = outcome.criterion
        state.probe = {f"loss.{k}": v for k, v in outcome.losses.items()} | {
            f"metric.{k}": v for k, v in outcome.metrics.items()
        }


def check_channels_removable(run: Run) -> None:
    """Refuse a channel job that cannot remove a single channel at its target."""
    trial, plan = copy.deepcopy(run.model), copy.deepcopy(run.state.plan)
    scores = {k: v.detach().abs() for k, v in prunable_parameters(trial).items()}
    sparsify(
        trial,
        scores=scores,
        target=run.state.target,
        spec=run.spec.prune,
        masks={},
        plan=plan,
        example_inputs=run.example,
    )
    if channel_fraction_removed(trial, plan) <= 0.0:
        raise SpecInvalid(
            f"granularity 'channel': no channel of this model can be removed at target "
            f"{run.state.target} with round_to {run.spec.prune.round_to} "
            f"(kept whole: {', '.join(plan.channel_fixed) or 'none'})"
        )
