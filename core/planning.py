"""Planning before the first step: what the granularity can reach, layer order, the criterion.

Runs once, after the dense baseline. Sensitivities come first so that the criterion probe prunes
exactly as the run will; with `criterion: auto` they are measured with magnitude scores.
"""

from __future__ import annotations

from core.importance import make_importance
from core.probe import ProbeOutcome, layer_sensitivity, probe_criteria
from core.registries import AUTO
from core.run import Run


def plan_layers(run: Run) -> None:
    """Check the target can be met, then probe layer sensitivities and criteria as needed."""
    prune_spec = run.spec.prune
    state = run.state
    granularity = run.granularity
    state.target = granularity.plan(
        run.model,
        target=state.target,
        spec=prune_spec,
        plan=state.plan,
        example_inputs=run.example,
    )
    if prune_spec.scope == "sensitivity" or granularity.orders_layers:
        criterion = "magnitude" if prune_spec.criterion == AUTO else state.criterion
        scores = make_importance(criterion, prune_spec)(run.scoring_context())
        sensitivity = layer_sensitivity(
            run.model,
            scores=scores,
            spec=prune_spec,
            granularity=granularity,
            evaluate=run.evaluate,
            check=run.check,
            out_of_time=run.out_of_time,
        )
        state.plan.sensitivity = sensitivity
        fixed = set(granularity.skipped_layers(run.model, plan=state.plan))
        state.plan.layer_order = sorted(
            (name for name in sensitivity if name not in fixed), key=sensitivity.__getitem__
        )
    if prune_spec.criterion == AUTO:
        run.phase("scoring")
        outcome: ProbeOutcome = probe_criteria(
            run.scoring_context(),
            spec=prune_spec,
            granularity=granularity,
            plan=state.plan,
            evaluate=run.evaluate,
            example_inputs=run.example,
            check=run.check,
            out_of_time=run.out_of_time,
        )
        state.criterion = outcome.criterion
        state.probe = {f"loss.{k}": v for k, v in outcome.losses.items()} | {
            f"metric.{k}": v for k, v in outcome.metrics.items()
        }
