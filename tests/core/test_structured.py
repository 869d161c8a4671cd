"""Physical channel pruning: rounding, coupled channels, score ranking, rebuild from shapes."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import pytest
import torch
from torch import Tensor, nn

from core.structured import (
    count_macs_params,
    nonzero_params,
    prune_channels,
    resize_to_shapes,
    round_width,
    shapes_of,
)

M = TypeVar("M", bound=nn.Module)
IMAGES = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))


class Block(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)

    def forward(self, x: Tensor) -> Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        out: Tensor = torch.relu(x + self.bn2(self.conv2(y)))
        return out


class TinyResNet(nn.Module):
    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, width, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        self.block1 = Block(width)
        self.block2 = Block(width)
        self.fc = nn.Linear(width, 10)

    def forward(self, x: Tensor) -> Tensor:
        x = torch.relu(self.bn(self.stem(x)))
        x = self.block2(self.block1(x))
        logits: Tensor = self.fc(x.mean(dim=(2, 3)))
        return logits


def conv_net() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(32 * 8 * 8, 10),
    )


def mlp() -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(20, 45), nn.ReLU(), nn.Linear(45, 30), nn.ReLU(), nn.Linear(30, 3)
    )


class LSTMNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(4, 24)
        self.lstm = nn.LSTM(24, 32, batch_first=True)
        self.head = nn.Linear(32, 5)

    def forward(self, x: Tensor) -> Tensor:
        out, _ = self.lstm(torch.relu(self.embed(x)))
        logits: Tensor = self.head(out[:, -1])
        return logits


class Attention(nn.Module):
    def __init__(self, dim: int = 32, heads: int = 4) -> None:
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, x: Tensor) -> Tensor:
        b, t, d = x.shape

        def split(y: Tensor) -> Tensor:
            return y.view(b, t, self.heads, -1).transpose(1, 2)

        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        attn = torch.softmax(q @ k.transpose(-2, -1) / (d // self.heads) ** 0.5, dim=-1)
        out: Tensor = self.o((attn @ v).transpose(1, 2).reshape(b, t, d))
        return out


class TinyTransformer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(4, 32)
        self.norm1 = nn.LayerNorm(32)
        self.attn = Attention()
        self.norm2 = nn.LayerNorm(32)
        self.ff1 = nn.Linear(32, 64)
        self.ff2 = nn.Linear(64, 32)
        self.head = nn.Linear(32, 5)

    def forward(self, x: Tensor) -> Tensor:
        x = self.embed(x)
        x = x + self.attn(self.norm1(x))
        x = x + self.ff2(torch.relu(self.ff1(self.norm2(x))))
        logits: Tensor = self.head(x.mean(dim=1))
        return logits


def magnitude(model: nn.Module) -> dict[str, Tensor]:
    return {
        name: p.detach().abs().clone()
        for name, p in model.named_parameters()
        if name.endswith("weight") and p.dim() > 1
    }


def build(factory: Callable[[], M], seed: int = 0) -> M:
    torch.manual_seed(seed)
    return factory()


def test_round_width_rounds_up_to_the_multiple() -> None:
    assert round_width(45, multiple=8, maximum=64) == 48
    assert round_width(48, multiple=8, maximum=64) == 48
    assert round_width(48.000000001, multiple=8, maximum=64) == 48
    assert round_width(17, multiple=4, maximum=64) == 20


def test_round_width_never_exceeds_the_current_width() -> None:
    assert round_width(45, multiple=8, maximum=46) == 46
    assert round_width(3, multiple=8, maximum=6) == 6


def test_round_width_keeps_at_least_one_multiple() -> None:
    assert round_width(1.5, multiple=8, maximum=64) == 8
    assert round_width(0, multiple=8, maximum=64) == 8


@pytest.mark.parametrize(
    ("width", "multiple", "maximum"), [(-1.0, 8, 8), (4.0, 0, 8), (4.0, 8, 0), (float("nan"), 8, 8)]
)
def test_round_width_rejects_bad_arguments(width: float, multiple: int, maximum: int) -> None:
    with pytest.raises(ValueError):
        round_width(width, multiple=multiple, maximum=maximum)


def test_pruned_widths_are_rounded_multiples_and_outputs_keep_their_shape() -> None:
    model = build(mlp)
    x = torch.randn(6, 20)
    report = prune_channels(
        model, example_inputs=x, scores=magnitude(model), ratio=0.3, dense_widths=None, round_to=8
    )
    # 45 * 0.7 = 31.5 -> 32; 30 * 0.7 = 21 -> 24; the classifier keeps its 3 outputs
    assert report.dense_widths == {"0": 45, "2": 30, "4": 3}
    assert report.widths == {"0": 32, "2": 24, "4": 3}
    assert model[0].out_features == 32 and model[2].in_features == 32
    assert model[2].out_features == 24 and model[4].in_features == 24
    assert model(x).shape == (6, 3)
    assert report.params_after == sum(p.numel() for p in model.parameters())
    assert report.params_after < report.params_before


def test_final_classifier_keeps_its_outputs() -> None:
    model = build(TinyResNet)
    report = prune_channels(
        model, example_inputs=IMAGES, scores={}, ratio=0.9, dense_widths=None, round_to=4
    )
    assert model.fc.out_features == 10
    assert report.widths["fc"] == 10
    assert any(line.startswith("fc:") for line in report.skipped)
    assert model(IMAGES).shape == (4, 10)


def test_residual_network_prunes_coupled_channels_consistently() -> None:
    model = build(TinyResNet)
    report = prune_channels(
        model,
        example_inputs=IMAGES,
        scores=magnitude(model),
        ratio=0.5,
        dense_widths=None,
        round_to=4,
    )
    # the stem and both blocks' second convs add into one residual stream: one shared width
    stream = {report.widths[n] for n in ("stem", "block1.conv2", "block2.conv2")}
    assert stream == {8}
    assert report.widths["block1.conv1"] == report.widths["block2.conv1"] == 8
    for block in (model.block1, model.block2):
        assert block.conv1.in_channels == model.stem.out_channels
        assert block.bn1.num_features == block.conv1.out_channels == block.conv2.in_channels
        assert block.bn2.num_features == block.conv2.out_channels
    assert model.fc.in_features == 8
    model.eval()
    assert model(IMAGES).shape == (4, 10)


def test_gradual_calls_with_growing_ratios_only_shrink() -> None:
    model = build(TinyResNet)
    dense = None
    previous = {name: 16 for name in ("stem", "block1.conv1", "block1.conv2")}
    params = sum(p.numel() for p in model.parameters())
    for ratio in (0.2, 0.4, 0.7, 0.3):
        report = prune_channels(
            model,
            example_inputs=IMAGES,
            scores=magnitude(model),
            ratio=ratio,
            dense_widths=dense,
            round_to=4,
        )
        dense = report.dense_widths
        assert dense["stem"] == 16
        for name, width in previous.items():
            assert report.widths[name] <= width
            assert report.widths[name] % 4 == 0
        assert report.params_after <= params
        previous = {name: report.widths[name] for name in previous}
        params = report.params_after
    # 16 * 0.3 = 4.8 -> 8, and the later 0.3 call must not have grown it back from 8
    assert previous == {"stem": 8, "block1.conv1": 8, "block1.conv2": 8}
    assert model(IMAGES).shape == (4, 10)


def test_channels_with_the_highest_scores_survive() -> None:
    model = build(conv_net)
    scores = magnitude(model)
    first = model.get_parameter("0.weight").detach().clone()
    favourite = 5
    scores["0.weight"][favourite] = 1e6
    scores["0.weight"][0] = 0.0  # and the weakest goes
    scores["3.weight"][:, 0] = 0.0
    prune_channels(
        model, example_inputs=IMAGES, scores=scores, ratio=0.75, dense_widths=None, round_to=8
    )
    kept = model.get_parameter("0.weight").detach()
    assert kept.shape[0] == 8

    def survives(channel: int) -> bool:
        return any(torch.equal(row, first[channel]) for row in kept)

    assert survives(favourite)
    assert not survives(0)


def test_resize_to_shapes_rebuilds_a_pruned_model_bit_for_bit() -> None:
    pruned = build(TinyResNet, seed=1)
    pruned.train()
    pruned(IMAGES)  # non-default BatchNorm statistics
    prune_channels(
        pruned, example_inputs=IMAGES, scores={}, ratio=0.5, dense_widths=None, round_to=4
    )
    state = {k: v.clone() for k, v in pruned.state_dict().items()}
    shapes = shapes_of(pruned)

    rebuilt = build(TinyResNet, seed=2)
    resize_to_shapes(rebuilt, shapes)
    rebuilt.load_state_dict(state, strict=True)
    assert shapes_of(rebuilt) == shapes
    assert rebuilt.stem.out_channels == pruned.stem.out_channels == 8
    assert rebuilt.block1.bn1.num_features == pruned.block1.bn1.num_features
    pruned.eval()
    rebuilt.eval()
    assert torch.equal(pruned(IMAGES), rebuilt(IMAGES))


@pytest.mark.parametrize("factory", [TinyTransformer, LSTMNet])
def test_resize_to_shapes_rebuilds_lstm_and_transformer_models(
    factory: Callable[[], nn.Module],
) -> None:
    pruned = build(factory)
    x = torch.randn(2, 6, 4)
    prune_channels(pruned, example_inputs=x, scores={}, ratio=0.5, dense_widths=None, round_to=8)
    assert shapes_of(pruned) != shapes_of(build(factory))
    rebuilt = build(factory, seed=3)
    resize_to_shapes(rebuilt, shapes_of(pruned))
    rebuilt.load_state_dict(pruned.state_dict(), strict=True)
    assert torch.equal(pruned(x), rebuilt(x))


def test_resize_to_shapes_names_the_tensor_it_cannot_apply() -> None:
    model = build(TinyResNet)
    shapes = shapes_of(model)
    shapes["block1.bn1.running_var"] = [12]
    with pytest.raises(ValueError, match=r"block1\.bn1"):
        resize_to_shapes(build(TinyResNet), shapes)
    shapes = shapes_of(model)
    shapes["stem.weight"] = [16, 1, 3]
    with pytest.raises(ValueError, match=r"stem\.weight"):
        resize_to_shapes(build(TinyResNet), shapes)
    shapes = shapes_of(model)
    del shapes["fc.bias"]
    with pytest.raises(ValueError, match=r"fc\.bias"):
        resize_to_shapes(build(TinyResNet), shapes)


def test_half_the_channels_cut_macs_at_least_twofold() -> None:
    model = build(conv_net)
    macs_before, params_before = count_macs_params(model, example_inputs=IMAGES)
    report = prune_channels(
        model, example_inputs=IMAGES, scores={}, ratio=0.5, dense_widths=None, round_to=8
    )
    macs_after, params_after = count_macs_params(model, example_inputs=IMAGES)
    assert macs_before >= 2 * macs_after
    assert params_after == report.params_after < params_before
    assert model(IMAGES).shape == (4, 10)


def test_lstm_is_left_alone_and_reported() -> None:
    model = build(LSTMNet)
    x = torch.randn(3, 7, 4)
    report = prune_channels(
        model, example_inputs=x, scores=magnitude(model), ratio=0.5, dense_widths=None, round_to=8
    )
    assert model.lstm.hidden_size == 32
    assert any(line.startswith("lstm:") and "LSTM" in line for line in report.skipped)
    # the layer feeding the LSTM is still pruned, and the LSTM's inputs follow it
    assert model.embed.out_features == 16 == model.lstm.input_size
    assert model(x).shape == (3, 5)


def test_attention_projections_keep_their_width() -> None:
    model = build(TinyTransformer)
    x = torch.randn(2, 6, 4)
    report = prune_channels(
        model, example_inputs=x, scores={}, ratio=0.5, dense_widths=None, round_to=8
    )
    for name in ("attn.q", "attn.k", "attn.v"):
        assert report.widths[name] == 32
        assert any(line.startswith(f"{name}:") for line in report.skipped)
    # the residual width feeds q/k/v and stays; the feed-forward hidden width is halved
    assert report.widths["embed"] == report.widths["ff2"] == 32
    assert report.widths["ff1"] == 32 == model.ff2.in_features
    assert model(x).shape == (2, 5)


def test_ignored_layers_keep_their_outputs() -> None:
    model = build(TinyResNet)
    report = prune_channels(
        model,
        example_inputs=IMAGES,
        scores={},
        ratio=0.5,
        dense_widths=None,
        round_to=4,
        ignored=["block1.conv1"],
    )
    assert model.block1.conv1.out_channels == 16
    assert model.block2.conv1.out_channels == 8
    assert "block1.conv1: ignored by the caller" in report.skipped


def test_pruning_leaves_batchnorm_statistics_and_training_mode_alone() -> None:
    model = build(TinyResNet)
    model.train()
    prune_channels(
        model, example_inputs=IMAGES, scores={}, ratio=0.0, dense_widths=None, round_to=4
    )
    assert model.training and model.block1.bn1.training
    assert int(model.get_buffer("bn.num_batches_tracked")) == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ratio": 1.0}, "ratio"),
        ({"ratio": -0.1}, "ratio"),
        ({"round_to": 0}, "round_to"),
        ({"scores": {"fc.weight": torch.ones(3, 3)}}, "fc.weight"),
        ({"scores": {"nope.weight": torch.ones(3)}}, "nope.weight"),
        ({"ignored": ["nope"]}, "nope"),
        ({"dense_widths": {"stem": 16}}, "block1.conv1"),
    ],
)
def test_prune_channels_rejects_bad_arguments(kwargs: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {
        "example_inputs": IMAGES,
        "scores": {},
        "ratio": 0.5,
        "dense_widths": None,
        "round_to": 4,
    }
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        prune_channels(build(TinyResNet), **arguments)  # type: ignore[arg-type]


def test_nonzero_params_counts_only_nonzero_entries() -> None:
    model = nn.Linear(4, 3)
    with torch.no_grad():
        model.weight.zero_()
        model.weight[0, 0] = 2.0
        model.bias.copy_(torch.tensor([1.0, 0.0, -1.0]))
    assert nonzero_params(model) == 3
