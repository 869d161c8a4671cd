"""Channel pruning on architectures nobody here wrote: torchvision CNNs and a Hugging Face encoder.

Each job prunes to a parameter target, exports, and the artifact is loaded in a fresh Python
process, which must rebuild the pruned shapes (conv groups, attention head counts) and give
exactly the manifest's metric.
"""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from core.artifact import export
from core.data import TaskData
from core.errors import SpecInvalid
from core.loop import prune
from core.models import architecture, build_model
from core.spec import JobSpec

REPO = Path(__file__).resolve().parents[2]
FACTORIES = "tests.core.real_models"


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    model.eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(x))
    return float((logits.argmax(dim=-1).numpy() == y).mean())


def _images(num_classes: int = 10) -> TaskData:
    rng = np.random.default_rng(0)

    def split(n: int) -> tuple[np.ndarray, np.ndarray]:
        return rng.normal(size=(n, 3, 32, 32)).astype(np.float32), rng.integers(
            0, num_classes, size=n
        )

    (xt, yt), (xv, yv), (xs, ys) = split(16), split(16), split(8)
    return TaskData("images", xt, yt, xv, yv, xs, ys, num_classes, (3, 32, 32))


def _tokens(vocab: int = 32, length: int = 16) -> TaskData:
    rng = np.random.default_rng(1)

    def split(n: int) -> tuple[np.ndarray, np.ndarray]:
        ids = rng.integers(0, vocab, size=(n, length)).astype(np.float32)
        return ids, (ids[:, 0] % 3).astype(np.int64)

    (xt, yt), (xv, yv), (xs, ys) = split(32), split(16), split(8)
    return TaskData("tokens", xt, yt, xv, yv, xs, ys, 3, (length,))


def _spec(factory: str, target: float, kwargs: dict[str, Any]) -> JobSpec:
    return JobSpec.model_validate(
        {
            "model": {"entrypoint": f"{FACTORIES}:{factory}", "kwargs": kwargs},
            "task": {"dataset": "digits"},
            "prune": {
                "target_sparsity": target,
                "granularity": "channel",
                "criterion": "magnitude",
                "schedule": {"kind": "oneshot", "steps": 1},
                "max_metric_drop": 1.0,
                "calibration_batches": 1,
            },
            "finetune": {"pretrain_epochs": 0, "final_epochs": 0, "batch_size": 16},
            "seed": 0,
        }
    )


def _run(spec: JobSpec, data: TaskData, out: Path) -> tuple[nn.Module, dict[str, Any]]:
    torch.manual_seed(0)
    model = build_model(spec.model, input_shape=data.input_shape, num_classes=data.num_classes)
    outcome = prune(model, data, spec)
    manifest = export(
        out,
        model=outcome.model,
        dense_model=outcome.dense_model,
        result=outcome.result,
        spec=spec,
        architecture=architecture(
            spec.model, input_shape=data.input_shape, num_classes=data.num_classes
        ),
        data=data,
        evaluate=accuracy,
        latency_batch_sizes=(1,),
    )
    return outcome.model, manifest


def _fresh_process(out: Path, data: TaskData, tmp_path: Path, probe: str) -> dict[str, Any]:
    """Load the artifact in a new interpreter; return its metrics and `probe`'s value."""
    arrays = tmp_path / "split.npz"
    np.savez(arrays, x_val=data.x_val, y_val=data.y_val, x_test=data.x_test, y_test=data.y_test)
    script = "\n".join(
        [
            "import json",
            "import numpy as np, torch",
            "from torch import nn",
            "from core.artifact import load",
            inspect.getsource(accuracy),
            f"model = load({str(out)!r})",
            f"arrays = np.load({str(arrays)!r}, allow_pickle=False)",
            "val = accuracy(model, arrays['x_val'], arrays['y_val'])",
            "test = accuracy(model, arrays['x_test'], arrays['y_test'])",
            f"probe = {probe}",
            "print(json.dumps({'metrics': {'val': val, 'test': test}, 'probe': probe}))",
        ]
    )
    completed = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
            "PATH": "/usr/bin:/bin",
        },
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return dict(json.loads(completed.stdout.strip().splitlines()[-1]))


