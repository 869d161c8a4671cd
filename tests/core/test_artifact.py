from __future__ import annotations

import copy
import csv
import hashlib
import inspect
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors import safe_open
from torch import nn
from torch.nn.utils import prune

import core.artifact as artifact
from core.artifact import (
    LATENCY_BATCH_SIZES,
    export,
    load,
    measure_latency,
    read_manifest,
    sha256_file,
)
from core.contract.records import STEP_COLUMNS, Manifest
from core.data import TaskData, builtin_task
from core.errors import ArtifactInvalid
from core.latency import MAX_ROUNDS
from core.models import architecture, build_from_architecture
from core.report import PruneResult, StepReport
from core.spec import JobSpec, ModelRef, PruneSpec, TaskRef
from core.structured import prune_channels

REPO = Path(__file__).resolve().parents[2]


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    model.eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(x))
    return float((logits.argmax(dim=-1).numpy() == y).mean())


def _spec(granularity: str = "unstructured") -> JobSpec:
    return JobSpec(
        name="artifact-test",
        model=ModelRef(arch="mlp", kwargs={"hidden": [16, 8]}),
        task=TaskRef(dataset="breast_cancer"),
        prune=PruneSpec(target_sparsity=0.5, granularity=granularity, max_metric_drop=0.05),
        seed=7,
    )


def _step(*values: Any) -> StepReport:
    return StepReport(**dict(zip(STEP_COLUMNS, values, strict=True)))


def _result(dense_metric: float, metric: float) -> PruneResult:
    steps = [
        _step(0, 0.0, 0.0, dense_metric, 0.7, "baseline", 0.01, 0),
        _step(1, 0.3, 0.3, dense_metric, 0.6, "accelerate", 0.02, 1),
        _step(2, 0.5, 0.5, metric, 0.65, "keep", 0.03, 1),
    ]
    return PruneResult(
        criterion="magnitude",
        dense_metric=dense_metric,
        metric=metric,
        sparsity=0.5,
        best_sparsity_within_tolerance=0.5,
        within_tolerance=True,
        stop_reason="target_reached",
        epochs=2,
        seconds=0.06,
        steps=steps,
    )


@pytest.fixture(scope="module")
def data() -> TaskData:
    return builtin_task("breast_cancer")


@pytest.fixture(scope="module")
def recipe(data: TaskData) -> dict[str, Any]:
    return architecture(_spec().model, input_shape=data.input_shape, num_classes=data.num_classes)


@pytest.fixture(scope="module")
def models(recipe: dict[str, Any]) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    dense = build_from_architecture(recipe)
    pruned = copy.deepcopy(dense)
    # torch's own pruning leaves weight_orig / weight_mask behind: export must fold them away.
    for module in pruned.modules():
        if isinstance(module, nn.Linear):
            prune.l1_unstructured(module, name="weight", amount=0.5)  # type: ignore[no-untyped-call]
    return dense, pruned


@pytest.fixture(scope="module")
def exported(
    tmp_path_factory: pytest.TempPathFactory,
    data: TaskData,
    recipe: dict[str, Any],
    models: tuple[nn.Module, nn.Module],
) -> tuple[Path, dict[str, Any]]:
    dense, pruned = models
    out = tmp_path_factory.mktemp("export") / "artifact"
    result = _result(
        accuracy(dense, data.x_val, data.y_val), accuracy(pruned, data.x_val, data.y_val)
    )
    manifest = export(
        out,
        model=pruned,
        dense_model=dense,
        result=result,
        spec=_spec(),
        architecture=recipe,
        data=data,
        evaluate=accuracy,
        extra={"job_id": "abc"},
    )
    return out, manifest


