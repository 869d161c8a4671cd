from __future__ import annotations

import json
import pickle
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from core.architectures import BasicBlock, ResNet, TransformerClassifier
from core.contract.entrypoints import ANY_MODULE, EntrypointAllowList
from core.errors import ModelLoadFailed
from core.models import (
    architecture,
    build_builtin,
    build_from_architecture,
    build_model,
    load_entrypoint,
    load_weights,
)
from core.registries import ARCHITECTURES
from core.spec import ModelRef

TOY = "tests.core.toy_models:tiny_mlp"

# (arch, input shape of a built-in task, classes): every pairing whose shapes make sense.
PAIRS = [
    ("mlp", (1, 40), 10),  # mnist1d
    ("mlp", (1, 8, 8), 10),  # digits
    ("mlp", (30,), 2),  # breast_cancer
    ("cnn1d", (1, 40), 10),
    ("cnn1d", (40,), 10),
    ("cnn2d", (1, 8, 8), 10),
    ("lstm", (1, 40), 10),
    ("lstm", (30,), 2),
    ("transformer", (1, 40), 10),
    ("transformer", (30,), 2),
]


def first_linear(model: nn.Module) -> nn.Linear:
    return next(module for module in model.modules() if isinstance(module, nn.Linear))


def param_count(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


@pytest.mark.parametrize(("arch", "shape", "classes"), PAIRS)
def test_builtin_maps_a_batch_to_logits(arch: str, shape: tuple[int, ...], classes: int) -> None:
    torch.manual_seed(0)
    model = build_builtin(arch, input_shape=shape, num_classes=classes)
    logits = model(torch.randn(3, *shape))
    assert logits.shape == (3, classes)
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_every_spec_arch_is_a_builtin() -> None:
    for arch in ARCHITECTURES:
        assert isinstance(build_builtin(arch, input_shape=(1, 16), num_classes=2), nn.Module)


def test_cnn1d_matches_the_mnist1d_paper_size() -> None:
    assert param_count(build_builtin("cnn1d", input_shape=(1, 40), num_classes=10)) == 5210


def test_transformer_attention_uses_separate_linear_projections() -> None:
    model = build_builtin("transformer", input_shape=(1, 40), num_classes=10)
    names = {name for name, module in model.named_modules() if isinstance(module, nn.Linear)}
    for projection in ("q", "k", "v", "o"):
        assert f"blocks.0.attention.{projection}" in names
        assert f"blocks.1.attention.{projection}" in names
    assert not any(isinstance(module, nn.MultiheadAttention) for module in model.modules())


def test_kwargs_override_the_defaults() -> None:
    mlp = build_builtin("mlp", input_shape=(30,), num_classes=2, hidden=[5])
    assert [m.out_features for m in mlp.modules() if isinstance(m, nn.Linear)] == [5, 2]
    cnn = build_builtin("cnn1d", input_shape=(1, 40), num_classes=10, channels=8)
    assert [m.out_channels for m in cnn.modules() if isinstance(m, nn.Conv1d)] == [8, 8, 8]
    lstm = build_builtin("lstm", input_shape=(1, 40), num_classes=10, hidden=7, layers=2)
    assert isinstance(lstm.lstm, nn.LSTM)
    assert (lstm.lstm.hidden_size, lstm.lstm.num_layers) == (7, 2)
    resnet = build_builtin("cnn2d", input_shape=(1, 8, 8), num_classes=10, widths=[4, 6, 8])
    assert isinstance(resnet, ResNet)
    assert resnet(torch.randn(2, 1, 8, 8)).shape == (2, 10)
    assert resnet.head.in_features == 8
    deeper = build_builtin("cnn2d", input_shape=(1, 8, 8), num_classes=10, blocks=2)
    assert sum(isinstance(m, BasicBlock) for m in deeper.modules()) == 4
    transformer = build_builtin(
        "transformer", input_shape=(1, 40), num_classes=10, d_model=8, heads=2, layers=1
    )
    assert isinstance(transformer, TransformerClassifier)
    assert len(transformer.blocks) == 1
    assert transformer.embed.out_features == 8


def test_unknown_arch_is_refused_with_its_name() -> None:
    with pytest.raises(ModelLoadFailed, match="'vgg'"):
        build_builtin("vgg", input_shape=(30,), num_classes=2)


def test_unknown_kwargs_are_refused_by_name() -> None:
    with pytest.raises(ModelLoadFailed, match="dropout"):
        build_builtin("mlp", input_shape=(30,), num_classes=2, dropout=0.5)


@pytest.mark.parametrize(
    ("arch", "shape", "kwargs", "words"),
    [
        ("mlp", (30,), {"hidden": []}, "hidden"),
        ("mlp", (30,), {"hidden": [4, -1]}, r"hidden\[1\]"),
        ("cnn1d", (1, 40), {"channels": True}, "channels"),
        ("cnn1d", (1, 2), {}, "too short"),
        ("cnn2d", (30,), {}, "input shape"),
        ("lstm", (1, 8, 8), {}, "input shape"),
        ("transformer", (1, 40), {"d_model": 10, "heads": 4}, "multiple of heads"),
    ],
)
def test_values_an_arch_cannot_use_are_refused(
    arch: str, shape: tuple[int, ...], kwargs: dict[str, object], words: str
) -> None:
    with pytest.raises(ModelLoadFailed, match=words):
        build_builtin(arch, input_shape=shape, num_classes=2, **kwargs)


def test_entrypoint_builds_the_factory_model_with_kwargs() -> None:
    model = load_entrypoint(TOY, kwargs={"hidden": 5}, allowed_prefixes=ANY_MODULE)
    assert model(torch.randn(2, 4)).shape == (2, 3)
    assert first_linear(model).out_features == 5


@pytest.mark.parametrize("prefixes", [["tests"], ["tests.core"], ["tests.core.toy_models"]])
def test_entrypoint_inside_an_allowed_prefix_loads(prefixes: list[str]) -> None:
    assert isinstance(
        load_entrypoint(TOY, kwargs={}, allowed_prefixes=EntrypointAllowList.only(prefixes)),
        nn.Module,
    )


@pytest.mark.parametrize("prefixes", [[], ["test"], ["tests.co"], ["tests.core.toy_models.x"]])
def test_entrypoint_outside_the_allowed_prefixes_is_refused(prefixes: list[str]) -> None:
    with pytest.raises(ModelLoadFailed, match="not in the allowed prefixes"):
        load_entrypoint(TOY, kwargs={}, allowed_prefixes=EntrypointAllowList.only(prefixes))


def test_refused_entrypoint_is_never_imported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "tests.core.toy_models", raising=False)
    with pytest.raises(ModelLoadFailed, match="not in the allowed prefixes"):
        load_entrypoint(TOY, kwargs={}, allowed_prefixes=EntrypointAllowList.only(["models"]))
    assert "tests.core.toy_models" not in sys.modules


