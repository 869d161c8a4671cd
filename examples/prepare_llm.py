"""Build the offline inputs of examples/llm-wanda.yaml: a small Llama causal LM and its text.

    python examples/prepare_llm.py /tmp/adaprune-llm

writes /tmp/adaprune-llm/model/ (a `save_pretrained` directory: config.json, model.safetensors
and a word-level tokenizer) and /tmp/adaprune-llm/data/{train,val,test}.jsonl. The text is
English prose that ships with CPython (the pydoc topic pages), or any UTF-8 file given with
`--text`; the model is built from a LlamaConfig and trained briefly on that text, so that its
perplexity is far below a uniform guess and pruning has something to lose. Nothing is
downloaded. Your own model works the same way: any directory written by
`model.save_pretrained(path)` (safetensors, the default) plus `tokenizer.save_pretrained(path)`.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import torch


def _hide_broken_torchvision() -> None:
    """transformers imports torchvision whenever it is installed, and one built for another
    torch fails to import; a text model never needs it."""
    try:
        import torchvision  # noqa: F401
    except Exception:
        for name in [m for m in sys.modules if m.split(".")[0] == "torchvision"]:
            del sys.modules[name]
        sys.modules["torchvision"] = None  # type: ignore[assignment]


def _paragraphs(text_file: Path | None) -> list[str]:
    if text_file is not None:
        text = text_file.read_text(encoding="utf-8")
    else:
        from pydoc_data.topics import topics

        text = "\n".join(topics[key] for key in sorted(topics))
    words = text.split()
    return [" ".join(words[start : start + 48]) for start in range(0, len(words), 48)]


def _tokenizer(paragraphs: list[str], directory: Path, vocab: int) -> object:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(vocab_size=vocab, special_tokens=["[PAD]", "[UNK]"])
    tokenizer.train_from_iterator(paragraphs, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="[PAD]", unk_token="[UNK]")
    fast.save_pretrained(str(directory))
    return fast


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="directory to write model/ and data/ into")
    parser.add_argument("--text", type=Path, help="a UTF-8 text file (default: pydoc topics)")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--train-steps", type=int, default=300)
    args = parser.parse_args()
    _hide_broken_torchvision()
    random.seed(0)
    torch.manual_seed(0)
    paragraphs = _paragraphs(args.text)
    random.shuffle(paragraphs)
    cut_val, cut_test = int(len(paragraphs) * 0.8), int(len(paragraphs) * 0.9)
    splits = {
        "train": paragraphs[:cut_val],
        "val": paragraphs[cut_val:cut_test][:200],
        "test": paragraphs[cut_test:][:200],
    }
    model_dir, data_dir = args.out / "model", args.out / "data"
    model_dir.mkdir(parents=True, exist_ok=True)
    data_dir.mkdir(parents=True, exist_ok=True)
    for split, rows in splits.items():
        lines = "".join(json.dumps({"text": row}) + "\n" for row in rows)
        (data_dir / f"{split}.jsonl").write_text(lines, encoding="utf-8")
    tokenizer: object = _tokenizer(splits["train"], model_dir, vocab=4000)

    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),  # type: ignore[arg-type]
        hidden_size=args.hidden,
        intermediate_size=3 * args.hidden,
        num_hidden_layers=args.layers,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=128,
        pad_token_id=0,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    encoded = tokenizer(  # type: ignore[operator]
        splits["train"], truncation=True, max_length=64, padding=True, return_tensors="pt"
    )
    ids, mask = encoded["input_ids"], encoded["attention_mask"]
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for step in range(args.train_steps):
        rows = torch.randint(0, ids.shape[0], (16,))
        labels = ids[rows].masked_fill(mask[rows] == 0, -100)
        loss = model(input_ids=ids[rows], attention_mask=mask[rows], labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 100 == 0 or step == args.train_steps - 1:
            print(f"step {step}: loss {float(loss):.3f}")
    model.eval()
    model.save_pretrained(str(model_dir))  # safetensors: the only weights adaprune reads
    print(f"wrote {model_dir} ({sum(p.numel() for p in model.parameters()):,} parameters)")
    print(f"wrote {data_dir}/{{train,val,test}}.jsonl")


if __name__ == "__main__":
    main()
