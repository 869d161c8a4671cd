"""The text-task and Hugging Face fields of the spec, validated without torch."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from pydantic import ValidationError

from core.spec import JobSpec
from service.policy import check_policy

SPLITS = {
    "train": "file:///d/train.jsonl",
    "val": "file:///d/val.csv",
    "test": "file:///d/test.parquet",
}


def _body(model: dict[str, Any] | None = None, **task: Any) -> dict[str, Any]:
    return {
        "model": model or {"hf": "file:///models/minilm"},
        "task": {"kind": "text-classification", "data": SPLITS, **task},
        "prune": {"target_sparsity": 0.5},
    }


def _error(body: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as info:
        JobSpec.model_validate(body)
    return str(info.value)


def test_a_text_classification_spec_takes_per_split_files_and_defaults():
    spec = JobSpec.model_validate(_body())
    assert spec.model.hf == "file:///models/minilm"
    assert spec.task.kind == "text-classification"
    assert spec.task.metric == "accuracy"
    assert (spec.task.text_column, spec.task.label_column, spec.task.max_length) == (
        "text",
        "label",
        128,
    )
    # a trained model: the pretrained fine-tuning defaults apply, no dense pre-training
    assert spec.model.pretrained and spec.finetune.lr == 1e-4
    assert [field for field, _ in spec.uris()] == [
        "model.hf",
        "task.data.train",
        "task.data.val",
        "task.data.test",
    ]


def test_a_causal_lm_defaults_to_perplexity_and_refuses_accuracy():
    body = _body(kind="causal-lm")
    assert JobSpec.model_validate(body).task.metric == "perplexity"
    message = _error(_body(kind="causal-lm", metric="accuracy"))
    assert "does not apply to causal-lm" in message and "perplexity" in message
    assert JobSpec.model_validate(_body(metric="f1_macro")).task.metric == "f1_macro"


def test_one_file_needs_a_validation_fraction():
    one = "s3://bucket/all.jsonl"
    spec = JobSpec.model_validate(_body(data=one, val_fraction=0.2, test_fraction=0.1))
    assert spec.task.data == one and spec.task.uris() == [("task.data", one)]
    assert "needs val_fraction" in _error(_body(data=one))
    assert "leaves under 10 %" in _error(_body(data=one, val_fraction=0.5, test_fraction=0.45))
    assert "split one file" in _error(_body(val_fraction=0.2))


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"train": "file:///d/a.txt", "val": "file:///d/b.jsonl"}, ".jsonl or .csv or .parquet"),
        ({"train": "http://x/a.jsonl", "val": "file:///d/b.jsonl"}, "scheme 'http'"),
        ({"train": "file:///d/a.jsonl"}, "val"),
        ("file:///d/task.npz", ".jsonl or .csv or .parquet"),
    ],
)
def test_bad_text_data_is_refused_naming_the_problem(data, fragment):
    assert fragment in _error(
        _body(data=data, val_fraction=0.2) if isinstance(data, str) else _body(data=data)
    )


def test_model_and_task_sources_come_together():
    assert "needs a Hugging Face model" in _error(_body(model={"arch": "mlp"}))
    npz = {
        "model": {"hf": "file:///m"},
        "task": {"data": "file:///d/t.npz"},
        "prune": {"target_sparsity": 0.5},
    }
    assert "model.hf needs task.kind" in _error(npz)
    both = {"hf": "file:///m", "arch": "mlp"}
    assert "exactly one of" in _error(_body(model=both))
    assert "carries its own weights" in _error(
        _body(model={"hf": "file:///m", "weights": "file:///w.safetensors"})
    )
    assert "scheme 'ftp'" in _error(_body(model={"hf": "ftp://host/m"}))
    assert "'..'" in _error(_body(model={"hf": "file:///models/../etc"}))


def test_tensor_tasks_stay_as_they_were_and_refuse_text_fields():
    body = {
        "model": {"arch": "mlp"},
        "task": {"data": "file:///d/t.npz"},
        "prune": {"target_sparsity": 0.5},
    }
    spec = JobSpec.model_validate(body)
    assert spec.task.kind is None and spec.task.metric == "accuracy"
    assert spec.uris() == [("task.data", "file:///d/t.npz")]
    body["task"] = {"data": "file:///d/t.npz", "max_length": 64}
    assert "only for text tasks" in _error(body)
    body["task"] = {"data": "file:///d/t.jsonl"}
    assert "must name a .npz file" in _error(body)
    body["task"] = {"data": SPLITS}
    assert "set 'kind'" in _error(body)


def test_the_policy_checks_the_model_directory_and_every_split():
    spec = JobSpec.model_validate(_body())
    problems = check_policy(spec, allowed_entrypoints=[], allowed_file_roots=["/d"])
    assert [p.field for p in problems] == ["model.hf"]
    assert check_policy(spec, allowed_entrypoints=[], allowed_file_roots=["/d", "/models"]) == []


def test_text_specs_validate_without_torch():
    code = (
        "import sys\n"
        "from core.spec import JobSpec\n"
        f"JobSpec.model_validate({_body(kind='causal-lm')!r})\n"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    "task",
    [
        {"dataset": "digits"},
        {"data": "file:///d/task.npz"},
        {"kind": "text-classification", "data": "file:///d/all.jsonl", "val_fraction": 0.2},
    ],
)
def test_a_stored_spec_validates_again_as_the_worker_reads_it(task: dict[str, Any]) -> None:
    # the API stores model_dump(mode="json"): every field present, at its default or not
    model = {"hf": "file:///models/m"} if "kind" in task else {"arch": "mlp"}
    spec = JobSpec.model_validate({"model": model, "task": task, "prune": {"target_sparsity": 0.5}})
    stored = spec.model_dump(mode="json")
    assert JobSpec.model_validate(stored) == spec


@pytest.mark.parametrize(
    ("finetune", "field", "fragment"),
    [
        ({"distill": True, "distill_temperature": 0}, "distill_temperature", "greater than 0"),
        ({"distill": True, "distill_weight": 1.5}, "distill_weight", "less than or equal to 1"),
        ({"distill": True, "distill_hidden_weight": -1}, "distill_hidden_weight", "greater"),
        ({"distill": True, "distill_hidden_weight": 101}, "distill_hidden_weight", "less"),
        ({"distill_hidden_weight": 1.0}, "distill_hidden_weight", "needs distill: true"),
    ],
)
def test_bad_distillation_settings_are_refused_at_their_field(finetune, field, fragment):
    with pytest.raises(ValidationError) as info:
        JobSpec.model_validate({**_body(), "finetune": finetune})
    (error,) = info.value.errors()
    assert error["loc"] == ("finetune", field) and fragment in error["msg"]


def test_hidden_state_distillation_needs_a_hugging_face_model():
    tensor = {
        "model": {"arch": "mlp"},
        "task": {"dataset": "digits"},
        "prune": {"target_sparsity": 0.5},
        "finetune": {"distill": True, "distill_hidden_weight": 1.0},
    }
    assert "distill_hidden_weight needs a Hugging Face model" in _error(tensor)
    spec = JobSpec.model_validate(
        {**_body(), "finetune": {"distill": True, "distill_hidden_weight": 0.5}}
    )
    assert spec.finetune.distill_hidden_weight == 0.5 and spec.finetune.distill_weight == 0.5
