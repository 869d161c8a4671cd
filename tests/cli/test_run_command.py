"""`adaprune run`: a real subprocess, a real tiny job, and every bad input refused cleanly."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from core import artifact
from core.data import builtin_task
from core.job import accuracy_of

ROOT = Path(__file__).resolve().parents[2]

TINY = {
    "name": "tiny",
    "model": {"arch": "mlp", "kwargs": {"hidden": [16]}},
    "task": {"dataset": "breast_cancer"},
    "prune": {
        "target_sparsity": 0.7,
        "criterion": "adaptive",
        "max_metric_drop": 0.05,
        "schedule": {"kind": "adaptive", "steps": 3},
    },
    "finetune": {"pretrain_epochs": 5, "epochs_per_step": 1, "final_epochs": 1, "lr": 0.01},
    "seed": 1,
}


def adaprune(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


def write_spec(path: Path, spec: dict) -> Path:
    path.write_text(yaml.safe_dump(spec))
    return path


def test_run_writes_a_verified_artifact_that_reloads_with_its_metric(tmp_path):
    spec = write_spec(tmp_path / "spec.yaml", TINY)
    done = adaprune("run", str(spec), "--out", str(tmp_path / "art"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "val accuracy" in done.stdout and "latency" in done.stdout
    # unstructured masks: the ratio is shown with the verdict that claims no speedup
    assert "not_expected" in done.stdout
    assert "sparsity, all weights" in done.stdout
    result = json.loads((tmp_path / "art" / "manifest.json").read_text())["result"]
    verdict = "reached" if result["target_reached"] else "missed"
    assert f"target 0.70 {verdict}: sparsity" in done.stdout
    manifest = json.loads((tmp_path / "art" / "manifest.json").read_text())
    assert {"weights.safetensors", "steps.csv", "curve.png"} <= set(manifest["files"])
    assert manifest["sparsity"]["overall"] > 0.3
    model = artifact.load(tmp_path / "art")
    data = builtin_task("breast_cancer")
    assert accuracy_of(model, data.x_val, data.y_val) == manifest["metrics"]["pruned"]["val"]
    assert all(entry["pruned"]["median_s"] > 0 for entry in manifest["latency"]["batches"])


def test_run_accepts_json_specs(tmp_path):
    spec = tmp_path / "spec.json"
    tiny = TINY | {"prune": TINY["prune"] | {"schedule": {"kind": "oneshot", "steps": 1}}}
    spec.write_text(json.dumps(tiny))
    done = adaprune("run", str(spec), "--out", str(tmp_path / "art"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "art" / "weights.safetensors").is_file()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda s: s["prune"].update(target_sparsity=1.5), "prune.target_sparsity"),
        (lambda s: s["prune"].update(criterion="random"), "prune.criterion"),
        (
            lambda s: s["task"].update(dataset=None, data="http://example.com/x.npz"),
            "scheme 'http'",
        ),
        (lambda s: s.update(extra_field=1), "extra_field"),
    ],
)
def test_bad_spec_is_one_line_error_and_nothing_is_written(tmp_path, mutate, message):
    spec = json.loads(json.dumps(TINY))
    mutate(spec)
    path = write_spec(tmp_path / "spec.yaml", spec)
    done = adaprune("run", str(path), "--out", str(tmp_path / "art"), cwd=tmp_path)
    assert done.returncode == 2
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "art").exists()


def test_missing_spec_file_is_named(tmp_path):
    done = adaprune(
        "run", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "art"), cwd=tmp_path
    )
    assert done.returncode == 2
    assert "nope.yaml" in done.stderr and "not found" in done.stderr


def test_unparsable_spec_file_is_refused(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text("model: [unclosed\n")
    done = adaprune("run", str(path), "--out", str(tmp_path / "art"), cwd=tmp_path)
    assert done.returncode == 2
    assert "not valid YAML/JSON" in done.stderr


def test_missing_data_file_fails_without_leaving_an_artifact(tmp_path):
    spec = TINY | {"task": {"data": f"file://{tmp_path}/absent.npz"}}
    path = write_spec(tmp_path / "spec.yaml", spec)
    done = adaprune("run", str(path), "--out", str(tmp_path / "art"), cwd=tmp_path)
    assert done.returncode == 1
    assert "data_invalid" in done.stderr and "absent.npz" in done.stderr
    assert not (tmp_path / "art").exists()
    assert "Traceback" not in done.stderr


def test_malformed_npz_fails_with_the_array_named(tmp_path):
    np.savez(
        tmp_path / "task.npz",
        x_train=np.zeros((4, 3)),
        y_train=np.zeros(4),
        x_val=np.zeros((2, 3)),
        y_val=np.array([0.0, np.nan]),
    )
    spec = TINY | {"task": {"data": f"file://{tmp_path}/task.npz"}}
    path = write_spec(tmp_path / "spec.yaml", spec)
    done = adaprune("run", str(path), "--out", str(tmp_path / "art"), cwd=tmp_path)
    assert done.returncode == 1
    assert "y_val" in done.stderr
    assert not (tmp_path / "art").exists()


def test_existing_output_directory_with_content_is_refused(tmp_path):
    (tmp_path / "art").mkdir()
    (tmp_path / "art" / "keep.txt").write_text("mine")
    path = write_spec(tmp_path / "spec.yaml", TINY)
    done = adaprune("run", str(path), "--out", str(tmp_path / "art"), cwd=tmp_path)
    assert done.returncode == 2
    assert "already exists" in done.stderr
    assert (tmp_path / "art" / "keep.txt").read_text() == "mine"
