"""Width and depth jobs through `run_job`: a BERT classifier cut in width, a Llama causal LM
cut in depth with distillation; the `model/` artifact states the new sizes, its parameters are
counted from the saved file, it loads without adaprune and gives the manifest's metric; an
interrupted job resumes to the same weights."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from safetensors.torch import load_file

from core.errors import PruneCancelled, UnsupportedArchitecture
from core.job import run_job
from core.spec import JobSpec
from tests.core.hf_assets import (
    build_tokenizer,
    fresh_metric,
    pattern_rows,
    sentiment_rows,
    write_jsonl,
)
from tests.core.shrink_models import tiny
from tests.core.test_hf_job import _reloaded_val_metric


def _model_dir(directory: Path, family: str) -> Path:
    build_tokenizer(directory)
    tiny(family).save_pretrained(str(directory))
    return directory


def _splits(tmp_path: Path, rows: Any) -> dict[str, str]:
    return {
        split: write_jsonl(tmp_path / f"{split}.jsonl", rows(count, seed=seed))
        for seed, (split, count) in enumerate((("train", 48), ("val", 24), ("test", 16)))
    }


def _spec(model: Path, task: dict[str, Any], **prune: Any) -> JobSpec:
    distill = prune.pop("distill", False)
    hidden_weight = prune.pop("distill_hidden_weight", 0.0)
    epochs = prune.pop("final_epochs", 1)
    return JobSpec.model_validate(
        {
            "model": {"hf": model.as_uri()},
            "task": {**task, "max_length": 16},
            "prune": {"max_metric_drop": 0.5, "calibration_samples": 16, **prune},
            "finetune": {
                "final_epochs": epochs,
                "lr": 1e-3,
                "batch_size": 16,
                "distill": distill,
                "distill_hidden_weight": hidden_weight,
            },
            "export": {"latency_batch_sizes": [2], "latency_seconds": 0.5},
        }
    )


def _saved_params(art: Path) -> int:
    return sum(t.numel() for t in load_file(str(art / "model" / "model.safetensors")).values())


def test_a_width_job_on_a_bert_classifier_with_its_hidden_size_exports_a_model_that_loads_anywhere(
    tmp_path,
):
    model = _model_dir(tmp_path / "bert", "bert")
    task = {"kind": "text-classification", "data": _splits(tmp_path, sentiment_rows)}
    spec = _spec(model, task, target_sparsity=0.3, granularity="width", hidden=True)
    output = run_job(spec, out_dir=tmp_path / "art", work_dir=tmp_path / "work", device="cpu")
    manifest, art = output.manifest, tmp_path / "art"
    result = output.outcome.result
    assert [step.decision for step in result.steps] == ["baseline", "scheduled", "final"]
    config = json.loads((art / "model" / "config.json").read_text())
    shrink = manifest["extra"]["shrink"]
    assert config["intermediate_size"] == shrink["pruned_sizes"]["intermediate"] < 128
    assert config["num_attention_heads"] == 4 and "heads_kept_reason" in shrink
    assert config["hidden_size"] == shrink["pruned_sizes"]["hidden"] < 64
    assert shrink["uniform_sizes"] is True
    sparsity = manifest["sparsity"]
    assert sparsity["params_pruned"] == _saved_params(art) < sparsity["params_dense"]
    assert sparsity["removed_fraction"] == pytest.approx(0.3, abs=0.05)
    assert result.sparsity == pytest.approx(sparsity["removed_fraction"], abs=1e-9)
    assert result.target_reached == result.within_tolerance
    assert [entry["batch_size"] for entry in manifest["latency"]["batches"]] == [2]
    assert 0 < shrink["latency_sequence_length"] <= 16
    assert shrink["generate"] is None
    val = fresh_metric(
        art / "model", "AutoModelForSequenceClassification", tmp_path / "val.jsonl", cwd=tmp_path
    )
    assert val == pytest.approx(manifest["metrics"]["pruned"]["val"], abs=1e-9)
    # the engine's own loader reads the smaller model back (checksums verified)
    assert _reloaded_val_metric(output, "accuracy") == manifest["metrics"]["pruned"]["val"]


def test_a_depth_job_on_a_llama_with_distillation_states_fewer_blocks_and_tokens_per_second(
    tmp_path,
):
    model = _model_dir(tmp_path / "llama", "llama")
    task = {"kind": "causal-lm", "data": _splits(tmp_path, pattern_rows)}
    spec = _spec(
        model,
        task,
        target_sparsity=0.25,
        granularity="depth",
        distill=True,
        distill_hidden_weight=0.5,
    )
    output = run_job(spec, out_dir=tmp_path / "art", work_dir=tmp_path / "work", device="cpu")
    manifest, art = output.manifest, tmp_path / "art"
    config = json.loads((art / "model" / "config.json").read_text())
    shrink = manifest["extra"]["shrink"]
    assert config["num_hidden_layers"] == 3 and len(shrink["removed_blocks"]) == 1
    assert len(shrink["block_influence"]) == 4
    # the kept blocks are compared with the teacher blocks they were
    kept = [i for i in range(4) if i not in shrink["removed_blocks"]]
    assert shrink["kept_blocks"] == kept and shrink["distill_hidden_skipped"] is None
    assert shrink["recovery"]["distill"] is True and shrink["recovery"]["tokens_per_s"] > 0
    assert manifest["sparsity"]["params_pruned"] == _saved_params(art)
    assert manifest["sparsity"]["removed_fraction"] == pytest.approx(0.25, abs=0.05)
    generate = shrink["generate"]
    assert generate["new_tokens"] == 32 and generate["rounds"] >= 2
    assert generate["tokens_per_s_dense"] > 0 and generate["tokens_per_s_pruned"] > 0
    val = fresh_metric(art / "model", "AutoModelForCausalLM", tmp_path / "val.jsonl", cwd=tmp_path)
    assert val == pytest.approx(manifest["metrics"]["pruned"]["val"], rel=1e-5)


def test_an_interrupted_width_job_resumes_to_the_weights_of_an_uninterrupted_one(tmp_path):
    model = _model_dir(tmp_path / "llama", "llama")
    task = {"kind": "causal-lm", "data": _splits(tmp_path, pattern_rows)}
    spec = _spec(model, task, target_sparsity=0.3, granularity="width", final_epochs=2)
    whole = run_job(spec, out_dir=tmp_path / "whole", work_dir=tmp_path / "w1", device="cpu")
    checkpoints: list[Path] = []
    with pytest.raises(PruneCancelled):
        run_job(
            spec,
            out_dir=tmp_path / "cut",
            work_dir=tmp_path / "w2",
            device="cpu",
            on_checkpoint=checkpoints.append,
            should_stop=lambda: len(checkpoints) >= 2,  # after the first recovery epoch
        )
    resumed = run_job(
        spec, out_dir=tmp_path / "cut", work_dir=tmp_path / "w2", device="cpu", resume=True
    )
    first = load_file(str(tmp_path / "whole" / "model" / "model.safetensors"))
    again = load_file(str(tmp_path / "cut" / "model" / "model.safetensors"))
    assert first.keys() == again.keys()
    for name, tensor in first.items():
        assert (tensor == again[name]).all(), name
    assert [s.decision for s in resumed.outcome.result.steps] == ["baseline", "scheduled", "final"]
    assert resumed.outcome.result.epochs == whole.outcome.result.epochs == 2


def test_a_width_job_on_an_unsupported_model_fails_before_anything_runs(tmp_path):
    build_tokenizer(tmp_path / "gpt2")
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=40, n_embd=32, n_layer=2, n_head=2, n_positions=32)
    GPT2LMHeadModel(config).save_pretrained(str(tmp_path / "gpt2"))
    task = {"kind": "causal-lm", "data": _splits(tmp_path, pattern_rows)}
    spec = _spec(tmp_path / "gpt2", task, target_sparsity=0.3, granularity="width")
    phases: list[str] = []
    with pytest.raises(UnsupportedArchitecture, match="'gpt2'") as caught:
        run_job(
            spec,
            out_dir=tmp_path / "art",
            work_dir=tmp_path / "work",
            device="cpu",
            on_phase=phases.append,
        )
    assert caught.value.code == "unsupported_architecture"
    assert phases == [] and not (tmp_path / "art").exists()
