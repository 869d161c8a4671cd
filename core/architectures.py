"""The built-in architectures: small, standard models for the built-in tasks and for tests.

Every model takes a batch of shape (N, *input_shape) and returns logits of shape (N, num_classes).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Builder = Callable[..., nn.Module]


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}={value!r} must be a positive integer")
    return value


def _int_list(name: str, value: Any) -> list[int]:
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError(f"{name}={value!r} must be a non-empty list of positive integers")
    return [_positive_int(f"{name}[{index}]", item) for index, item in enumerate(value)]


def _sequence_shape(arch: str, input_shape: tuple[int, ...]) -> tuple[int, int]:
    """Read (C, L) as C channels of length L and (L,) as one channel: returns (C, L)."""
    if len(input_shape) == 1:
        return 1, input_shape[0]
    if len(input_shape) == 2:
        return input_shape[0], input_shape[1]
    raise ValueError(f"{arch} needs an input shape (L,) or (C, L), got {input_shape}")


class Unflatten1d(nn.Module):
    """Give (N, L) input a channel axis, (N, 1, L); leave (N, C, L) alone."""

    def forward(self, x: Tensor) -> Tensor:
        return x.unsqueeze(1) if x.dim() == 2 else x


def build_mlp(*, input_shape: tuple[int, ...], num_classes: int, hidden: Any) -> nn.Module:
    sizes = _int_list("hidden", hidden)
    width = 1
    for size in input_shape:
        width *= size
    layers: list[nn.Module] = [nn.Flatten()]
    for size in sizes:
        layers += [nn.Linear(width, size), nn.ReLU()]
        width = size
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


def build_cnn1d(*, input_shape: tuple[int, ...], num_classes: int, channels: Any) -> nn.Module:
    """ConvBase of Greydanus, "Scaling down deep learning" (2020, arXiv 2011.14439)."""
    width = _positive_int("channels", channels)
    in_channels, length = _sequence_shape("cnn1d", input_shape)
    layers: list[nn.Module] = [Unflatten1d()]
    for kernel, source in ((5, in_channels), (3, width), (3, width)):
        layers += [nn.Conv1d(source, width, kernel, stride=2, padding=1), nn.ReLU()]
        # L_out = floor((L + 2 * padding - kernel) / stride) + 1
        length = (length + 2 - kernel) // 2 + 1
        if length < 1:
            raise ValueError(f"cnn1d input length {input_shape[-1]} is too short (needs >= 3)")
    layers += [nn.Flatten(), nn.Linear(width * length, num_classes)]
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    """ResNet basic block (He et al. 2016, arXiv 1512.03385): two 3x3 convs plus a shortcut."""

    def __init__(self, source: int, width: int, *, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(source, width, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or source != width:
            self.shortcut = nn.Sequential(
                nn.Conv2d(source, width, 1, stride=stride, bias=False), nn.BatchNorm2d(width)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """A small ResNet: 3x3 stem, one stage per width (stride 2 between stages), pool, linear."""

    def __init__(
        self, *, in_channels: int, widths: list[int], blocks: int, num_classes: int
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(),
        )
        layers: list[nn.Module] = []
        source = widths[0]
        for stage, width in enumerate(widths):
            for block in range(blocks):
                stride = 2 if stage > 0 and block == 0 else 1
                layers.append(BasicBlock(source, width, stride=stride))
                source = width
        self.stages = nn.Sequential(*layers)
        self.head = nn.Linear(source, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 3:
            x = x.unsqueeze(1)
        out = self.stages(self.stem(x))
        logits: Tensor = self.head(out.mean(dim=(2, 3)))
        return logits


def build_cnn2d(
    *, input_shape: tuple[int, ...], num_classes: int, widths: Any, blocks: Any
) -> nn.Module:
    if len(input_shape) not in (2, 3):
        raise ValueError(f"cnn2d needs an input shape (H, W) or (C, H, W), got {input_shape}")
    in_channels = input_shape[0] if len(input_shape) == 3 else 1
    return ResNet(
        in_channels=in_channels,
        widths=_int_list("widths", widths),
        blocks=_positive_int("blocks", blocks),
        num_classes=num_classes,
    )


def _as_tokens(x: Tensor) -> Tensor:
    """(N, L) -> (N, L, 1) and (N, C, L) -> (N, L, C): one step or token per position."""
    return x.unsqueeze(-1) if x.dim() == 2 else x.transpose(1, 2)


class LSTMClassifier(nn.Module):
    """An LSTM over the positions of the input, classified from the last step's hidden state."""

    def __init__(self, *, features: int, hidden: int, layers: int, num_classes: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(features, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out, _ = self.lstm(_as_tokens(x))
        logits: Tensor = self.head(out[:, -1])
        return logits


def build_lstm(
    *, input_shape: tuple[int, ...], num_classes: int, hidden: Any, layers: Any
) -> nn.Module:
    features, _ = _sequence_shape("lstm", input_shape)
    return LSTMClassifier(
        features=features,
        hidden=_positive_int("hidden", hidden),
        layers=_positive_int("layers", layers),
        num_classes=num_classes,
    )


class SelfAttention(nn.Module):
    """Multi-head attention (Vaswani et al. 2017) with separate q, k, v, o linear projections.

    attention(Q, K, V) = softmax(Q K^T / sqrt(d_head)) V, per head, then the output projection.
    """

    def __init__(self, d_model: int, *, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(d_model, d_model)
        self.k = nn.Linear(d_model, d_model)
        self.v = nn.Linear(d_model, d_model)
        self.o = nn.Linear(d_model, d_model)

    def forward(self, x: Tensor) -> Tensor:
        batch, length, width = x.shape

        def split(t: Tensor) -> Tensor:
            return t.reshape(batch, length, self.heads, -1).transpose(1, 2)

        out = F.scaled_dot_product_attention(split(self.q(x)), split(self.k(x)), split(self.v(x)))
        result: Tensor = self.o(out.transpose(1, 2).reshape(batch, length, width))
        return result


class EncoderBlock(nn.Module):
    """Pre-LayerNorm transformer block: x + attn(LN(x)), then x + MLP(LN(x)) with GELU."""

    def __init__(self, d_model: int, *, heads: int, ffn: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model)
        self.attention = SelfAttention(d_model, heads=heads)
        self.norm2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, ffn), nn.GELU(), nn.Linear(ffn, d_model))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attention(self.norm1(x))
        result: Tensor = x + self.mlp(self.norm2(x))
        return result


class TransformerClassifier(nn.Module):
    """Positions as tokens: linear embedding, learned positions, encoder blocks, mean pool, head."""

    def __init__(
        self,
        *,
        features: int,
        length: int,
        d_model: int,
        layers: int,
        heads: int,
        ffn: int,
        num_classes: int,
    ) -> None:
        super().__init__()
        self.embed = nn.Linear(features, d_model)
        self.position = nn.Parameter(torch.zeros(1, length, d_model))
        nn.init.normal_(self.position, std=0.02)
        self.blocks = nn.Sequential(
            *(EncoderBlock(d_model, heads=heads, ffn=ffn) for _ in range(layers))
        )
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        tokens = self.embed(_as_tokens(x)) + self.position
        logits: Tensor = self.head(self.norm(self.blocks(tokens).mean(dim=1)))
        return logits


def build_transformer(
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    d_model: Any,
    layers: Any,
    heads: Any,
    ffn: Any,
) -> nn.Module:
    features, length = _sequence_shape("transformer", input_shape)
    width = _positive_int("d_model", d_model)
    head_count = _positive_int("heads", heads)
    if width % head_count:
        raise ValueError(f"d_model={width} must be a multiple of heads={head_count}")
    return TransformerClassifier(
        features=features,
        length=length,
        d_model=width,
        layers=_positive_int("layers", layers),
        heads=head_count,
        ffn=_positive_int("ffn", ffn),
        num_classes=num_classes,
    )
