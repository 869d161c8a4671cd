"""The transformer families width and depth pruning know: where their blocks, attention and MLP
projections, norms and embeddings are, and which sizes their config can express.

Each family names its modules by their paths under the base model (the `AutoModel` part of a
task model such as BertForSequenceClassification); the task head (classifier, score, lm_head)
keeps its outputs and only loses input columns when the hidden size shrinks.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from torch import nn

from core.errors import UnsupportedArchitecture


@dataclass(frozen=True)
class Family:
    """One architecture family's layout.

    `grouped_heads`: the config has `num_key_value_heads` (and an explicit `head_dim`), so the
    head count can shrink on its own; BERT derives the head size from hidden_size /
    num_attention_heads and so cannot express fewer heads of the same size.
    `attention_follows_hidden`: the head size is hidden_size / num_attention_heads (BERT), so
    a smaller hidden size also keeps fewer channels of every head.
    `heads_divide_hidden`: the config refuses a hidden size that is not a multiple of the
    query head count, even with an explicit head_dim (Llama's validation).
    `hidden_rows`/`hidden_columns`/`hidden_vectors`: parameters (state-dict suffixes under the
    base model, `{i}` for a block index) whose output rows, input columns or entries are the
    hidden size.
    """

    name: str
    model_types: tuple[str, ...]
    blocks: str
    query: str
    key: str
    value: str
    out: str
    mlp_in: tuple[str, ...]
    mlp_out: str
    norms: tuple[str, ...]
    grouped_heads: bool
    hidden_columns: tuple[str, ...]
    hidden_rows: tuple[str, ...]
    hidden_vectors: tuple[str, ...]
    per_block_config: tuple[str, ...] = ()
    heads_divide_hidden: bool = False
    attention_follows_hidden: bool = False


_DECODER_BLOCK = "layers.{i}."
_ENCODER_BLOCK = "encoder.layer.{i}."
LLAMA = Family(
    name="llama",
    model_types=("llama",),
    blocks="layers",
    query="self_attn.q_proj",
    key="self_attn.k_proj",
    value="self_attn.v_proj",
    out="self_attn.o_proj",
    mlp_in=("mlp.gate_proj", "mlp.up_proj"),
    mlp_out="mlp.down_proj",
    norms=("input_layernorm", "post_attention_layernorm"),
    grouped_heads=True,
    hidden_columns=(
        "embed_tokens.weight",
        *(
            _DECODER_BLOCK + f"{name}.weight"
            for name in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")
        ),
        _DECODER_BLOCK + "mlp.gate_proj.weight",
        _DECODER_BLOCK + "mlp.up_proj.weight",
    ),
    hidden_rows=(
        _DECODER_BLOCK + "self_attn.o_proj.weight",
        _DECODER_BLOCK + "self_attn.o_proj.bias",
        _DECODER_BLOCK + "mlp.down_proj.weight",
        _DECODER_BLOCK + "mlp.down_proj.bias",
    ),
    hidden_vectors=(
        _DECODER_BLOCK + "input_layernorm.weight",
        _DECODER_BLOCK + "post_attention_layernorm.weight",
        "norm.weight",
    ),
    per_block_config=("layer_types",),
    heads_divide_hidden=True,
)

FAMILIES: tuple[Family, ...] = (
    LLAMA,
    # Qwen2 is Llama's layout with biased q/k/v projections and no head-count check on hidden
    replace(LLAMA, name="qwen2", model_types=("qwen2",), heads_divide_hidden=False),
    Family(
        name="bert",
        model_types=("bert",),
        blocks="encoder.layer",
        query="attention.self.query",
        key="attention.self.key",
        value="attention.self.value",
        out="attention.output.dense",
        mlp_in=("intermediate.dense",),
        mlp_out="output.dense",
        norms=("attention.output.LayerNorm", "output.LayerNorm"),
        grouped_heads=False,
        hidden_columns=(
            "embeddings.word_embeddings.weight",
            "embeddings.position_embeddings.weight",
            "embeddings.token_type_embeddings.weight",
            *(
                _ENCODER_BLOCK + f"{name}.weight"
                for name in ("attention.self.query", "attention.self.key", "attention.self.value")
            ),
            _ENCODER_BLOCK + "intermediate.dense.weight",
            "pooler.dense.weight",
        ),
        hidden_rows=(
            _ENCODER_BLOCK + "attention.output.dense.weight",
            _ENCODER_BLOCK + "attention.output.dense.bias",
            _ENCODER_BLOCK + "output.dense.weight",
            _ENCODER_BLOCK + "output.dense.bias",
            "pooler.dense.weight",
            "pooler.dense.bias",
        ),
        hidden_vectors=(
            "embeddings.LayerNorm.weight",
            "embeddings.LayerNorm.bias",
            *(
                _ENCODER_BLOCK + f"{norm}.{part}"
                for norm in ("attention.output.LayerNorm", "output.LayerNorm")
                for part in ("weight", "bias")
            ),
        ),
        attention_follows_hidden=True,
    ),
)


def supported() -> str:
    """The supported model types, for messages."""
    return ", ".join(t for family in FAMILIES for t in family.model_types)


def family_of(model: nn.Module) -> Family:
    """The family of a Hugging Face model, read from its config's `model_type`.

    Raises:
        UnsupportedArchitecture: no family knows the model type (the message lists those that do).
    """
    config: Any = getattr(model, "config", None)
    model_type = str(getattr(config, "model_type", "") or type(model).__name__)
    for family in FAMILIES:
        if model_type in family.model_types:
            return family
    raise UnsupportedArchitecture(
        f"width and depth pruning do not support model type {model_type!r} "
        f"({type(model).__name__}); supported: {supported()}"
    )


def base_prefix(model: nn.Module) -> str:
    """The state-dict prefix of the base model inside a task model ("bert.", "model.", "")."""
    prefix = str(getattr(model, "base_model_prefix", ""))
    return f"{prefix}." if prefix and hasattr(model, prefix) else ""


def block_list(model: nn.Module, family: Family) -> nn.ModuleList:
    """The model's ModuleList of blocks."""
    found = model.get_submodule(base_prefix(model) + family.blocks)
    assert isinstance(found, nn.ModuleList)
    return found


def block_module(block: nn.Module, path: str) -> nn.Linear:
    """The Linear at `path` inside a block."""
    found = block.get_submodule(path)
    assert isinstance(found, nn.Linear)
    return found