def _check_sparsity(manifest: dict[str, Any], target: float) -> float:
    sparsity = manifest["sparsity"]
    removed = 1.0 - sparsity["params_pruned"] / sparsity["params_dense"]
    assert removed == pytest.approx(target, abs=0.05)
    assert sparsity["overall"] == pytest.approx(removed)
    assert manifest["result"]["sparsity"] == pytest.approx(removed)
    return removed


# (factory, kwargs, target, the head's name, a probe run in the fresh process and its check)
CNNS = [
    ("resnet18", 0.5, "fc", "[m.groups for m in model.modules() if isinstance(m, nn.Conv2d)]"),
    (
        "mobilenet_v3_small",
        0.4,
        "classifier.3",
        "[m.groups for m in model.modules() if isinstance(m, nn.Conv2d)]",
    ),
]


@pytest.mark.parametrize(("factory", "target", "head", "probe"), CNNS)
def test_torchvision_cnn_channel_job_reloads_in_a_fresh_process(
    factory: str, target: float, head: str, probe: str, tmp_path: Path
) -> None:
    data = _images()
    pruned, manifest = _run(_spec(factory, target, {"num_classes": 10}), data, tmp_path / "a")
    _check_sparsity(manifest, target)
    assert pruned.get_submodule(head).out_features == 10
    fresh = _fresh_process(tmp_path / "a", data, tmp_path, probe)
    assert fresh["metrics"] == manifest["metrics"]["pruned"]
    groups = [m.groups for m in pruned.modules() if isinstance(m, nn.Conv2d)]
    assert fresh["probe"] == groups
    if factory == "mobilenet_v3_small":
        # depthwise convs lost channels, so their group counts dropped below the dense ones
        dense = [
            m.groups
            for m in build_model(
                _spec(factory, target, {}).model, input_shape=(3, 32, 32), num_classes=10
            ).modules()
            if isinstance(m, nn.Conv2d)
        ]
        assert any(now < before for now, before in zip(groups, dense, strict=True))


def test_bert_encoder_loses_whole_heads_and_ffn_width_and_reloads(tmp_path: Path) -> None:
    data = _tokens()
    target = 0.5
    pruned, manifest = _run(_spec("bert_classifier", target, {}), data, tmp_path / "a")
    _check_sparsity(manifest, target)
    assert pruned.get_submodule("head").out_features == 3
    attention = [layer.attention.self for layer in pruned.get_submodule("bert.encoder").layer]
    heads = [a.num_attention_heads for a in attention]
    assert min(heads) < 4
    for module in attention:
        assert module.attention_head_size == 16
        assert module.all_head_size == module.num_attention_heads * 16
        assert module.query.out_features == module.all_head_size == module.value.out_features
    ffn = [
        layer.intermediate.dense.out_features
        for layer in pruned.get_submodule("bert.encoder").layer
    ]
    assert max(ffn) < 256
    probe = (
        "[(l.attention.self.num_attention_heads, l.attention.self.all_head_size,"
        " l.intermediate.dense.out_features) for l in model.bert.encoder.layer]"
    )
    fresh = _fresh_process(tmp_path / "a", data, tmp_path, probe)
    assert fresh["metrics"] == manifest["metrics"]["pruned"]
    assert fresh["probe"] == [
        [a.num_attention_heads, a.all_head_size, f] for a, f in zip(attention, ffn, strict=True)
    ]


def test_channel_target_out_of_reach_is_refused_naming_the_embeddings() -> None:
    # with a large vocabulary most parameters sit in the word embeddings, which keep their width
    spec = _spec("bert_classifier", 0.6, {"vocab_size": 2000})
    data = _tokens()
    model = build_model(spec.model, input_shape=data.input_shape, num_classes=3)
    with pytest.raises(SpecInvalid, match="cannot be reached") as refused:
        prune(model, data, spec)
    assert "bert.embeddings.word_embeddings" in str(refused.value)
