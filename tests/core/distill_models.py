"""Tiny teacher/student pairs and padded token tasks for the distillation tests, built in memory."""

from __future__ import annotations

import copy
import random

import numpy as np
import torch
from torch import nn

from core.data import TaskData
from core.finetune import epoch_generator, to_tensors, train_epoch
from core.hf.adapter import HFAdapter, pack
from core.hf.load import force_offline
from core.hf.tasks import CausalLM

PAD, CLS = 0, 2
POSITIVE = list(range(4, 10))
NEGATIVE = list(range(10, 16))
FILLER = list(range(16, 24))
VOCAB = 24


def _padded(rows: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    length = max(len(row) for row in rows)
    ids = np.full((len(rows), length), PAD, dtype=np.int64)
    mask = np.zeros((len(rows), length), dtype=np.int64)
    for index, row in enumerate(rows):
        ids[index, : len(row)] = row
        mask[index, : len(row)] = 1
    return ids, mask


def _task(rows: list[list[int]], targets: np.ndarray, *, classes: int, val: int) -> TaskData:
    ids, mask = _padded(rows)
    x = pack(ids, mask)
    return TaskData(
        name="tokens",
        x_train=x[val:],
        y_train=targets[val:],
        x_val=x[:val],
        y_val=targets[:val],
        x_test=None,
        y_test=None,
        num_classes=classes,
        input_shape=tuple(x.shape[1:]),
    )


def sentiment_task(count: int = 192, *, seed: int = 0) -> TaskData:
    """Label 1 when a text holds more positive than negative words; texts of varied length."""
    rng = random.Random(seed)
    rows, labels = [], []
    for _ in range(count):
        positive = rng.randint(0, 3)
        negative = 3 - positive
        words = rng.choices(POSITIVE, k=positive) + rng.choices(NEGATIVE, k=negative)
        words += rng.choices(FILLER, k=rng.randint(1, 5))
        rng.shuffle(words)
        rows.append([CLS, *words])
        labels.append(int(positive > negative))
    return _task(rows, np.array(labels, dtype=np.int64), classes=2, val=count // 4)


def pattern_task(count: int = 128, *, seed: int = 0) -> TaskData:
    """Runs of a fixed cycle of 20 tokens from a random start, 5 to 12 tokens long."""
    rng = random.Random(seed)
    cycle = POSITIVE + NEGATIVE + FILLER
    rows = []
    for _ in range(count):
        start, length = rng.randrange(len(cycle)), rng.randint(5, 12)
        rows.append([cycle[(start + i) % len(cycle)] for i in range(length)])
    ids, mask = _padded(rows)
    targets = CausalLM().targets(ids, mask, None)
    return _task(rows, targets, classes=VOCAB, val=count // 4)


def tiny_bert(*, seed: int = 0) -> HFAdapter:
    force_offline()
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=32,
        pad_token_id=PAD,
        num_labels=2,
    )
    return HFAdapter(
        BertForSequenceClassification(config),
        kind="text-classification",
        excluded={},
        forward_kwargs={},
    )


def tiny_llama(*, seed: int = 0, tied: bool = False, layers: int = 2) -> HFAdapter:
    force_offline()
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=64,
        max_position_embeddings=32,
        pad_token_id=PAD,
        tie_word_embeddings=tied,
    )
    return HFAdapter(
        LlamaForCausalLM(config),
        kind="causal-lm",
        excluded={},
        forward_kwargs=CausalLM.forward_kwargs,
    )


def trained(model: nn.Module, data: TaskData, *, epochs: int, lr: float = 3e-3) -> nn.Module:
    x, y = to_tensors(data.x_train, data.y_train, device=torch.device("cpu"))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    for epoch in range(epochs):
        torch.manual_seed(epoch)
        train_epoch(
            model,
            x=x,
            y=y,
            optimizer=optimizer,
            batch_size=16,
            generator=epoch_generator(seed=0, epoch=epoch),
        )
    return model.eval()


def without_block(adapter: HFAdapter, index: int) -> HFAdapter:
    """A copy of `adapter` with block `index` removed (config and layer indices kept right)."""
    from core.oneshot.blocks import find_blocks

    student = copy.deepcopy(adapter)
    _, blocks = find_blocks(student.hf)
    del blocks[index]
    student.hf.config.num_hidden_layers = len(blocks)
    for position, block in enumerate(blocks):
        attention = getattr(block, "self_attn", None)
        if attention is not None:
            attention.layer_idx = position
    return student


def halved_mlp(adapter: HFAdapter) -> HFAdapter:
    """A copy of a Llama `adapter` keeping the first half of every MLP's intermediate channels."""
    student = copy.deepcopy(adapter)
    keep = student.hf.config.intermediate_size // 2
    for block in student.hf.model.layers:
        mlp = block.mlp
        for name in ("gate_proj", "up_proj"):
            old = getattr(mlp, name)
            new = nn.Linear(old.in_features, keep, bias=False)
            new.weight.data.copy_(old.weight.data[:keep])
            setattr(mlp, name, new)
        down = nn.Linear(keep, mlp.down_proj.out_features, bias=False)
        down.weight.data.copy_(mlp.down_proj.weight.data[:, :keep])
        mlp.down_proj = down
    student.hf.config.intermediate_size = keep
    return student
