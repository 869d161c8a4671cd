"""Width and depth pruning of BERT, Llama (grouped-query attention) and Qwen2: the saved model
loads with `from_pretrained` in a fresh process and gives the same logits, the removed fraction
meets the target, and the importances pick the heads, channels and blocks that matter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

from core.errors import UnsupportedArchitecture
from core.hf.shrink.depth import depth_prune
from core.hf.shrink.families import family_of
from core.hf.shrink.importance import width_importance
from core.hf.shrink.slicing import cut_width, geometry_of, rebuild, rewrite_config
from core.hf.shrink.width import choose, width_prune
from tests.core.shrink_models import calibration, forward_of, tiny

TARGETS = {"width": 0.3, "hidden": 0.3, "depth": 0.25}
CASES = [
    ("bert", "width"),
    ("bert", "hidden"),
    ("bert", "depth"),
    ("bert-base", "width"),
    ("llama", "width"),
    ("llama", "hidden"),
    ("llama", "depth"),
    ("qwen2", "width"),
    ("qwen2", "hidden"),
    ("qwen2", "depth"),
]
AUTO = {"bert": "AutoModelForSequenceClassification", "bert-base": "AutoModel"}

# No adaprune package can be imported here (nor the repository seen): the pruned directories
# are loaded by transformers alone and their logits written for the test to compare.
FRESH = r"""
import importlib.abc, json, sys
class NoAdaprune(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("core", "service", "workers", "cli", "tests"):
            raise ImportError(f"{name} must not be needed")
        return None
sys.meta_path.insert(0, NoAdaprune())
try:
    import torchvision
except Exception:
    for name in [m for m in sys.modules if m.split(".")[0] == "torchvision"]:
        del sys.modules[name]
    sys.modules["torchvision"] = None
import torch, transformers
from safetensors.torch import load_file, save_file
jobs = json.loads(sys.argv[1])
inputs = load_file(sys.argv[2])
out = {}
for name, (directory, auto) in jobs.items():
    model = getattr(transformers, auto).from_pretrained(directory).eval()
    with torch.no_grad():
        output = model(input_ids=inputs["ids"], attention_mask=inputs["mask"])
        out[name] = getattr(output, "logits", None)
        if out[name] is None:
            out[name] = output.last_hidden_state
save_file(out, sys.argv[3])
"""


def _prune(family: str, mode: str) -> Any:
    model = tiny(family)
    batches = calibration()
    if mode == "depth":
        return model, depth_prune(
            model, target=TARGETS[mode], batches=batches, device=torch.device("cpu")
        )
    shrunk = width_prune(
        model,
        target=TARGETS[mode],
        round_to=8,
        hidden=mode == "hidden",
        batches=batches,
        forward=forward_of(model),
    )
    return model, shrunk


@pytest.fixture(scope="module")
def pruned(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("shrink")
    batch = calibration(seed=7, batches=1)[0]
    ids, mask = batch[:, 0].contiguous(), batch[:, 1].contiguous()
    save_file({"ids": ids, "mask": mask}, str(root / "inputs.safetensors"))
    found: dict[str, Any] = {}
    for family, mode in CASES:
        name = f"{family}-{mode}"
        dense, shrunk = _prune(family, mode)
        shrunk.model.save_pretrained(str(root / name))
        with torch.no_grad():
            logits = forward_of(shrunk.model)(batch)
        found[name] = {"dense": dense, "shrunk": shrunk, "logits": logits, "dir": root / name}
    jobs = {
        name: [str(item["dir"]), AUTO.get(name.rsplit("-", 1)[0], "AutoModelForCausalLM")]
        for name, item in found.items()
    }
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run(
        [
            sys.executable,
            "-c",
            FRESH,
            json.dumps(jobs),
            str(root / "inputs.safetensors"),
            str(root / "fresh.safetensors"),
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    fresh = load_file(str(root / "fresh.safetensors"))
    for name, item in found.items():
        item["fresh"] = fresh[name]
    return found


@pytest.mark.parametrize(("family", "mode"), CASES)
def test_the_pruned_model_loads_in_a_fresh_process_with_the_same_logits(pruned, family, mode):
    item = pruned[f"{family}-{mode}"]
    assert item["fresh"].shape == item["logits"].shape
    torch.testing.assert_close(item["fresh"], item["logits"], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("family", "mode"), CASES)
def test_the_removed_fraction_is_within_5_points_of_the_target(pruned, family, mode):
    item = pruned[f"{family}-{mode}"]
    dense = sum(p.numel() for p in item["dense"].parameters())
    after = sum(p.numel() for p in item["shrunk"].model.parameters())
    assert 1 - after / dense == pytest.approx(TARGETS[mode], abs=0.05)
    assert item["shrunk"].details["planned_removed_fraction"] == pytest.approx(1 - after / dense)


@pytest.mark.parametrize(("family", "mode"), CASES)
def test_the_saved_config_states_the_new_sizes(pruned, family, mode):
    item = pruned[f"{family}-{mode}"]
    config = json.loads((item["dir"] / "config.json").read_text())
    sizes = item["shrunk"].details["pruned_sizes"]
    dense = item["shrunk"].details["dense_sizes"]
    assert config["num_hidden_layers"] == sizes["layers"]
    assert config["intermediate_size"] == sizes["intermediate"]
    assert config["num_attention_heads"] == sizes["heads"]
    assert config["hidden_size"] == sizes["hidden"]
    if not family.startswith("bert"):
        assert config["num_key_value_heads"] == sizes["kv_heads"]
        assert config["head_dim"] == dense["head_dim"]
    if family == "qwen2":
        assert len(config["layer_types"]) == sizes["layers"]
    if mode == "depth":
        assert sizes["layers"] < dense["layers"]
        assert len(item["shrunk"].details["removed_blocks"]) == dense["layers"] - sizes["layers"]
    else:
        assert sizes["intermediate"] < dense["intermediate"]
        assert sizes["intermediate"] % 8 == 0
    if mode == "hidden":
        assert sizes["hidden"] < dense["hidden"] and sizes["hidden"] % 8 == 0
        if family == "bert":  # its head size is hidden_size / num_attention_heads
            assert sizes["head_dim"] * sizes["heads"] == sizes["hidden"] < dense["hidden"]
    # the head keeps its outputs
    if family == "bert":
        assert item["fresh"].shape[-1] == item["dense"].config.num_labels
    if not family.startswith("bert"):
        assert config["vocab_size"] == item["dense"].config.vocab_size


def test_width_importance_drops_the_dead_key_value_groups_and_channels():
    model = tiny("llama")
    family, dense = family_of(model), geometry_of(model.config)
    dead_channels = [3, 17, 40, 41, 90, 100, 101, 127]
    with torch.no_grad():
        for layer in model.model.layers:
            # groups 1 and 3 have zero values, so their query heads output nothing
            for group in (1, 3):
                layer.self_attn.v_proj.weight[
                    group * dense.head_dim : (group + 1) * dense.head_dim
                ] = 0
            layer.mlp.up_proj.weight[dead_channels] = 0
    importance = width_importance(
        model, family=family, geometry=dense, batches=calibration(), forward=forward_of(model)
    )
    sizes = replace(dense, kv_heads=2, heads=4, intermediate=dense.intermediate - 8)
    cut = choose(importance, dense=dense, sizes=sizes)
    assert cut.groups is not None and cut.channels is not None
    for groups, channels in zip(cut.groups, cut.channels, strict=True):
        assert groups == (0, 2)
        assert not set(channels) & set(dead_channels) and len(channels) == 120
    # removing exactly what contributes nothing leaves the logits as they were
    state = cut_width(model.state_dict(), model=model, family=family, dense=dense, cut=cut)
    smaller = rebuild(
        model, config=rewrite_config(model.config, family=family, sizes=sizes), state=state
    )
    batch = calibration(seed=5, batches=1)[0]
    torch.testing.assert_close(
        forward_of(smaller)(batch), forward_of(model)(batch), atol=1e-5, rtol=1e-5
    )


def test_depth_removes_the_block_that_changes_nothing():
    model = tiny("llama")
    with torch.no_grad():
        block = model.model.layers[2]
        block.self_attn.o_proj.weight.zero_()
        block.mlp.down_proj.weight.zero_()
    shrunk = depth_prune(model, target=0.25, batches=calibration(), device=torch.device("cpu"))
    assert shrunk.details["removed_blocks"] == [2]
    influence = shrunk.details["block_influence"]
    assert influence[2] == pytest.approx(0.0, abs=1e-6)
    assert min(influence[i] for i in (0, 1, 3)) > 1e-3
    batch = calibration(seed=5, batches=1)[0]
    torch.testing.assert_close(
        forward_of(shrunk.model)(batch), forward_of(model)(batch), atol=1e-5, rtol=1e-5
    )
    assert [layer.self_attn.layer_idx for layer in shrunk.model.model.layers] == [0, 1, 2]


def test_an_unsupported_model_type_is_refused_naming_it_and_the_supported_ones():
    import transformers

    config = transformers.GPT2Config(vocab_size=40, n_embd=32, n_layer=2, n_head=2, n_positions=32)
    model = transformers.GPT2LMHeadModel(config).eval()
    with pytest.raises(UnsupportedArchitecture, match=r"'gpt2'.*supported: llama, qwen2, bert"):
        width_prune(
            model, target=0.3, round_to=8, hidden=False, batches=[], forward=forward_of(model)
        )
    with pytest.raises(UnsupportedArchitecture) as caught:
        depth_prune(model, target=0.3, batches=[], device=torch.device("cpu"))
    assert caught.value.code == "unsupported_architecture"
