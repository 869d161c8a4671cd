"""A run says whether it reached its target and why not; `target_sparsity: max` searches."""

import pytest
from pydantic import ValidationError

from core.loop import prune
from core.outcome import missed_reason
from core.report import StepReport
from core.spec import JobSpec, PruneSpec
from tests.core.test_loop import _model, _spec, _task


def _report(step, target, sparsity, metric, decision):
    return StepReport(
        step=step,
        target_sparsity=target,
        sparsity=sparsity,
        metric=metric,
        loss=0.1,
        decision=decision,
        seconds=0.1,
        epochs=1,
    )


def test_no_headroom_names_the_step_that_cost_too_much():
    spec = _spec(target_sparsity=0.7, max_metric_drop=0.03)
    reports = [
        _report(0, 0.0, 0.0, 0.9, "baseline"),
        _report(1, 0.66, 0.66, 0.89, "keep"),
        _report(2, 0.72, 0.72, 0.869, "rollback"),
        _report(3, 0.66, 0.66, 0.885, "final"),
    ]
    reason = missed_reason(
        reports,
        spec=spec,
        target=0.7,
        stop_reason="no_headroom",
        dense_metric=0.9,
        within=True,
    )
    assert reason == "no_headroom at 0.660: step 2 at 0.72 cost 3.1 points (allowed 3)"


def test_a_reached_target_has_no_reason_and_an_over_tolerance_one_says_so():
    spec = _spec(target_sparsity=0.7, max_metric_drop=0.03)
    reports = [_report(0, 0.0, 0.0, 0.9, "baseline"), _report(1, 0.7, 0.7, 0.86, "scheduled")]
    common = {"spec": spec, "target": 0.7, "stop_reason": "schedule_done", "dense_metric": 0.9}
    assert missed_reason(reports, within=True, **common) is None
    reason = missed_reason(reports, within=False, **common)
    assert reason is not None and reason.startswith("over_tolerance at 0.700")
    assert "4.0 points below dense" in reason


def test_a_run_that_stops_short_reports_target_missed_with_its_reason():
    spec = _spec(
        criterion="magnitude",
        target_sparsity=0.98,
        max_metric_drop=0.0,
        min_layer_density=0.0,
        schedule={"kind": "adaptive", "steps": 2},
    )
    result = prune(_model(), _task(), spec).result
    assert result.target_sparsity == 0.98
    assert result.target_reached is False
    assert result.target_missed_reason is not None
    assert result.target_missed_reason.split(" at ")[0] == result.stop_reason
    assert result.to_dict()["target_reached"] is False


def test_target_max_searches_within_tolerance_and_reports_its_curve():
    spec = _spec(
        criterion="magnitude",
        target_sparsity="max",
        max_sparsity=0.95,
        max_metric_drop=0.05,
        schedule={"kind": "adaptive", "steps": 3},
    )
    result = prune(_model(), _task(), spec).result
    assert result.target_sparsity == 0.95
    assert result.curve[0]["sparsity"] == 0.0 and len(result.curve) >= 3
    sparsities = [point["sparsity"] for point in result.curve]
    assert sparsities[-1] == pytest.approx(max(sparsities))
    assert result.within_tolerance
    assert result.sparsity > 0.5
    if not result.target_reached:
        assert result.target_missed_reason


def test_spec_max_needs_the_adaptive_schedule_and_a_number_for_nm():
    assert PruneSpec(target_sparsity="max").target == 0.99
    assert PruneSpec(target_sparsity="max", max_sparsity=0.8).search_max
    with pytest.raises(ValidationError, match=r"needs schedule\.kind"):
        PruneSpec(target_sparsity="max", schedule={"kind": "cubic"})
    with pytest.raises(ValidationError, match="must be a number"):
        PruneSpec(target_sparsity="max", granularity="2:4")
    with pytest.raises(ValidationError, match=r'\(0, 1\) or "max"') as error:
        JobSpec.model_validate(
            {
                "model": {"arch": "mlp"},
                "task": {"dataset": "digits"},
                "prune": {"target_sparsity": "most"},
            }
        )
    assert [e["loc"] for e in error.value.errors()] == [("prune", "target_sparsity")]
