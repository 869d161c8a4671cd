"""Loading a Hugging Face `save_pretrained` directory and its text task, offline and pickle-free.

The directory must hold config.json and `*.safetensors` weights; any pickle weights (`.bin`,
`.pt`, `.pth`, `.ckpt`, `.pkl`) are refused, the hub is never contacted (offline mode, local
files only) and no code from the directory runs (`trust_remote_code` is never set).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from core.data import TaskData
from core.errors import DataInvalid, ModelLoadFailed
from core.hf.adapter import HFAdapter, pack
from core.hf.tasks import head_modules
from core.hf.text import read_splits
from core.losses import IGNORE
from core.registries import TASK_KINDS
from core.spec import JobSpec

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
_DEFAULT_LABEL = "LABEL_"


def force_offline() -> None:
    """Make every Hugging Face library refuse the network in this process, and keep a
    torchvision that cannot be imported (built for another torch) out of transformers' way:
    text models never need it, but transformers imports it whenever it is installed."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    if "torchvision" in sys.modules or "transformers" in sys.modules:
        return
    try:
        import torchvision  # noqa: F401
    except Exception:
        for name in [m for m in sys.modules if m.split(".")[0] == "torchvision"]:
            del sys.modules[name]
        # None in sys.modules: importlib's find_spec reports the package as absent
        sys.modules["torchvision"] = None  # type: ignore[assignment]