def _safetensors_arrays(path: Path) -> dict[str, np.ndarray]:
    with safe_open(str(path), framework="np") as handle:
        return {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118


def test_export_then_load_gives_bit_identical_outputs(
    exported: tuple[Path, dict[str, Any]], models: tuple[nn.Module, nn.Module], data: TaskData
) -> None:
    out, _ = exported
    _, pruned = models
    loaded = load(out)
    x = torch.from_numpy(data.x_val)
    with torch.no_grad():
        assert torch.equal(loaded(x), pruned.eval()(x))
    assert not loaded.training


def test_load_in_a_fresh_process_reproduces_the_manifest_metric_exactly(
    exported: tuple[Path, dict[str, Any]], data: TaskData, tmp_path: Path
) -> None:
    out, manifest = exported
    arrays = tmp_path / "split.npz"
    assert data.x_test is not None and data.y_test is not None
    np.savez(arrays, x_val=data.x_val, y_val=data.y_val, x_test=data.x_test, y_test=data.y_test)
    script = "\n".join(
        [
            "import sys, json",
            "import numpy as np, torch",
            "from torch import nn",
            "from core.artifact import load",
            inspect.getsource(accuracy),
            f"model = load({str(out)!r})",
            f"arrays = np.load({str(arrays)!r}, allow_pickle=False)",
            "val = accuracy(model, arrays['x_val'], arrays['y_val'])",
            "test = accuracy(model, arrays['x_test'], arrays['y_test'])",
            "print(json.dumps({'val': val, 'test': test}))",
        ]
    )
    completed = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        # a clean environment, but the same packages: keep any PYTHONPATH the suite runs with
        env={
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
            "PATH": "/usr/bin:/bin",
        },
    )
    assert completed.returncode == 0, completed.stderr
    metrics = json.loads(completed.stdout.strip().splitlines()[-1])
    assert metrics == manifest["metrics"]["pruned"]


def test_manifest_metrics_come_from_evaluate_on_both_models(
    exported: tuple[Path, dict[str, Any]], models: tuple[nn.Module, nn.Module], data: TaskData
) -> None:
    _, manifest = exported
    dense, pruned = models
    assert data.x_test is not None and data.y_test is not None
    assert manifest["metrics"]["dense"] == {
        "val": accuracy(dense, data.x_val, data.y_val),
        "test": accuracy(dense, data.x_test, data.y_test),
    }
    assert manifest["metrics"]["pruned"] == {
        "val": accuracy(pruned, data.x_val, data.y_val),
        "test": accuracy(pruned, data.x_test, data.y_test),
    }


def test_manifest_sparsity_equals_zeros_counted_in_the_weights_file(
    exported: tuple[Path, dict[str, Any]],
) -> None:
    out, manifest = exported
    arrays = _safetensors_arrays(out / "weights.safetensors")
    weights = {key: value for key, value in arrays.items() if key.endswith(".weight")}
    zeros = sum(int((value == 0).sum()) for value in weights.values())
    total = sum(value.size for value in weights.values())
    sparsity = manifest["sparsity"]
    assert sparsity["overall"] == zeros / total
    assert sparsity["overall"] == pytest.approx(0.5, abs=0.01)
    assert sparsity["per_layer"] == {
        key: float((value == 0).sum()) / value.size for key, value in weights.items()
    }


def test_weights_file_holds_no_pruning_reparametrisation(
    exported: tuple[Path, dict[str, Any]], models: tuple[nn.Module, nn.Module]
) -> None:
    out, _ = exported
    dense, _ = models
    with safe_open(str(out / "weights.safetensors"), framework="np") as handle:
        keys = set(handle.keys())
        assert handle.metadata() == {"format": "adaprune/1"}
    assert not [key for key in keys if "weight_orig" in key or "mask" in key]
    assert keys == set(dense.state_dict())


