"""One-shot LLM jobs and a width job through the service, with real processes: the API and a
worker on PostgreSQL and Redis; a worker SIGKILLed after block k, whose successor resumes at
block k + 1."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from service.client import AdapruneClient, ChecksumMismatch
from service.storage import artifact_key, job_prefix
from tests.core.hf_assets import (
    build_tokenizer,
    fresh_metric,
    pattern_rows,
    sentiment_rows,
    tiny_bert,
    tiny_llama,
)
from tests.core.shrink_models import tiny
from tests.deploy.metric_names import sql_queries_in_dashboards
from tests.support.dashboards import assert_step_panels_match
from tests.support.deployment import deployment
from tests.workers.conftest import Service


def _splits(directory: Path, rows: Any, counts: tuple[int, int, int]) -> dict[str, str]:
    directory.mkdir(parents=True, exist_ok=True)
    uris = {}
    for seed, (split, count) in enumerate(zip(("train", "val", "test"), counts, strict=True)):
        path = directory / f"{split}.jsonl"
        path.write_text("".join(json.dumps(row) + "\n" for row in rows(count, seed=seed)))
        uris[split] = path.as_uri()
    return uris


def _saved_dataset(directory: Path) -> str:
    """The JSONL splits in `directory` saved as a DatasetDict (train, validation, test)."""
    datasets = pytest.importorskip("datasets", reason="the [dev] extra installs datasets")
    splits = {"train": "train", "validation": "val", "test": "test"}
    saved = datasets.DatasetDict(
        {
            name: datasets.Dataset.from_json(str(directory / f"{split}.jsonl"))
            for name, split in splits.items()
        }
    )
    saved.save_to_disk(str(directory / "saved"))
    return (directory / "saved").as_uri() + "/"


def _spec(model: Path, task: dict[str, Any], prune: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "llm",
        "model": {"hf": model.as_uri()},
        "task": {**task, "max_length": 16},
        "prune": {"calibration_samples": 16, "max_metric_drop": 0.5, **prune},
        "finetune": {"batch_size": 8},
        "export": {"latency_batch_sizes": [1], "latency_seconds": 0.1},
    }


def _dashboard_curves(deployed: Any, job_id: str, steps: list[dict[str, Any]]) -> None:
    """Every step query of the shipped Grafana dashboards returns the job's steps as the API
    serves them: the accuracy and sparsity panels fill for this job."""
    queries = sql_queries_in_dashboards(Path(__file__).resolve().parents[2])
    url = deployed.database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(url, autocommit=True) as connection:
        assert_step_panels_match(connection, queries, job_id=job_id, steps=steps)


def _width_job(deployed: Any, data: Path, tmp_path: Path) -> None:
    """A Llama with grouped key/value heads cut to 0.7x its parameters in width, recovered by
    distillation: the pulled `model/` states the smaller sizes and gives the manifest's metric."""
    llama = data / "gqa-llama"
    build_tokenizer(llama)
    tiny("llama").save_pretrained(str(llama))
    task = {"kind": "causal-lm", "data": _splits(data / "width-lm", pattern_rows, (48, 16, 12))}
    spec = _spec(llama, task, {"target_sparsity": 0.3, "granularity": "width"})
    spec["finetune"] = {"batch_size": 8, "final_epochs": 1, "lr": 1e-3, "distill": True}
    job = deployed.run_job(spec, timeout_s=300)
    assert job["state"] == "succeeded", (job, deployed.logs())
    with deployed.client() as client:
        steps = client.get(f"/v1/jobs/{job['id']}/steps").raise_for_status().json()
    assert [row["decision"] for row in steps][-1] == "final"
    assert steps[-1]["sparsity"] == pytest.approx(0.3, abs=0.05)
    _dashboard_curves(deployed, job["id"], steps)
    with AdapruneClient(deployed.api_url, api_key=deployed.key) as api:
        pulled = api.pull(job["id"], tmp_path / "pulled-width")
    manifest = json.loads((pulled / "manifest.json").read_text())
    config = json.loads((pulled / "model" / "config.json").read_text())
    sizes = manifest["extra"]["shrink"]["pruned_sizes"]
    assert config["intermediate_size"] == sizes["intermediate"] < 128
    # query heads stay a whole multiple of the key/value groups they share
    assert config["num_attention_heads"] % config["num_key_value_heads"] == 0
    assert manifest["sparsity"]["removed_fraction"] == pytest.approx(0.3, abs=0.05)
    assert manifest["extra"]["shrink"]["recovery"]["distill"] is True
    value = fresh_metric(
        pulled / "model", "AutoModelForCausalLM", data / "width-lm" / "val.jsonl", cwd=tmp_path
    )
    assert value == pytest.approx(manifest["metrics"]["pruned"]["val"], rel=1e-5)


