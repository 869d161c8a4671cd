"""Tiny Hugging Face transformers built from configs, and calibration batches for them."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from tests.support.torchvision_ops import prepare_torchvision

prepare_torchvision()

from transformers import (  # noqa: E402
    BertConfig,
    BertForSequenceClassification,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
)

VOCAB = 128


def tiny_llama(layers: int = 2, hidden: int = 32, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    return LlamaForCausalLM(config).eval()


def tiny_bert(layers: int = 2, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=3,
    )
    return BertForSequenceClassification(config).eval()


def tiny_gpt2(layers: int = 2, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=VOCAB, n_embd=32, n_layer=layers, n_head=4, n_positions=64, bos_token_id=0
    )
    config.eos_token_id = 0
    return GPT2LMHeadModel(config).eval()


def calibration(batches: int = 2, batch: int = 3, length: int = 11, seed: int = 0) -> list[Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randint(0, VOCAB, (batch, length), generator=generator) for _ in range(batches)]


def with_mask(tokens: list[Tensor]) -> list[dict[str, Tensor]]:
    """Batches with an attention mask whose last two positions of the first row are padding."""
    out = []
    for ids in tokens:
        mask = torch.ones_like(ids)
        mask[0, -2:] = 0
        out.append({"input_ids": ids, "attention_mask": mask})
    return out