def test_tampering_one_byte_of_the_weights_raises_artifact_invalid(
    exported: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    out, _ = exported
    copy_dir = tmp_path / "tampered"
    copy_dir.mkdir()
    for file in out.iterdir():
        (copy_dir / file.name).write_bytes(file.read_bytes())
    weights = copy_dir / "weights.safetensors"
    original = weights.read_bytes()
    raw = bytearray(original)
    raw[-3] ^= 0x01
    weights.write_bytes(bytes(raw))
    with pytest.raises(ArtifactInvalid, match=r"weights\.safetensors"):
        load(copy_dir)
    weights.write_bytes(original)
    assert isinstance(load(copy_dir), nn.Module)
    (copy_dir / "curve.png").unlink()
    with pytest.raises(ArtifactInvalid, match=r"curve\.png"):
        load(copy_dir, verify=True)


def test_missing_manifest_raises_artifact_invalid(tmp_path: Path) -> None:
    with pytest.raises(ArtifactInvalid, match=r"manifest\.json"):
        load(tmp_path)


def test_failed_export_leaves_neither_out_dir_nor_temp_dir(
    tmp_path: Path, data: TaskData, recipe: dict[str, Any], models: tuple[nn.Module, nn.Module]
) -> None:
    dense, pruned = models

    def broken(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
        raise RuntimeError("evaluation failed")

    out = tmp_path / "jobs" / "artifact"
    with pytest.raises(RuntimeError, match="evaluation failed"):
        export(
            out,
            model=pruned,
            dense_model=dense,
            result=_result(0.9, 0.9),
            spec=_spec(),
            architecture=recipe,
            data=data,
            evaluate=broken,
        )
    assert not out.exists()
    assert list(out.parent.iterdir()) == []


def test_export_refuses_an_out_dir_with_content_and_accepts_an_empty_one(
    tmp_path: Path, data: TaskData, recipe: dict[str, Any], models: tuple[nn.Module, nn.Module]
) -> None:
    dense, pruned = models
    arguments: dict[str, Any] = {
        "model": pruned,
        "dense_model": dense,
        "result": _result(0.9, 0.9),
        "spec": _spec(),
        "architecture": recipe,
        "data": data,
        "evaluate": accuracy,
        "latency_batch_sizes": (2,),
    }
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "old.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="taken"):
        export(taken, **arguments)
    assert (taken / "old.txt").read_text() == "keep me"
    empty = tmp_path / "empty"
    empty.mkdir()
    export(empty, **arguments)
    assert (empty / "manifest.json").is_file()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["empty", "taken"]


def test_latency_entries_are_measured_for_each_batch_size_and_model(
    exported: tuple[Path, dict[str, Any]],
) -> None:
    _, manifest = exported
    latency = manifest["latency"]
    assert latency["device"] == "cpu"
    assert latency["torch_threads"] == torch.get_num_threads()
    assert [entry["batch_size"] for entry in latency["batches"]] == list(LATENCY_BATCH_SIZES)
    for entry in latency["batches"]:
        assert 1 <= entry["rounds"] <= MAX_ROUNDS
        for which in ("dense", "pruned", "control"):
            timing = entry[which]
            assert set(timing) == {"median_s", "p90_s", "runs"}
            assert 0 < timing["median_s"] <= timing["p90_s"]
            assert entry["rounds"] <= timing["runs"] <= 10 * entry["rounds"]
        low, high = entry["speedup_interval"]
        assert low <= entry["speedup"] <= high
        # masks on dense kernels: measured, but no speed is claimed
        assert entry["verdict"] == "not_expected"
        assert entry["faster"] is False
    assert latency["speedup_expected"] is False
    assert "no speedup is expected" in latency["note"]
    assert latency["budget"]["limited_by_budget"] is False
    assert len(latency["load_average"]["before"]) == 3


def test_measure_latency_times_eval_mode_and_restores_training_mode() -> None:
    seen: list[tuple[bool, bool]] = []

    class Probe(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append((self.training, torch.is_inference_mode_enabled()))
            return x * 2

    model = Probe().train()
    timing = measure_latency(model, example_inputs=torch.ones(3), warmup=2, repeats=4)
    assert timing["runs"] == 4
    assert len(seen) == 6
    assert set(seen) == {(False, True)}
    assert model.training
    with pytest.raises(ValueError, match="repeats"):
        measure_latency(model, example_inputs=torch.ones(3), repeats=0)


def test_measure_latency_stops_at_its_time_budget() -> None:
    class Slow(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            total = x
            for _ in range(2000):
                total = total + 1
            return total

    timing = measure_latency(Slow(), example_inputs=torch.ones(1), warmup=0, max_seconds=1e-6)
    assert timing["runs"] == 1
    assert timing["median_s"] > 0


def test_the_manifest_record_names_every_field_export_writes(
    exported: tuple[Path, dict[str, Any]],
) -> None:
    out, manifest = exported
    assert set(manifest) == set(Manifest.model_fields)
    record = artifact.manifest_record(read_manifest(out))
    assert record.model_dump(mode="json", exclude={"files"}) == {
        k: v for k, v in manifest.items() if k != "files"
    }
    assert {name: entry.model_dump() for name, entry in record.files.items()} == manifest["files"]


def test_manifest_file_hashes_match_the_files_on_disk(
    exported: tuple[Path, dict[str, Any]],
) -> None:
    out, manifest = exported
    assert set(manifest["files"]) == {"weights.safetensors", "steps.csv", "curve.png"}
    for name, entry in manifest["files"].items():
        raw = (out / name).read_bytes()
        assert entry == {"sha256": hashlib.sha256(raw).hexdigest(), "bytes": len(raw)}
        assert sha256_file(out / name) == entry["sha256"]
    assert read_manifest(out) == manifest
    assert sorted(path.name for path in out.iterdir()) == [
        "curve.png",
        "manifest.json",
        "steps.csv",
        "weights.safetensors",
    ]
    assert not [path for path in out.parent.iterdir() if path.name.startswith(".tmp-")]


def test_manifest_records_spec_recipe_sizes_versions_and_result(
    exported: tuple[Path, dict[str, Any]], recipe: dict[str, Any]
) -> None:
    _, manifest = exported
    assert manifest["spec"] == _spec().model_dump(mode="json")
    assert manifest["architecture"] == recipe
    assert manifest["seed"] == 7
    assert manifest["extra"] == {"job_id": "abc"}
    assert manifest["created_at"].endswith("+00:00")
    assert "steps" not in manifest["result"]
    assert manifest["result"]["stop_reason"] == "target_reached"
    dense, pruned = manifest["complexity"]["dense"], manifest["complexity"]["pruned"]
    # mlp 30 -> 16 -> 8 -> 2: 30*16+16 + 16*8+8 + 8*2+2 parameters.
    assert dense["params"] == pruned["params"] == 650
    assert dense["macs"] > 0
    # half of each Linear weight (624 weights) is zero; biases stay.
    assert pruned["nonzero"] == dense["nonzero"] - 312
    assert manifest["versions"]["torch"] == torch.__version__
    assert manifest["versions"]["python"] == ".".join(map(str, sys.version_info[:3]))


def test_steps_csv_and_curve_describe_every_step(
    exported: tuple[Path, dict[str, Any]],
) -> None:
    out, _ = exported
    with (out / "steps.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == [
        "step",
        "target_sparsity",
        "sparsity",
        "metric",
        "loss",
        "decision",
        "seconds",
        "epochs",
    ]
    assert [row["decision"] for row in rows] == ["baseline", "accelerate", "keep"]
    assert [float(row["target_sparsity"]) for row in rows] == [0.0, 0.3, 0.5]
    assert (out / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_channel_pruned_model_is_rebuilt_from_its_recorded_shapes(
    tmp_path: Path, data: TaskData, recipe: dict[str, Any], models: tuple[nn.Module, nn.Module]
) -> None:
    dense, _ = models
    pruned = copy.deepcopy(dense)
    scores = {
        name: param.detach().abs()
        for name, param in pruned.named_parameters()
        if name.endswith(".weight")
    }
    prune_channels(
        pruned,
        example_inputs=torch.from_numpy(data.x_val[:2]),
        scores=scores,
        ratio=0.5,
        dense_widths=None,
        round_to=4,
    )
    out = tmp_path / "channel"
    manifest = export(
        out,
        model=pruned,
        dense_model=dense,
        result=_result(0.9, 0.9),
        spec=_spec("channel"),
        architecture=recipe,
        data=data,
        evaluate=accuracy,
        latency_batch_sizes=(4,),
    )
    loaded = load(out)
    x = torch.from_numpy(data.x_val)
    with torch.no_grad():
        assert torch.equal(loaded(x), pruned.eval()(x))
    params_pruned = sum(param.numel() for param in pruned.parameters())
    sparsity = manifest["sparsity"]
    assert sparsity["params_dense"] == 650
    assert sparsity["params_pruned"] == params_pruned < 650
    assert sparsity["removed_fraction"] == 1 - params_pruned / 650
    assert manifest["shapes"] == {
        name: list(tensor.shape) for name, tensor in pruned.state_dict().items()
    }
    assert manifest["shapes"]["1.weight"][0] < 16
    # a physically smaller model may be faster: the verdict is measured, not "not_expected"
    assert manifest["latency"]["speedup_expected"] is True
    assert manifest["latency"]["batches"][0]["verdict"] in (
        "faster",
        "slower",
        "no_difference",
        "inconclusive",
    )


def test_export_with_no_budget_left_measures_no_latency_and_says_so(
    tmp_path: Path, data: TaskData, recipe: dict[str, Any], models: tuple[nn.Module, nn.Module]
) -> None:
    dense, pruned = models
    manifest = export(
        tmp_path / "late",
        model=pruned,
        dense_model=dense,
        result=_result(0.9, 0.9),
        spec=_spec(),
        architecture=recipe,
        data=data,
        evaluate=accuracy,
        time_left_s=0.0,
    )
    latency = manifest["latency"]
    assert latency["batches"] == []
    assert latency["budget"]["limited_by_budget"] is True
    assert latency["budget"]["skipped_batch_sizes"] == list(LATENCY_BATCH_SIZES)
    assert "budget.max_runtime_s" in latency["budget"]["note"]


def test_sparsity_counts_every_weight_in_the_file_and_lists_what_is_excluded(
    exported: tuple[Path, dict[str, Any]],
) -> None:
    out, manifest = exported
    arrays = _safetensors_arrays(out / "weights.safetensors")
    weights = {k: v for k, v in arrays.items() if k.endswith((".weight", ".bias"))}
    zeros = sum(int((v == 0).sum()) for v in weights.values())
    total = sum(v.size for v in weights.values())
    sparsity = manifest["sparsity"]
    assert sparsity["sparsity_all_weights"] == zeros / total
    matrices = {k: v for k, v in weights.items() if v.ndim == 2}
    assert sparsity["sparsity_prunable"] == sum(int((v == 0).sum()) for v in matrices.values()) / (
        sum(v.size for v in matrices.values())
    )
    assert sparsity["sparsity_all_weights"] < sparsity["sparsity_prunable"]
    biases = sum(v.size for k, v in weights.items() if v.ndim == 1)
    assert sparsity["excluded"] == [
        {"name": "biases", "params": biases, "reason": "biases of prunable layers stay dense"}
    ]


def test_load_never_unpickles(
    exported: tuple[Path, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    out, _ = exported

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("unpickling was attempted")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    assert isinstance(load(out), nn.Module)
    source = inspect.getsource(artifact)
    assert "torch.load" not in source
    assert "import pickle" not in source
    assert "pickle." not in source


def test_parametrized_masks_are_folded_into_plain_weights() -> None:
    class KeepUpperHalf(nn.Module):
        def forward(self, weight: torch.Tensor) -> torch.Tensor:
            mask = torch.zeros_like(weight)
            mask[: weight.shape[0] // 2] = 1
            return weight * mask

    torch.manual_seed(0)
    first = nn.Linear(4, 6)
    model = nn.Sequential(first, nn.ReLU(), nn.Linear(6, 2))
    plain_keys = set(model.state_dict())
    torch.nn.utils.parametrize.register_parametrization(first, "weight", KeepUpperHalf())
    expected = first.weight.detach().clone()
    folded = artifact.plain_copy(model)
    assert set(folded.state_dict()) == plain_keys
    assert torch.equal(folded.state_dict()["0.weight"], expected)
    assert int((expected[3:] == 0).sum()) == 12
    assert torch.nn.utils.parametrize.is_parametrized(first)


def test_manifest_naming_a_file_outside_the_artifact_is_refused(
    exported: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    out, manifest = exported
    copy_dir = tmp_path / "escaped"
    copy_dir.mkdir()
    for file in out.iterdir():
        (copy_dir / file.name).write_bytes(file.read_bytes())
    outside = tmp_path / "secret.txt"
    outside.write_text("outside")
    files = dict(manifest["files"])
    files["../secret.txt"] = {"sha256": sha256_file(outside), "bytes": 7}
    (copy_dir / "manifest.json").write_text(json.dumps({**manifest, "files": files}))
    with pytest.raises(ArtifactInvalid, match="outside the artifact"):
        load(copy_dir)
    (copy_dir / "manifest.json").write_text(json.dumps({**manifest, "format": "other/9"}))
    with pytest.raises(ArtifactInvalid, match="other/9"):
        read_manifest(copy_dir)
