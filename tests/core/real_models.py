"""Third-party architectures as user factories: torchvision classifiers and a Hugging Face encoder.

Built from code and configs only (no weights are downloaded). torchvision and transformers are
imported inside the factories, after `prepare_torchvision` (transformers imports torchvision too).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from tests.support.torchvision_ops import prepare_torchvision


def _torchvision_models() -> Any:
    prepare_torchvision()
    from torchvision import models

    return models


def resnet18(num_classes: int = 10) -> nn.Module:
    return _torchvision_models().resnet18(num_classes=num_classes)


def mobilenet_v3_small(num_classes: int = 10) -> nn.Module:
    return _torchvision_models().mobilenet_v3_small(num_classes=num_classes)


def efficientnet_b0(num_classes: int = 10) -> nn.Module:
    return _torchvision_models().efficientnet_b0(num_classes=num_classes)


class BertClassifier(nn.Module):
    """A `BertModel` encoder with a linear head on the first token.

    Token ids arrive as float features (the task format) and are cast to integers here.
    """

    def __init__(self, config: Any, num_classes: int) -> None:
        super().__init__()
        prepare_torchvision()
        from transformers import BertModel

        self.bert = BertModel(config, add_pooling_layer=False)
        self.head = nn.Linear(config.hidden_size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.bert(input_ids=x.long()).last_hidden_state
        return self.head(hidden[:, 0])


def bert_classifier(
    num_classes: int = 3,
    vocab_size: int = 32,
    hidden_size: int = 64,
    layers: int = 2,
    heads: int = 4,
    intermediate_size: int = 256,
    max_positions: int = 16,
) -> nn.Module:
    prepare_torchvision()
    from transformers import BertConfig

    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=max_positions,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    return BertClassifier(config, num_classes)
