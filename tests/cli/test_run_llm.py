"""`adaprune run` with a one-shot LLM spec: examples/llm-wanda.yaml on the model and text that
examples/prepare_llm.py builds, in real subprocesses."""

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml
from safetensors.torch import load_file

from core.spec import JobSpec
from tests.core.hf_assets import fresh_metric

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "llm-wanda.yaml"
PREPARED = "/tmp/adaprune-llm"


def _python(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=os.environ | {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_llm_example_runs_offline_with_adaprune_run(tmp_path):
    prepared = _python(
        str(ROOT / "examples" / "prepare_llm.py"),
        str(tmp_path / "llm"),
        "--layers",
        "2",
        "--hidden",
        "32",
        "--train-steps",
        "30",
        cwd=tmp_path,
    )
    assert prepared.returncode == 0, prepared.stderr
    text = EXAMPLE.read_text().replace(PREPARED, str(tmp_path / "llm"))
    spec = yaml.safe_load(text)
    spec["prune"]["calibration_samples"] = 16
    spec["task"]["max_length"] = 16  # as the fresh process below tokenises
    spec["export"] = {"latency_batch_sizes": [1], "latency_seconds": 0.3}
    JobSpec.model_validate(spec)
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    done = _python("-m", "cli", "run", "spec.yaml", "--out", "art", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "val perplexity" in done.stdout and "target 0.50" in done.stdout
    manifest = json.loads((tmp_path / "art" / "manifest.json").read_text())
    (batch,) = manifest["latency"]["batches"]
    # the summary prints the text model's tokens/s dense vs pruned as the manifest holds them
    assert f"tokens/s b=1 x {batch['sequence_length']}" in done.stdout
    assert f"{batch['tokens_per_s']['dense']:,.0f}" in done.stdout
    with (tmp_path / "art" / "steps.csv").open() as handle:
        assert len(handle.read().strip().splitlines()) == 1 + 2  # a header and one row per block
    saved = load_file(str(tmp_path / "art" / "model" / "model.safetensors"))
    assert (
        abs(manifest["sparsity"]["per_layer"]["hf.model.layers.1.mlp.up_proj.weight"] - 0.5) < 1e-6
    )
    assert float((saved["model.layers.1.mlp.up_proj.weight"] == 0).float().mean()) == 0.5
    pruned = manifest["metrics"]["pruned"]["val"]
    value = fresh_metric(
        tmp_path / "art" / "model",
        "AutoModelForCausalLM",
        tmp_path / "llm" / "data" / "val.jsonl",
        cwd=tmp_path,
    )
    assert abs(value - pruned) <= 1e-5 * pruned
