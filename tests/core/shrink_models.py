"""Tiny BERT, Llama (grouped-query attention) and Qwen2 models for the width and depth tests,
built from configs with fixed seeds."""

from __future__ import annotations

from typing import Any

import torch

from core.hf.load import force_offline

VOCAB = 40


def tiny(family: str, *, seed: int = 0) -> Any:
    """An eval-mode model of `family` ("bert", "bert-base": a bare BertModel, "llama",
    "qwen2"): 4 blocks, hidden 64."""
    force_offline()
    import transformers

    torch.manual_seed(seed)
    common: dict[str, Any] = {
        "vocab_size": VOCAB,
        "hidden_size": 64,
        "num_hidden_layers": 4,
        "intermediate_size": 128,
        "max_position_embeddings": 32,
    }
    if family.startswith("bert"):
        config = transformers.BertConfig(num_attention_heads=4, num_labels=3, **common)
        bare = family == "bert-base"
        model = (transformers.BertModel if bare else transformers.BertForSequenceClassification)(
            config
        )
    elif family == "llama":
        config = transformers.LlamaConfig(
            num_attention_heads=8, num_key_value_heads=4, tie_word_embeddings=False, **common
        )
        model = transformers.LlamaForCausalLM(config)
    else:
        config = transformers.Qwen2Config(
            num_attention_heads=8, num_key_value_heads=2, tie_word_embeddings=True, **common
        )
        model = transformers.Qwen2ForCausalLM(config)
    return model.eval()


def calibration(*, seed: int = 1, batches: int = 2) -> list[torch.Tensor]:
    """Packed (N, 2, L) token ids and attention masks, the last rows right-padded."""
    generator = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(batches):
        ids = torch.randint(1, VOCAB, (4, 12), generator=generator)
        mask = torch.ones_like(ids)
        mask[-1, 8:] = 0
        out.append(torch.stack([ids, mask], dim=1))
    return out


def forward_of(model: Any) -> Any:
    """Runs a packed batch through a Hugging Face model, as the engine's adapter does (the
    last hidden state for a bare encoder)."""

    def forward(batch: torch.Tensor) -> torch.Tensor:
        output = model(input_ids=batch[:, 0], attention_mask=batch[:, 1])
        logits = getattr(output, "logits", None)
        return output.last_hidden_state if logits is None else logits

    return forward