def test_wanda_sparsegpt_and_width_jobs_run_through_the_service_and_load_without_adaprune(
    tmp_path,
):
    data = tmp_path / "data"
    llama = tiny_llama(data / "llama", layers=3)
    bert = tiny_bert(data / "bert")
    lm_task = {"kind": "causal-lm", "data": _splits(data / "lm", pattern_rows, (32, 16, 12))}
    _splits(data / "cls", sentiment_rows, (32, 16, 12))
    # the classifier's text as a `datasets` save_to_disk directory, which the worker copies
    cls_task = {"kind": "text-classification", "data": _saved_dataset(data / "cls")}
    cases = [
        (
            _spec(llama, lm_task, {"method": "wanda", "target_sparsity": 0.5}),
            "AutoModelForCausalLM",
            data / "lm" / "val.jsonl",
            3,
        ),
        (
            _spec(
                bert,
                cls_task,
                {"method": "sparsegpt", "target_sparsity": 0.5, "granularity": "2:4"},
            ),
            "AutoModelForSequenceClassification",
            data / "cls" / "val.jsonl",
            2,
        ),
    ]
    (tmp_path / "deploy").mkdir()
    with deployment(tmp_path / "deploy", file_roots=[data]) as deployed:
        for index, (spec, auto_class, val_texts, blocks) in enumerate(cases):
            job = deployed.run_job(spec, timeout_s=300)
            assert job["state"] == "succeeded", (job, deployed.logs())
            with deployed.client() as client:
                steps = client.get(f"/v1/jobs/{job['id']}/steps").raise_for_status().json()
            assert [row["step"] for row in steps] == list(range(1, blocks + 1))
            assert all(row["decision"] == "scheduled" for row in steps)
            assert all(row["metric"] is not None and row["sparsity"] > 0 for row in steps)
            assert steps[-1]["sparsity"] == pytest.approx(0.5, abs=1e-6)
            _dashboard_curves(deployed, job["id"], steps)
            with AdapruneClient(deployed.api_url, api_key=deployed.key) as api:
                pulled = api.pull(job["id"], tmp_path / f"pulled-{index}")
            manifest = json.loads((pulled / "manifest.json").read_text())
            assert manifest["result"]["criterion"] == spec["prune"]["method"]
            value = fresh_metric(pulled / "model", auto_class, val_texts, cwd=tmp_path)
            assert value == pytest.approx(manifest["metrics"]["pruned"]["val"], rel=1e-5)
            # a stored file that no longer matches its recorded sha256 is refused on pull
            stored = deployed.root / "artifacts" / artifact_key("acme", job["id"], "model")
            weights = stored / "model.safetensors"
            weights.write_bytes(weights.read_bytes() + b"\0")
            with (
                AdapruneClient(deployed.api_url, api_key=deployed.key) as api,
                pytest.raises(ChecksumMismatch),
            ):
                api.pull(job["id"], tmp_path / f"tampered-{index}")
            assert not (tmp_path / f"tampered-{index}").exists()
        _width_job(deployed, data, tmp_path)


def test_a_killed_one_shot_job_resumes_at_the_block_after_its_checkpoint(fresh: Service):
    data = fresh.root / "data"
    llama = tiny_llama(data / "llama", layers=10)
    task = {"kind": "causal-lm", "data": _splits(data / "lm", pattern_rows, (32, 400, 8))}
    spec = _spec(llama, task, {"method": "wanda", "target_sparsity": 0.5})
    first = fresh.start_worker()
    job_id = fresh.submit(spec)
    checkpoints = fresh.artifact_dir / job_prefix("acme", job_id) / "checkpoints"
    progress = checkpoints / "oneshot" / "progress.json"

    def blocks_done() -> int:
        try:
            return int(json.loads(progress.read_text())["blocks_done"])
        except (OSError, ValueError):
            return 0

    fresh.wait(job_id, lambda _job: blocks_done() >= 2, timeout_s=240)
    first.send_signal(signal.SIGKILL)
    first.wait()
    killed_at = blocks_done()
    assert 2 <= killed_at < 10, "the job finished before the kill: make the blocks slower"

    fresh.start_worker()
    job = fresh.wait_final(job_id, timeout_s=240)
    assert (job.state, job.attempt) == ("succeeded", 2), (job.error_message, fresh.worker_logs())
    resumed = [e for e in fresh.store.list_events(job_id) if e.kind == "resumed"]
    assert len(resumed) == 1 and resumed[0].data["checkpoint_step"] == killed_at
    steps = fresh.store.list_steps(job_id)
    assert [row.step for row in steps] == list(range(1, 11))
    assert all(row.attempt == 1 for row in steps if row.step <= killed_at)
    assert all(row.attempt == 2 for row in steps if row.step > killed_at)
    manifest = json.loads(
        (fresh.artifact_dir / artifact_key("acme", job_id, "manifest.json")).read_text()
    )
    assert manifest["extra"]["oneshot"]["resumed_at"] == killed_at
    assert not checkpoints.exists()
