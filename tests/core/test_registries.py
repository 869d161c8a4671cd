"""Each registry against the spec (every name validates, an unknown one is refused naming the
allowed ones) and against the README (it lists the same names)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from core.granularity import make_granularity
from core.importance import make_importance
from core.metrics import make_metric
from core.registries import (
    ALLOCATIONS,
    ARCHITECTURES,
    AUTO,
    CRITERIA,
    DATASETS,
    GRANULARITIES,
    METRICS,
    ONESHOT_METHODS,
    SCHEDULES,
)
from core.registry import Registry
from core.spec import JobSpec

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def _body(**parts: Any) -> dict[str, Any]:
    """A minimal valid spec body with `section__field=value` overrides."""
    body: dict[str, Any] = {
        "model": {"arch": "mlp"},
        "task": {"dataset": "digits"},
        "prune": {"target_sparsity": 0.5},
    }
    for key, value in parts.items():
        section, field = key.split("__")
        body[section][field] = value
    return body


def _hf_body(**parts: Any) -> dict[str, Any]:
    """`_body` with a Hugging Face model and a text task (what one-shot methods take)."""
    body = _body(**parts)
    body["model"] = {"hf": "file:///models/tiny"}
    body["task"] = {"kind": "causal-lm", "data": "file:///data/t.jsonl", "val_fraction": 0.2}
    return body


def _concrete(registry: Registry[Any], name: str) -> str:
    """A concrete name for an entry: parametrised entries give their example."""
    entry = next(e for e in registry.entries() if e.name == name)
    return str(entry.info["example"]) if entry.parse is not None else name


def _granularity_body(name: str) -> dict[str, Any]:
    """A spec taking granularity `name`: a Hugging Face model for the HF-only ones."""
    body = _body(prune__granularity=name)
    if name in GRANULARITIES and GRANULARITIES.info(name).get("hf_only"):
        body["model"] = {"hf": "file:///models/tiny"}
        body["task"] = {"kind": "causal-lm", "data": "file:///data/t.jsonl", "val_fraction": 0.2}
        body["prune"]["target_sparsity"] = 0.3
    return body


CASES = [
    (ARCHITECTURES, lambda n: _body(model__arch=n), "model.arch"),
    (DATASETS, lambda n: _body(task__dataset=n), "task.dataset"),
    (METRICS, lambda n: _body(task__metric=n), "task.metric"),
    (CRITERIA, lambda n: _body(prune__criterion=n), "prune.criterion"),
    (SCHEDULES, lambda n: _body(prune__schedule={"kind": n}), "prune.schedule.kind"),
    (GRANULARITIES, _granularity_body, "prune.granularity"),
    (ONESHOT_METHODS, lambda n: _hf_body(prune__method=n), "prune.method"),
    (
        ALLOCATIONS,
        lambda n: _hf_body(prune__method="wanda", prune__allocation=n),
        "prune.allocation",
    ),
]


@pytest.mark.parametrize(("registry", "body", "field"), CASES, ids=lambda c: getattr(c, "kind", ""))
def test_every_registered_name_validates_and_an_unknown_one_names_the_allowed(
    registry, body, field
):
    for name in registry:
        JobSpec.model_validate(body(_concrete(registry, name)))
    with pytest.raises(ValidationError) as caught:
        JobSpec.model_validate(body("no_such_name"))
    error = caught.value.errors()[0]
    assert ".".join(str(part) for part in error["loc"]) == field
    for name in registry:
        assert repr(name) in error["msg"]


def test_criterion_auto_is_allowed_besides_the_registered_ones():
    spec = JobSpec.model_validate(_body(prune__criterion=AUTO))
    assert spec.prune.criterion == AUTO
    with pytest.raises(ValidationError, match="'auto'"):
        JobSpec.model_validate(_body(prune__criterion="l2"))


def test_nm_granularity_accepts_any_pattern_in_range_and_refuses_others():
    for name, target in (("2:4", 0.5), ("1:8", 0.875), ("31:32", 1 / 32)):
        JobSpec.model_validate(_body(prune__granularity=name, prune__target_sparsity=target))
    for name in ("4:4", "0:4", "2:64"):
        with pytest.raises(ValidationError, match="0 < N < M <= 32"):
            JobSpec.model_validate(_body(prune__granularity=name))


def test_the_schema_lists_closed_sets_as_enums():
    schema = JobSpec.model_json_schema()["$defs"]
    assert schema["PruneSpec"]["properties"]["criterion"]["enum"] == [*CRITERIA, AUTO]
    assert schema["ScheduleSpec"]["properties"]["kind"]["enum"] == list(SCHEDULES)
    arch = schema["ModelRef"]["properties"]["arch"]["anyOf"][0]
    assert arch["enum"] == list(ARCHITECTURES)
    assert "'N:M' (e.g. '2:4')" in schema["PruneSpec"]["properties"]["granularity"]["description"]


def test_every_entry_resolves_to_a_working_implementation():
    spec = JobSpec.model_validate(_body()).prune
    for name in CRITERIA:
        assert callable(make_importance(name, spec))
    for name in GRANULARITIES:
        assert make_granularity(_concrete(GRANULARITIES, name)).name == _concrete(
            GRANULARITIES, name
        )
    for name in METRICS:
        metric = make_metric(name)
        assert metric.name == name
        assert metric.higher_is_better == METRICS.info(name)["higher_is_better"]
    for name in SCHEDULES:
        assert SCHEDULES.resolve(name) is not None
    for name in ARCHITECTURES:
        assert callable(ARCHITECTURES.resolve(name))
    for name in DATASETS:
        assert callable(DATASETS.resolve(name))
    for registry in (ONESHOT_METHODS, ALLOCATIONS):
        for name in registry:
            assert registry.resolve(name).name == name


def _readme_line(key: str) -> str:
    match = re.search(rf"^\s*{key}:.*#(.*)$", README, flags=re.MULTILINE)
    assert match is not None, key
    return match[1]


def _alternatives(comment: str) -> list[str]:
    return [part.split()[0].strip('"') for part in comment.split("|")]


def test_readme_lists_the_registered_names():
    assert _alternatives(_readme_line("granularity")) == list(GRANULARITIES)
    assert _alternatives(_readme_line("criterion")) == [*CRITERIA, AUTO]
    assert _alternatives(_readme_line("method")) == list(ONESHOT_METHODS)
    assert _alternatives(_readme_line("allocation")) == list(ALLOCATIONS)
    schedule = _readme_line(r"schedule").split("#")[-1]
    assert _alternatives(schedule) == list(SCHEDULES)
    tasks = re.search(r"built-in tasks \(([^)]*)", README)
    archs = re.search(r"architectures \(([^)]*)\) need no files", README)
    metrics = re.search(r"Task metrics:\s*(.*?)\.", README, flags=re.DOTALL)
    assert tasks and archs and metrics
    assert re.findall(r"`([^`]+)`", tasks[1]) == list(DATASETS)
    assert re.findall(r"`([^`]+)`", archs[1]) == list(ARCHITECTURES)
    assert re.findall(r"`([^`]+)`", metrics[1]) == list(METRICS)
