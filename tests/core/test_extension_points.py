"""A toy granularity, metric and criterion (one class and one registry call each), end to end."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import pytest
import torch
from pydantic import ValidationError
from safetensors.torch import load_file
from torch import Tensor, nn

from core.granularity import Granularity, SparsityPlan
from core.importance import ScoringContext
from core.job import run_job
from core.masks import apply_masks, prunable_parameters
from core.registries import CRITERIA, GRANULARITIES, METRICS
from core.spec import JobSpec, PruneSpec


class RowGranularity(Granularity):
    """Whole output rows of each weight zeroed, lowest summed score first, per layer."""

    def sparsify(
        self,
        model: nn.Module,
        *,
        scores: Mapping[str, Tensor],
        target: float,
        spec: PruneSpec,
        masks: Mapping[str, Tensor],
        plan: SparsityPlan,
        example_inputs: Tensor,
    ) -> dict[str, Tensor]:
        params = prunable_parameters(model)
        new: dict[str, Tensor] = {}
        for name, score in scores.items():
            rows = score.reshape(score.shape[0], -1).sum(dim=1)
            if name in masks:  # rows already zeroed stay zeroed
                rows = rows * masks[name].reshape(score.shape[0], -1).all(dim=1)
            cut = min(int(target * rows.numel()), rows.numel() - 1)
            keep = torch.ones_like(rows, dtype=torch.bool)
            keep[torch.argsort(rows, stable=True)[:cut]] = False
            new[name] = keep.reshape(-1, *([1] * (score.dim() - 1))).expand_as(score).clone()
        apply_masks(params, new)
        return new


class ErrorRate:
    """The fraction of examples misclassified: lower is better."""

    name = "error_rate"
    higher_is_better = False

    def batch_total(self, logits: Tensor, targets: Tensor) -> float:
        return float((logits.argmax(dim=-1) != targets).sum())


class SquaredMagnitude:
    """w squared: ranks like magnitude, with a different scale."""

    name = "squared"

    def __call__(self, ctx: ScoringContext) -> dict[str, Tensor]:
        return {name: p.detach().float().pow(2) for name, p in ctx.params.items()}


@pytest.fixture
def toys() -> Iterator[None]:
    GRANULARITIES.register("rows", RowGranularity)
    METRICS.register("error_rate", ErrorRate, higher_is_better=False)
    CRITERIA.register("squared", SquaredMagnitude, auto_candidate=False)
    yield
    GRANULARITIES.unregister("rows")
    METRICS.unregister("error_rate")
    CRITERIA.unregister("squared")


def _spec_body() -> dict[str, object]:
    return {
        "model": {"arch": "mlp", "kwargs": {"hidden": [16]}},
        "task": {"dataset": "breast_cancer", "metric": "error_rate"},
        "prune": {
            "target_sparsity": 0.5,
            "granularity": "rows",
            "criterion": "squared",
            "schedule": {"kind": "linear", "steps": 2},
            "max_metric_drop": 0.5,
        },
        "finetune": {"pretrain_epochs": 3, "final_epochs": 1, "lr": 0.01},
    }


def test_toy_granularity_metric_and_criterion_run_a_job_end_to_end(toys, tmp_path):
    spec = JobSpec.model_validate(_spec_body())
    output = run_job(spec, out_dir=tmp_path / "art", work_dir=tmp_path / "work", device="cpu")
    result = output.outcome.result
    assert result.criterion == "squared"
    # an error rate: the tolerance is "worse by", so a higher error is the drop
    assert result.within_tolerance == (result.metric - result.dense_metric <= 0.5)
    assert 0.0 <= result.dense_metric <= 0.5  # a trained model misclassifies under half
    weights = load_file(str(tmp_path / "art" / "weights.safetensors"))
    hidden = weights["1.weight"]  # the mlp's hidden layer, 16 x 30
    zero_rows = (hidden == 0).all(dim=1)
    assert int(zero_rows.sum()) == hidden.shape[0] // 2  # half the rows, whole rows only
    assert bool(((hidden == 0) == zero_rows[:, None]).all())
    manifest = output.manifest
    assert manifest["spec"]["prune"]["granularity"] == "rows"
    assert manifest["spec"]["task"]["metric"] == "error_rate"
    assert manifest["skipped_layers"] == []
    pruned_error = manifest["metrics"]["pruned"]["val"]
    assert pruned_error == pytest.approx(result.metric)


def test_a_toy_name_is_refused_once_unregistered():
    with pytest.raises(ValidationError, match="unknown granularity 'rows'; allowed:"):
        JobSpec.model_validate(_spec_body())
