"""Parameter-fraction targets, reach checks, conv groups and attention heads, on tiny models."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from core.structured import count_params, prune_channels, resize_to_shapes, shapes_of
from core.structured.target import channel_reach, prune_channels_to_fraction

IMAGES = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
TOKENS = torch.randn(2, 6, 32, generator=torch.Generator().manual_seed(1))


class Depthwise(nn.Module):
    """Pointwise expand, depthwise 3x3, pointwise project: the MobileNet block shape."""

    def __init__(self) -> None:
        super().__init__()
        self.expand = nn.Conv2d(3, 48, 1)
        self.depthwise = nn.Conv2d(48, 48, 3, padding=1, groups=48)
        self.bn = nn.BatchNorm2d(48)
        self.project = nn.Conv2d(48, 32, 1)
        self.head = nn.Linear(32, 5)

    def forward(self, x: Tensor) -> Tensor:
        y = torch.relu(self.bn(self.depthwise(torch.relu(self.expand(x)))))
        out: Tensor = self.head(self.project(y).mean(dim=(2, 3)))
        return out


class Attention(nn.Module):
    """Self-attention that declares its head count, as Hugging Face modules do."""

    def __init__(self, width: int = 32, heads: int = 4) -> None:
        super().__init__()
        self.num_heads = heads
        self.head_dim = width // heads
        self.q, self.k, self.v = (
            nn.Linear(width, width),
            nn.Linear(width, width),
            nn.Linear(width, width),
        )

    def forward(self, x: Tensor) -> Tensor:
        b, t, _ = x.shape
        q, k, v = (
            p(x).view(b, t, -1, self.head_dim).transpose(1, 2) for p in (self.q, self.k, self.v)
        )
        attended = nn.functional.scaled_dot_product_attention(q, k, v)
        return attended.transpose(1, 2).reshape(b, t, -1)


class Encoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(32, 32)
        self.attention = Attention()
        self.out = nn.Linear(32, 32)
        self.ffn = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 32))
        self.head = nn.Linear(32, 3)

    def forward(self, x: Tensor) -> Tensor:
        x = self.embed(x)
        h = x + self.out(self.attention(x))
        h = h + self.ffn(h)
        out: Tensor = self.head(h[:, 0])
        return out


def test_depthwise_groups_follow_the_cut_and_are_restored_at_load() -> None:
    torch.manual_seed(0)
    model = Depthwise()
    prune_channels(
        model, example_inputs=IMAGES, scores={}, ratio=0.5, dense_widths=None, round_to=8
    )
    assert model.depthwise.groups == model.depthwise.out_channels == 24
    shapes = shapes_of(model)
    assert shapes["depthwise#groups"] == [24]
    torch.manual_seed(1)
    rebuilt = Depthwise()
    resize_to_shapes(rebuilt, shapes)
    rebuilt.load_state_dict(model.state_dict())
    model.eval(), rebuilt.eval()
    assert torch.equal(rebuilt(IMAGES), model(IMAGES))


def test_attention_loses_whole_heads_and_its_head_count_is_restored() -> None:
    torch.manual_seed(0)
    model = Encoder().eval()
    report = prune_channels(
        model, example_inputs=TOKENS, scores={}, ratio=0.5, dense_widths=None, round_to=8
    )
    assert model.attention.num_heads == 2 and model.attention.head_dim == 8
    assert model.attention.q.out_features == model.attention.v.out_features == 16
    assert model.ffn[0].out_features == 32
    assert model.head.out_features == 3
    assert any(entry.startswith("out:") for entry in report.skipped)  # the residual width stays
    rebuilt = Encoder().eval()
    resize_to_shapes(rebuilt, shapes_of(model))
    rebuilt.load_state_dict(model.state_dict())
    assert rebuilt.attention.num_heads == 2
    assert torch.allclose(rebuilt(TOKENS), model(TOKENS))


def test_resize_to_shapes_rejects_an_unknown_attribute() -> None:
    shapes = shapes_of(Depthwise())
    shapes["head#groups"] = [2]
    with pytest.raises(ValueError, match="not a size attribute"):
        resize_to_shapes(Depthwise(), shapes)


@pytest.mark.parametrize("fraction", [0.3, 0.6])
def test_parameter_fraction_target_is_met_within_tolerance(fraction: float) -> None:
    torch.manual_seed(0)
    model = Depthwise()
    dense = count_params(model)
    report, ratio = prune_channels_to_fraction(
        model,
        example_inputs=IMAGES,
        scores={},
        fraction=fraction,
        dense_params=dense,
        dense_widths=None,
        round_to=1,
    )
    removed = 1 - count_params(model) / dense
    assert removed == pytest.approx(fraction, abs=0.05)
    assert 0 < ratio < 1 and report.params_after == count_params(model)
    assert model.head.out_features == 5


def test_a_fraction_already_passed_leaves_the_model_alone() -> None:
    torch.manual_seed(0)
    model = Depthwise()
    dense = count_params(model)
    prune_channels(
        model, example_inputs=IMAGES, scores={}, ratio=0.5, dense_widths=None, round_to=8
    )
    before = count_params(model)
    prune_channels_to_fraction(
        model,
        example_inputs=IMAGES,
        scores={},
        fraction=0.1,
        dense_params=dense,
        dense_widths={"expand": 48, "depthwise": 48, "project": 32, "head": 5},
        round_to=8,
    )
    assert count_params(model) == before


def test_reach_names_what_is_kept_when_the_target_is_too_high() -> None:
    model = Encoder()
    reach = channel_reach(
        model, example_inputs=TOKENS, round_to=8, dense_params=count_params(model)
    )
    assert 0 < reach.removable < 0.9
    assert reach.refusal(reach.removable, round_to=8) is None
    message = reach.refusal(0.95, round_to=8)
    assert message is not None
    assert "head: final classifier" in message and "out:" in message
    assert count_params(model) == count_params(Encoder())  # the model itself is untouched


def test_fraction_is_validated() -> None:
    with pytest.raises(ValueError, match="fraction"):
        prune_channels_to_fraction(
            Depthwise(),
            example_inputs=IMAGES,
            scores={},
            fraction=1.0,
            dense_params=10,
            dense_widths=None,
            round_to=8,
        )