@pytest.mark.parametrize(
    ("entrypoint", "kwargs", "words"),
    [
        ("tests.core.no_such_module:factory", {}, "cannot import"),
        ("tests.core.toy_models:missing", {}, "no callable 'missing'"),
        ("tests.core.toy_models:NOT_CALLABLE", {}, "no callable 'NOT_CALLABLE'"),
        ("tests.core.toy_models:broken_factory", {}, "factory exploded"),
        ("tests.core.toy_models:tiny_mlp", {"colour": "red"}, "colour"),
        ("tests.core.toy_models:not_a_model", {}, "returned str, not a torch nn.Module"),
        ("no_colon_here", {}, "package.module:factory"),
    ],
)
def test_entrypoint_failures_raise_one_line_model_load_failed(
    entrypoint: str, kwargs: dict[str, object], words: str
) -> None:
    with pytest.raises(ModelLoadFailed, match=words) as caught:
        load_entrypoint(entrypoint, kwargs=kwargs, allowed_prefixes=ANY_MODULE)
    assert "\n" not in str(caught.value)


def test_build_model_uses_the_arch_and_its_kwargs() -> None:
    ref = ModelRef(arch="mlp", kwargs={"hidden": [6]})
    model = build_model(ref, input_shape=(30,), num_classes=2)
    assert model(torch.randn(4, 30)).shape == (4, 2)
    assert param_count(model) == 30 * 6 + 6 + 6 * 2 + 2


def test_build_model_applies_the_entrypoint_allow_list() -> None:
    ref = ModelRef(entrypoint=TOY)
    assert isinstance(build_model(ref, input_shape=(4,), num_classes=3), nn.Module)
    with pytest.raises(ModelLoadFailed, match="allowed prefixes"):
        build_model(
            ref,
            input_shape=(4,),
            num_classes=3,
            allowed_entrypoints=EntrypointAllowList.only(["models"]),
        )


def test_build_model_refuses_a_factory_model_that_does_not_fit_the_task() -> None:
    with pytest.raises(ModelLoadFailed, match=r"\(N, 5\)"):
        build_model(ModelRef(entrypoint=TOY), input_shape=(4,), num_classes=5)
    with pytest.raises(ModelLoadFailed, match="cannot take input"):
        build_model(ModelRef(entrypoint=TOY), input_shape=(7,), num_classes=3)


