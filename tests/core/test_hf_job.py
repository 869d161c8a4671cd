"""A Hugging Face model through `run_job`: the iterative loop on a text task, and a `model/`
artifact that `from_pretrained` loads in a fresh process without adaprune."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from safetensors.torch import load_file

from core.artifact import load
from core.contract.entrypoints import ANY_MODULE
from core.job import JobOutput, metric_of, prepare, run_job
from core.spec import JobSpec
from tests.core.hf_assets import (
    fresh_metric,
    pattern_rows,
    sentiment_rows,
    tiny_bert,
    tiny_llama,
    write_jsonl,
)


def _spec(model: Path, task: dict[str, Any], drop: float) -> JobSpec:
    return JobSpec.model_validate(
        {
            "model": {"hf": model.as_uri()},
            "task": {**task, "max_length": 16},
            "prune": {
                "target_sparsity": 0.5,
                "criterion": "magnitude",
                "schedule": {"kind": "linear", "steps": 2},
                "max_metric_drop": drop,
            },
            "finetune": {"epochs_per_step": 1, "final_epochs": 1, "lr": 1e-3, "batch_size": 16},
            "export": {"latency_batch_sizes": [1], "latency_seconds": 0.2},
        }
    )


def _check_artifact(art: Path, manifest: dict[str, Any], head: str) -> None:
    names = set(manifest["files"])
    assert {"model/config.json", "model/model.safetensors", "model/tokenizer.json"} <= names
    assert "weights.safetensors" not in names
    # sparsity is counted from the file written into model/
    saved = load_file(str(art / "model" / "model.safetensors"))
    per_layer = manifest["sparsity"]["per_layer"]
    assert per_layer and all(name.startswith("hf.") for name in per_layer)
    for name, value in per_layer.items():
        tensor = saved[name.removeprefix("hf.")]
        assert value == pytest.approx(float((tensor == 0).float().mean()), abs=1e-9)
    assert manifest["sparsity"]["overall"] == pytest.approx(0.5, abs=0.02)
    excluded = {entry["name"]: entry["reason"] for entry in manifest["sparsity"]["excluded"]}
    assert "dense by default" in excluded[head]
    assert not any(name.startswith(head) for name in per_layer)
    assert (saved[head.removeprefix("hf.") + ".weight"] != 0).all()
    assert any("embed" in name and "embedding" in reason for name, reason in excluded.items())


def test_a_bert_classifier_prunes_and_its_model_dir_loads_without_adaprune(tmp_path):
    model = tiny_bert(tmp_path / "bert")
    splits = {
        split: write_jsonl(tmp_path / f"{split}.jsonl", sentiment_rows(count, seed=seed))
        for seed, (split, count) in enumerate((("train", 48), ("val", 24), ("test", 16)))
    }
    spec = _spec(model, {"kind": "text-classification", "data": splits}, drop=0.5)
    output = run_job(spec, out_dir=tmp_path / "art", work_dir=tmp_path / "work", device="cpu")
    manifest = output.manifest
    assert manifest["architecture"]["auto_class"] == "AutoModelForSequenceClassification"
    assert set(manifest["metrics"]["pruned"]) == {"val", "test"}
    decisions = [step.decision for step in output.outcome.result.steps]
    assert decisions[0] == "baseline" and decisions[-1] == "final" and len(decisions) >= 4
    _check_artifact(tmp_path / "art", manifest, head="hf.classifier")
    val = fresh_metric(
        tmp_path / "art" / "model",
        "AutoModelForSequenceClassification",
        tmp_path / "val.jsonl",
        cwd=tmp_path,
    )
    assert val == pytest.approx(manifest["metrics"]["pruned"]["val"], abs=1e-9)
    # the engine's own loader reads the same artifact back (checksums verified)
    assert _reloaded_val_metric(output, "accuracy") == manifest["metrics"]["pruned"]["val"]


def test_a_llama_causal_lm_prunes_with_perplexity_and_reloads(tmp_path):
    model = tiny_llama(tmp_path / "llama")
    splits = {
        split: write_jsonl(tmp_path / f"{split}.jsonl", pattern_rows(count, seed=seed))
        for seed, (split, count) in enumerate((("train", 48), ("val", 16), ("test", 16)))
    }
    spec = _spec(model, {"kind": "causal-lm", "data": splits}, drop=0.5)
    assert spec.task.metric == "perplexity"
    output = run_job(spec, out_dir=tmp_path / "art", work_dir=tmp_path / "work", device="cpu")
    manifest = output.manifest
    result = output.outcome.result
    # the tolerance is relative: worse by (ppl - dense) / dense
    assert result.within_tolerance == (
        (result.metric - result.dense_metric) / result.dense_metric <= 0.5
    )
    vocab = output.outcome.model.hf.config.vocab_size
    assert 1.0 < manifest["metrics"]["pruned"]["val"] < vocab  # trained below uniform
    _check_artifact(tmp_path / "art", manifest, head="hf.lm_head")
    val = fresh_metric(
        tmp_path / "art" / "model", "AutoModelForCausalLM", tmp_path / "val.jsonl", cwd=tmp_path
    )
    assert val == pytest.approx(manifest["metrics"]["pruned"]["val"], rel=1e-5)
    again = _reloaded_val_metric(output, "perplexity")
    assert again == pytest.approx(manifest["metrics"]["pruned"]["val"], rel=1e-6)


def _reloaded_val_metric(output: JobOutput, metric: str) -> float:
    """The validation metric of the model `core.artifact.load` rebuilds from the artifact."""
    spec = JobSpec.model_validate(output.manifest["spec"])
    data, _ = prepare(
        spec, cache_dir=output.artifact_dir.parent / "cache", allowed_entrypoints=ANY_MODULE
    )
    return metric_of(metric)(load(output.artifact_dir), data.x_val, data.y_val)
