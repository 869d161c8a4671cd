"""The one-shot fields of the job spec: validated without torch, refused with the field named."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from core.oneshot.config import OneShotConfig
from core.spec import JobSpec


def spec(**prune: Any) -> JobSpec:
    return JobSpec.model_validate(
        {
            "model": {"hf": "file:///models/tiny"},
            "task": {"kind": "causal-lm", "data": "file:///data/t.jsonl", "val_fraction": 0.2},
            "prune": prune,
        }
    )


def test_a_oneshot_spec_reads_into_the_engine_config():
    prune = spec(
        target_sparsity=0.7,
        method="wanda",
        allocation="owl",
        calibration_samples=64,
        owl_lambda=0.05,
        owl_threshold=7,
    ).prune
    config = OneShotConfig.from_spec(prune)
    assert (config.method, config.allocation, config.owl_lambda, config.owl_threshold) == (
        "wanda",
        "owl",
        0.05,
        7.0,
    )
    assert prune.calibration_samples == 64
    assert spec(target_sparsity=0.5).prune.method is None  # the iterative loop


@pytest.mark.parametrize(
    ("prune", "message"),
    [
        ({"method": "obs"}, "unknown one-shot method 'obs'"),
        ({"method": "wanda", "allocation": "even"}, "unknown allocation 'even'"),
        ({"allocation": "owl"}, "need a one-shot 'method'"),
        ({"method": "wanda", "granularity": "channel"}, "'unstructured' or N:M"),
        ({"method": "wanda", "granularity": "2:4", "allocation": "owl"}, "cannot vary an N:M"),
        ({"method": "sparsegpt", "comparison_group": "row"}, "takes no comparison_group"),
        ({"method": "wanda", "calibration_samples": 0}, "greater than or equal to 1"),
        ({"method": "wanda", "allocation": "owl", "owl_lambda": 0.6}, "less than 0.5"),
    ],
)
def test_bad_oneshot_fields_are_refused_naming_the_problem(prune, message):
    with pytest.raises(ValidationError, match=message):
        spec(target_sparsity=0.5, **prune)


def test_the_iterative_loop_is_refused_by_the_oneshot_config():
    with pytest.raises(ValueError, match="method is not set"):
        OneShotConfig.from_spec(spec(target_sparsity=0.5).prune)


def test_a_oneshot_method_on_a_model_that_is_not_hugging_face_is_refused_at_prune():
    with pytest.raises(ValidationError) as caught:
        JobSpec.model_validate(
            {
                "model": {"arch": "mlp"},
                "task": {"dataset": "digits"},
                "prune": {"target_sparsity": 0.5, "method": "wanda"},
            }
        )
    error = caught.value.errors()[0]
    assert error["loc"] == ("prune",)
    assert "needs a Hugging Face model (model.hf)" in error["msg"]