def test_weights_round_trip_through_safetensors(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = build_builtin("cnn2d", input_shape=(1, 8, 8), num_classes=10, widths=[4, 8])
    source.train()
    source(torch.randn(8, 1, 8, 8))  # move the BatchNorm running statistics off their defaults
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    torch.manual_seed(1)
    target = build_builtin("cnn2d", input_shape=(1, 8, 8), num_classes=10, widths=[4, 8])
    load_weights(target, path)
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key
    source.eval()
    target.eval()
    batch = torch.randn(3, 1, 8, 8)
    assert torch.equal(source(batch), target(batch))


class Exploding:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (_record_unpickle, ("unpickled",))


UNPICKLED: list[str] = []


def _record_unpickle(value: str) -> str:
    UNPICKLED.append(value)
    return value


def test_a_pickle_file_is_refused_without_being_unpickled(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    torch.save({"0.weight": Exploding()}, path)
    with pytest.raises(ModelLoadFailed, match="not a safetensors file"):
        load_weights(nn.Sequential(nn.Linear(4, 3)), path)
    assert UNPICKLED == []
    # The file really is a pickle that runs code when loaded, so the check above means something.
    with path.open("rb") as handle:
        torch.load(handle, weights_only=False)
    assert UNPICKLED == ["unpickled"]
    UNPICKLED.clear()


def test_plain_pickle_bytes_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    path.write_bytes(pickle.dumps({"0.weight": [1.0]}))
    with pytest.raises(ModelLoadFailed, match="not a safetensors file"):
        load_weights(nn.Sequential(nn.Linear(4, 3)), path)


def test_shape_mismatch_names_the_tensor_and_both_shapes(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    save_file({"0.weight": torch.zeros(5, 4), "0.bias": torch.zeros(3)}, str(path))
    model = nn.Sequential(nn.Linear(4, 3))
    before = first_linear(model).weight.detach().clone()
    with pytest.raises(ModelLoadFailed, match=r"'0\.weight' has shape \(5, 4\).*\(3, 4\)"):
        load_weights(model, path)
    assert torch.equal(first_linear(model).weight, before)


def test_missing_and_unexpected_tensors_are_named(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Linear(4, 3))
    missing = tmp_path / "missing.safetensors"
    save_file({"0.weight": torch.zeros(3, 4)}, str(missing))
    with pytest.raises(ModelLoadFailed, match=r"'0\.bias' is missing"):
        load_weights(model, missing)
    extra = tmp_path / "extra.safetensors"
    save_file(
        {"0.weight": torch.zeros(3, 4), "0.bias": torch.zeros(3), "1.weight": torch.zeros(1)},
        str(extra),
    )
    with pytest.raises(ModelLoadFailed, match=r"unexpected tensor '1\.weight'"):
        load_weights(model, extra)


def test_architecture_recipe_is_json_and_rebuilds_the_same_shapes() -> None:
    ref = ModelRef(arch="transformer", kwargs={"d_model": 16})
    recipe = json.loads(json.dumps(architecture(ref, input_shape=(1, 40), num_classes=10)))
    assert recipe == {
        "arch": "transformer",
        "kwargs": {"d_model": 16, "layers": 2, "heads": 4, "ffn": 64},
        "input_shape": [1, 40],
        "num_classes": 10,
    }
    original = build_model(ref, input_shape=(1, 40), num_classes=10)
    rebuilt = build_from_architecture(recipe)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {
        k: v.shape for k, v in original.state_dict().items()
    }


def test_entrypoint_recipe_rebuilds_under_the_allow_list() -> None:
    ref = ModelRef(entrypoint=TOY, kwargs={"hidden": 6})
    recipe = json.loads(json.dumps(architecture(ref, input_shape=(4,), num_classes=3)))
    assert recipe["entrypoint"] == TOY
    rebuilt = build_from_architecture(
        recipe, allowed_entrypoints=EntrypointAllowList.only(["tests.core"])
    )
    assert first_linear(rebuilt).out_features == 6
    with pytest.raises(ModelLoadFailed, match="allowed prefixes"):
        build_from_architecture(recipe, allowed_entrypoints=EntrypointAllowList.only([]))


@pytest.mark.parametrize(
    ("recipe", "words"),
    [
        ({"arch": "mlp", "kwargs": {}, "num_classes": 2}, "input_shape"),
        ({"arch": "mlp", "kwargs": {}, "input_shape": [30], "num_classes": "2"}, "num_classes"),
        ({"arch": "mlp", "kwargs": [], "input_shape": [30], "num_classes": 2}, "kwargs"),
        ({"kwargs": {}, "input_shape": [30], "num_classes": 2}, "invalid"),
        ({"arch": "vgg", "kwargs": {}, "input_shape": [30], "num_classes": 2}, "invalid"),
    ],
)
def test_malformed_recipes_are_refused(recipe: dict[str, object], words: str) -> None:
    with pytest.raises(ModelLoadFailed, match=words):
        build_from_architecture(recipe)
