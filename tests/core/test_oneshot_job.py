"""One-shot jobs (`prune.method`) through `run_job`: one step per block, resume at the next
block, the tolerance in the metric's direction, the budget, and a `model/` artifact."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from core.checkpoint import save_checkpoint
from core.errors import PruneCancelled
from core.job import run_job
from core.metrics import make_metric, worse_by
from core.spec import JobSpec
from tests.core.hf_assets import pattern_rows, sentiment_rows, tiny_bert, tiny_llama, write_jsonl


def _splits(tmp_path: Path, rows: Any) -> dict[str, str]:
    return {
        split: write_jsonl(tmp_path / f"{split}.jsonl", rows(count, seed=seed))
        for seed, (split, count) in enumerate((("train", 32), ("val", 16), ("test", 12)))
    }


def _spec(model: Path, task: dict[str, Any], prune: dict[str, Any], **more: Any) -> JobSpec:
    return JobSpec.model_validate(
        {
            "model": {"hf": model.as_uri()},
            "task": {**task, "max_length": 16},
            "prune": {"calibration_samples": 16, "max_metric_drop": 0.5, **prune},
            "finetune": {"batch_size": 8, **more.pop("finetune", {})},
            "export": {"latency_batch_sizes": [1], "latency_seconds": 0.3},
            **more,
        }
    )


def _llama_spec(tmp_path: Path, *, layers: int = 3, tied: bool = False, **more: Any) -> JobSpec:
    model = tiny_llama(tmp_path / "llama", layers=layers, tied=tied)
    task = {"kind": "causal-lm", "data": _splits(tmp_path, pattern_rows)}
    return _spec(model, task, {"method": "wanda", "target_sparsity": 0.5}, **more)


def test_a_wanda_job_reports_one_step_per_block_and_exports_a_model_dir(tmp_path):
    spec = _llama_spec(tmp_path)
    assert spec.finetune.final_epochs == 0 and spec.finetune.epochs_per_step == 0
    seen: list[Any] = []
    phases: list[str] = []
    checkpoints: list[Path] = []
    output = run_job(
        spec,
        out_dir=tmp_path / "art",
        work_dir=tmp_path / "work",
        device="cpu",
        on_step=seen.append,
        on_phase=phases.append,
        on_checkpoint=checkpoints.append,
    )
    result = output.outcome.result
    assert [step.step for step in seen] == [1, 2, 3]
    assert [step.decision for step in seen] == ["scheduled"] * 3
    # the model's sparsity climbs block by block to the target
    sparsities = [step.sparsity for step in seen]
    assert sparsities[0] < sparsities[1] < sparsities[2] == pytest.approx(0.5, abs=1e-6)
    assert [s.target_sparsity for s in seen] == pytest.approx([1 / 6, 1 / 3, 0.5], abs=1e-6)
    assert all(step.metric > 1.0 for step in seen)  # perplexity after each block
    assert checkpoints == [tmp_path / "work" / "checkpoints" / "oneshot"] * 3
    assert {"baseline", "scoring", "exporting"} <= set(phases)
    manifest = output.manifest
    assert manifest["result"]["criterion"] == "wanda"
    assert manifest["extra"]["oneshot"]["resumed_at"] == 0
    assert len(manifest["extra"]["oneshot"]["blocks"]) == 3
    assert set(manifest["metrics"]["dense"]) == {"val", "test"}
    assert set(manifest["metrics"]["pruned"]) == {"val", "test"}
    assert manifest["metrics"]["pruned"]["val"] == pytest.approx(seen[-1].metric, rel=1e-6)
    assert manifest["metrics"]["dense"]["val"] == pytest.approx(result.dense_metric, rel=1e-6)
    # sparsity per layer counted from the file written into model/
    saved = load_file(str(tmp_path / "art" / "model" / "model.safetensors"))
    per_layer = manifest["sparsity"]["per_layer"]
    assert any(".layers.2." in name for name in per_layer)
    for name, value in per_layer.items():
        tensor = saved[name.removeprefix("hf.")]
        assert value == pytest.approx(float((tensor == 0).float().mean()), abs=1e-9)
    assert (saved["lm_head.weight"] != 0).all()
    # measured by the engine's latency code, with tokens/s dense vs pruned for the text model
    (batch,) = manifest["latency"]["batches"]
    assert batch["verdict"] == "not_expected"  # masks on dense kernels
    assert 0 < batch["sequence_length"] <= spec.task.max_length  # padded to the longest text
    assert batch["tokens_per_s"]["dense"] > 0 and batch["tokens_per_s"]["pruned"] > 0
    with (tmp_path / "art" / "steps.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["step"]) for row in rows] == [1, 2, 3]
    assert (tmp_path / "art" / "curve.png").stat().st_size > 0
    # the tolerance is relative for perplexity: worse by (ppl - dense) / dense
    drop = worse_by(make_metric("perplexity"), reference=result.dense_metric, value=result.metric)
    assert result.within_tolerance == (drop <= 0.5)
    assert result.target_reached == result.within_tolerance
    if not result.target_reached:
        assert "% worse than dense" in str(result.target_missed_reason)


def test_a_stopped_one_shot_job_resumes_at_the_next_block_with_the_same_result(tmp_path):
    spec = _llama_spec(tmp_path)
    run_job(spec, out_dir=tmp_path / "whole", work_dir=tmp_path / "w1", device="cpu")
    done: list[int] = []

    def stop_after_two() -> bool:
        return len(done) >= 2

    with pytest.raises(PruneCancelled):
        run_job(
            spec,
            out_dir=tmp_path / "art",
            work_dir=tmp_path / "w2",
            device="cpu",
            on_step=lambda step: done.append(step.step),
            should_stop=stop_after_two,
        )
    assert done == [1, 2]
    again: list[int] = []
    resumed = run_job(
        spec,
        out_dir=tmp_path / "art",
        work_dir=tmp_path / "w2",
        device="cpu",
        resume=True,
        on_step=lambda step: again.append(step.step),
    )
    assert again == [3]
    assert resumed.manifest["extra"]["oneshot"]["resumed_at"] == 2
    assert [s.step for s in resumed.outcome.result.steps] == [1, 2, 3]
    first = load_file(str(tmp_path / "whole" / "model" / "model.safetensors"))
    second = load_file(str(tmp_path / "art" / "model" / "model.safetensors"))
    assert all(torch.equal(first[name], second[name]) for name in first)


def test_a_bert_classifier_prunes_two_four_with_sparsegpt_and_recovers(tmp_path):
    model = tiny_bert(tmp_path / "bert")
    task = {"kind": "text-classification", "data": _splits(tmp_path, sentiment_rows)}
    spec = _spec(
        model,
        task,
        {"method": "sparsegpt", "target_sparsity": 0.5, "granularity": "2:4"},
        finetune={"final_epochs": 1},
    )
    output = run_job(spec, out_dir=tmp_path / "art", work_dir=tmp_path / "work", device="cpu")
    steps = output.outcome.result.steps
    assert [s.decision for s in steps] == ["scheduled", "scheduled", "final"]
    assert steps[-1].epochs == 1
    saved = load_file(str(tmp_path / "art" / "model" / "model.safetensors"))
    query = saved["bert.encoder.layer.0.attention.self.query.weight"]
    groups = (query.reshape(query.shape[0], -1, 4) != 0).sum(dim=-1)
    assert (groups <= 2).all()  # 2:4 holds after the recovery fine-tuning
    skipped = {entry["name"] for entry in output.outcome.result.skipped_layers}
    assert "hf.classifier" in skipped and "hf.bert.pooler.dense" in skipped


def test_a_one_shot_job_over_budget_stops_before_a_block_and_says_so(tmp_path):
    spec = _llama_spec(tmp_path, budget={"max_runtime_s": 1e-3})
    output = run_job(spec, out_dir=tmp_path / "art", work_dir=tmp_path / "work", device="cpu")
    result = output.outcome.result
    assert result.stop_reason == "max_runtime" and not result.target_reached
    assert "before block 0 of 3" in str(result.target_missed_reason)
    assert result.steps == []


def test_tied_embeddings_checkpoint_and_prune_one_shot(tmp_path):
    spec = _llama_spec(tmp_path, layers=2, tied=True)
    output = run_job(spec, out_dir=tmp_path / "art", work_dir=tmp_path / "work", device="cpu")
    model = output.outcome.model
    assert model.hf.lm_head.weight is model.hf.model.embed_tokens.weight
    # the loop's checkpoint writer takes a model whose head is tied to its embedding
    path = save_checkpoint(tmp_path / "ck", step=1, model=model, masks={}, optimizer=None, state={})
    reloaded = load_file(str(path / "model.safetensors"))
    assert torch.equal(reloaded["hf.lm_head.weight"], reloaded["hf.model.embed_tokens.weight"])
    model.load_state_dict(reloaded, strict=True)


def test_a_one_shot_spec_refuses_fine_tuning_between_blocks():
    with pytest.raises(ValueError, match="epochs_per_step must be 0"):
        JobSpec.model_validate(
            {
                "model": {"hf": "file:///m"},
                "task": {"kind": "causal-lm", "data": "file:///d.jsonl", "val_fraction": 0.2},
                "prune": {"method": "wanda", "target_sparsity": 0.5},
                "finetune": {"epochs_per_step": 1},
            }
        )
