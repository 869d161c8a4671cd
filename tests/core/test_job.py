import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from core.artifact import load, read_manifest
from core.data import builtin_task
from core.job import accuracy_of, run_job
from core.spec import JobSpec
from tests.core.toy_models import Classifier

ROOT = Path(__file__).resolve().parents[2]


def _spec(**overrides) -> JobSpec:
    base = {
        "model": {"entrypoint": "tests.core.toy_models:classifier"},
        "task": {"dataset": "breast_cancer"},
        "prune": {
            "target_sparsity": 0.6,
            "schedule": {"kind": "linear", "steps": 2},
            "max_metric_drop": 0.5,
        },
        "finetune": {"pretrain_epochs": 3, "final_epochs": 1, "lr": 0.01},
    }
    base.update(overrides)
    return JobSpec.model_validate(base)


def test_entrypoint_artifact_loads_straight_into_the_users_own_class(tmp_path):
    output = run_job(_spec(), out_dir=tmp_path / "art", work_dir=tmp_path / "work", device="cpu")
    state = load_file(str(tmp_path / "art" / "weights.safetensors"))
    assert set(state) == {"encoder.weight", "encoder.bias", "head.weight", "head.bias"}
    mine = Classifier()
    mine.load_state_dict(state)
    data = builtin_task("breast_cancer")
    assert accuracy_of(mine, data.x_val, data.y_val) == output.manifest["metrics"]["pruned"]["val"]
    assert output.manifest["architecture"]["entrypoint"] == "tests.core.toy_models:classifier"


def test_channel_pruned_artifact_is_physically_smaller_and_reloads_in_a_fresh_process(tmp_path):
    spec = _spec(
        model={"arch": "mlp", "kwargs": {"hidden": [32, 16]}},
        prune={
            "target_sparsity": 0.5,
            "granularity": "channel",
            "round_to": 4,
            "schedule": {"kind": "oneshot"},
            "max_metric_drop": 0.5,
        },
    )
    output = run_job(spec, out_dir=tmp_path / "art", work_dir=tmp_path / "work", device="cpu")
    manifest = read_manifest(tmp_path / "art")
    sizes = manifest["complexity"]
    assert sizes["pruned"]["params"] < 0.6 * sizes["dense"]["params"]
    widths = [shape[0] for name, shape in manifest["shapes"].items() if name.endswith("weight")]
    # target_sparsity is the fraction of parameters removed; widths move in steps of round_to
    assert abs(manifest["sparsity"]["removed_fraction"] - 0.5) < 0.1
    assert widths[0] < 32 and widths[1] < 16 and all(width % 4 == 0 for width in widths[:-1])
    data = builtin_task("breast_cancer")
    np.save(tmp_path / "x.npy", data.x_val)
    np.save(tmp_path / "y.npy", data.y_val)
    code = (
        "import sys, numpy as np; from pathlib import Path; from core.artifact import load;"
        "from core.job import accuracy_of; d = Path(sys.argv[1]);"
        "print(repr(accuracy_of(load(d / 'art'), np.load(d / 'x.npy'), np.load(d / 'y.npy'))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert float(done.stdout.strip()) == output.manifest["metrics"]["pruned"]["val"]
    assert isinstance(load(tmp_path / "art"), torch.nn.Module)


def test_integer_token_ids_reach_an_embedding_model_as_integers(tmp_path):
    rng = np.random.default_rng(0)

    def split(count: int) -> tuple[np.ndarray, np.ndarray]:
        ids = rng.integers(0, 16, size=(count, 6), dtype=np.int64)
        # the label is whether token 3 occurs: learnable from the embedding alone
        return ids, (ids == 3).any(axis=1).astype(np.int64)

    arrays = {}
    for name, count in (("train", 96), ("val", 32), ("test", 32)):
        arrays[f"x_{name}"], arrays[f"y_{name}"] = split(count)
    np.savez(tmp_path / "tokens.npz", **arrays)
    spec = _spec(
        model={"entrypoint": "tests.core.toy_models:token_classifier"},
        task={"data": f"file://{tmp_path}/tokens.npz"},
        export={"latency_batch_sizes": [2], "latency_seconds": 1.0},
    )
    output = run_job(spec, out_dir=tmp_path / "art", work_dir=tmp_path / "work", device="cpu")
    assert output.manifest["latency"]["batches"][0]["batch_size"] == 2
    assert output.manifest["architecture"]["input_dtype"] == "int64"
    model = load(tmp_path / "art")
    assert (
        accuracy_of(model, arrays["x_val"], arrays["y_val"])
        == (output.manifest["metrics"]["pruned"]["val"])
    )
    assert output.manifest["sparsity"]["sparsity_prunable"] > 0.3
    excluded = output.manifest["sparsity"]["excluded"]
    assert excluded[0]["name"] == "embed"
    assert excluded[0]["params"] == 16 * 8
    assert excluded[0]["reason"].startswith("embedding")


def test_export_latency_counts_against_the_runtime_budget(tmp_path):
    spec = _spec(
        budget={"max_runtime_s": 0.001},
        export={"latency_batch_sizes": [1, 32], "latency_seconds": 30.0},
    )
    output = run_job(spec, out_dir=tmp_path / "art", work_dir=tmp_path / "work", device="cpu")
    assert output.manifest["result"]["stop_reason"] == "max_runtime"
    latency = output.manifest["latency"]
    assert latency["batches"] == []
    budget = latency["budget"]
    assert budget["limited_by_budget"] is True
    assert budget["seconds_asked"] == 30.0
    assert budget["time_left_s"] < 0.001
    assert budget["skipped_batch_sizes"] == [1, 32]
    assert budget["seconds_spent"] < 5.0


def test_a_small_models_job_runs_on_one_thread_unless_told_otherwise(tmp_path):
    before = torch.get_num_threads()
    try:
        output = run_job(_spec(), out_dir=tmp_path / "a", work_dir=tmp_path / "wa", device="cpu")
        assert output.manifest["latency"]["torch_threads"] == 1
        output = run_job(
            _spec(), out_dir=tmp_path / "b", work_dir=tmp_path / "wb", device="cpu", threads=2
        )
        assert output.manifest["latency"]["torch_threads"] == 2
    finally:
        torch.set_num_threads(before)