def check_directory(path: Path) -> None:
    """Refuse a directory that is not a safetensors `save_pretrained` one.

    Raises:
        ModelLoadFailed: not a directory, no config.json, pickle weights, or no safetensors.
    """
    if not path.is_dir():
        raise ModelLoadFailed(f"model.hf {path} is not a directory")
    if not (path / "config.json").is_file():
        raise ModelLoadFailed(f"model.hf {path} has no config.json (a save_pretrained directory)")
    pickles = sorted(p.name for p in path.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
    if pickles:
        raise ModelLoadFailed(
            f"model.hf holds pickle weights ({', '.join(pickles)}): pickles are never loaded; "
            "save the model with save_pretrained(safe_serialization=True) (*.safetensors)"
        )
    if not any(p.suffix == ".safetensors" for p in path.iterdir()):
        raise ModelLoadFailed(f"model.hf {path} has no *.safetensors weights")


def load_tokenizer(path: Path) -> Any:
    """The directory's own tokenizer (fast when available), loaded offline."""
    force_offline()
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(
            str(path), local_files_only=True, trust_remote_code=False
        )
    except Exception as error:
        raise ModelLoadFailed(f"model.hf tokenizer cannot be loaded: {error}") from error


def load_model(path: Path, *, kind: str, overrides: Mapping[str, Any] | None = None) -> Any:
    """The directory's model through the `AutoModelFor...` class of task kind `kind`.

    Raises:
        ModelLoadFailed: refused directory, an unknown architecture or weights that do not fit.
    """
    check_directory(path)
    force_offline()
    import transformers

    transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    auto = getattr(transformers, TASK_KINDS.resolve(kind).auto_class)
    try:
        model = auto.from_pretrained(
            str(path),
            local_files_only=True,
            trust_remote_code=False,
            use_safetensors=True,
            **dict(overrides or {}),
        )
    except Exception as error:
        raise ModelLoadFailed(f"model.hf cannot be loaded as {auto.__name__}: {error}") from error
    return model


def _label_key(label: Any) -> tuple[bool, Any]:
    return (isinstance(label, str), label)


def label_ids(
    labels: Mapping[str, list[Any]], *, config: Any
) -> tuple[dict[str, np.ndarray], dict[int, str] | None]:
    """Map labels to ids: by the config's label2id when it names real labels, else by the
    sorted unique labels of all splits (then also returned as the new id2label).

    Raises:
        DataInvalid: a label the config's label2id does not know, or fewer than 2 labels.
    """
    known = {str(name): int(index) for name, index in (config.label2id or {}).items()}
    if known and not all(name.startswith(_DEFAULT_LABEL) for name in known):
        ids = {}
        for split, values in labels.items():
            unknown = sorted({str(v) for v in values} - set(known))
            if unknown:
                raise DataInvalid(
                    f"{split}: label {unknown[0]!r} is not in the model's label2id "
                    f"({', '.join(sorted(known))})"
                )
            ids[split] = np.array([known[str(v)] for v in values], dtype=np.int64)
        return ids, None
    names = sorted({v for values in labels.values() for v in values}, key=_label_key)
    if len(names) < 2:
        raise DataInvalid("labels need at least 2 classes")
    index = {name: i for i, name in enumerate(names)}
    ids = {
        split: np.array([index[v] for v in values], dtype=np.int64)
        for split, values in labels.items()
    }
    return ids, {i: str(name) for i, name in enumerate(names)}


def tokenize(
    tokenizer: Any, texts: Mapping[str, list[str]], *, max_length: int
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Token ids and attention masks per split, right-padded to the longest text (at most
    `max_length` tokens) with the tokenizer's pad token (0 when it has none)."""
    encoded = {
        split: tokenizer(values, truncation=True, max_length=max_length)["input_ids"]
        for split, values in texts.items()
    }
    length = max(len(ids) for rows in encoded.values() for ids in rows)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out = {}
    for split, rows in encoded.items():
        ids = np.full((len(rows), length), pad, dtype=np.int64)
        mask = np.zeros((len(rows), length), dtype=np.int64)
        for row, tokens in enumerate(rows):
            ids[row, : len(tokens)] = tokens
            mask[row, : len(tokens)] = 1
        out[split] = (ids, mask)
    return out


def prepare_hf(
    spec: JobSpec, *, fetch_dir: Callable[[str], Path], fetch: Callable[[str], Path]
) -> tuple[TaskData, HFAdapter, Path]:
    """Load a Hugging Face job's text task and model: (data, adapter, model directory).

    Features are the packed (N, 2, L) int64 ids and masks; targets are label ids (N,) for
    classification and next-token ids (N, L) for a causal LM.

    Raises:
        ModelLoadFailed: the directory is refused or does not load.
        DataInvalid: the text files are missing or malformed.
    """
    task = spec.task
    assert spec.model.hf is not None and task.kind is not None
    try:
        directory = fetch_dir(spec.model.hf)
    except FileNotFoundError as error:
        raise ModelLoadFailed(str(error)) from error
    check_directory(directory)
    kind = TASK_KINDS.resolve(task.kind)()
    tokenizer = load_tokenizer(directory)
    splits = read_splits(task, fetch=fetch, labelled=kind.labelled, fetch_dir=fetch_dir)
    overrides: dict[str, Any] = {}
    labels: dict[str, np.ndarray] = {}
    if splits.labels is not None:
        force_offline()
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(str(directory), local_files_only=True)
        labels, id2label = label_ids(splits.labels, config=config)
        if id2label is not None:
            overrides = {
                "num_labels": len(id2label),
                "id2label": id2label,
                "label2id": {name: i for i, name in id2label.items()},
                "ignore_mismatched_sizes": True,
            }
    model = load_model(directory, kind=task.kind, overrides=overrides)
    encoded = tokenize(tokenizer, splits.texts, max_length=task.max_length)
    xs = {split: pack(ids, mask) for split, (ids, mask) in encoded.items()}
    ys = {
        split: kind.targets(ids, mask, labels.get(split)) for split, (ids, mask) in encoded.items()
    }
    num_classes = int(model.config.num_labels if kind.labelled else model.config.vocab_size)
    data = TaskData(
        name=Path(directory).name,
        x_train=xs["train"],
        y_train=ys["train"],
        x_val=xs["val"],
        y_val=ys["val"],
        x_test=xs.get("test"),
        y_test=ys.get("test"),
        num_classes=num_classes,
        input_shape=tuple(int(size) for size in xs["train"].shape[1:]),
    )
    for split, targets in ys.items():
        if not (targets != IGNORE).any():
            raise DataInvalid(f"{split}: no text has a token to predict (texts too short)")
    excluded = {name: kind.head_reason for name in head_modules(model)}
    adapter = HFAdapter(
        model,
        kind=task.kind,
        excluded=excluded,
        forward_kwargs=kind.forward_kwargs,
        source=str(directory),
    )
    return data, adapter, directory
