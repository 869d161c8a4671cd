"""Tiny Hugging Face models, tokenizers and text tasks built offline for the tests."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

POSITIVE = ["good", "great", "fine", "nice", "happy", "bright"]
NEGATIVE = ["bad", "poor", "awful", "sad", "dark", "grim"]
FILLER = ["the", "a", "day", "film", "was", "very", "and", "it"]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]


def build_tokenizer(directory: Path) -> int:
    """A word-level tokenizer over the test vocabulary, saved into `directory`; its size."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    from core.hf.load import force_offline

    force_offline()
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(special_tokens=SPECIAL)
    tokenizer.train_from_iterator([" ".join(POSITIVE + NEGATIVE + FILLER)], trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
    )
    fast.save_pretrained(str(directory))
    return int(tokenizer.get_vocab_size())


def tiny_bert(directory: Path) -> Path:
    """A 2-layer BertForSequenceClassification (hidden 32) with its tokenizer, saved."""
    vocab = build_tokenizer(directory)
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(
        vocab_size=vocab,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        pad_token_id=0,
    )
    BertForSequenceClassification(config).save_pretrained(str(directory))
    return directory


def tiny_llama(directory: Path, *, layers: int = 2, tied: bool = False) -> Path:
    """A LlamaForCausalLM (2 layers, hidden 32; `tied`: the head shares the input embedding)
    with its tokenizer, saved."""
    vocab = build_tokenizer(directory)
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        pad_token_id=0,
        tie_word_embeddings=tied,
    )
    LlamaForCausalLM(config).save_pretrained(str(directory))
    return directory


def sentiment_rows(count: int, *, seed: int) -> list[dict[str, object]]:
    """Texts whose label ("pos"/"neg") is given by the sentiment words they contain."""
    rng = random.Random(seed)
    rows: list[dict[str, object]] = []
    for index in range(count):
        label = "pos" if index % 2 == 0 else "neg"
        words = rng.sample(POSITIVE if label == "pos" else NEGATIVE, 2) + rng.sample(FILLER, 3)
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": label})
    return rows


def pattern_rows(count: int, *, seed: int) -> list[dict[str, object]]:
    """Texts of a repeating word cycle: next-token prediction has something to learn."""
    rng = random.Random(seed)
    cycle = FILLER + POSITIVE
    rows: list[dict[str, object]] = []
    for _ in range(count):
        start = rng.randrange(len(cycle))
        rows.append({"text": " ".join(cycle[(start + i) % len(cycle)] for i in range(10))})
    return rows


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path.as_uri()


# Runs without adaprune: its packages cannot be imported (the editable install is hidden) and
# the repository is neither on the path nor the working directory. The script tokenises the
# validation texts with the saved tokenizer and computes the metric from the logits itself.
FRESH = r"""
import importlib.abc, json, math, sys
class NoAdaprune(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("core", "service", "workers", "cli"):
            raise ImportError(f"{name} must not be needed")
        return None
sys.meta_path.insert(0, NoAdaprune())
try:  # a torchvision built for another torch would break transformers' import; text needs none
    import torchvision
except Exception:
    for name in [m for m in sys.modules if m.split(".")[0] == "torchvision"]:
        del sys.modules[name]
    sys.modules["torchvision"] = None
import torch
import transformers
model_dir, kind, texts_file = sys.argv[1], sys.argv[2], sys.argv[3]
rows = [json.loads(line) for line in open(texts_file)]
tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
auto = getattr(transformers, kind)
model = auto.from_pretrained(model_dir).eval()
batch = tokenizer([r["text"] for r in rows], padding=True, truncation=True, max_length=16,
                  return_tensors="pt")
with torch.no_grad():
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
if kind == "AutoModelForSequenceClassification":
    label2id = model.config.label2id
    truth = torch.tensor([label2id[r["label"]] for r in rows])
    value = float((logits.argmax(-1) == truth).double().mean())
else:
    targets = batch["input_ids"][:, 1:].masked_fill(batch["attention_mask"][:, 1:] == 0, -100)
    loss = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100)
    value = math.exp(float(loss))
print(json.dumps({"value": value, "core": "core" in sys.modules}))
"""


def fresh_metric(model_dir: Path, auto_class: str, texts: Path, cwd: Path) -> float:
    """The metric of `model_dir` on the texts in `texts` (JSONL), computed by a fresh Python
    process that cannot import adaprune."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-c", FRESH, str(model_dir), auto_class, str(texts)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["core"] is False
    return float(found["value"])
