"""The `model/` directory of a Hugging Face model's artifact, and loading it back.

`model/` is what `save_pretrained` writes (config.json, *.safetensors) plus the tokenizer
files, so `AutoModelFor....from_pretrained("model")` loads it in any process, with or without
adaprune installed. The manifest's sparsity is counted from the safetensors written there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import Tensor

from core.contract.layout import HF_MODEL_DIR
from core.errors import ArtifactInvalid
from core.hf.adapter import HFAdapter
from core.hf.load import load_model, load_tokenizer
from core.hf.tasks import head_modules
from core.registries import TASK_KINDS

PREFIX = "hf."


def write_pretrained(directory: Path, adapter: HFAdapter, *, source: Path) -> dict[str, Tensor]:
    """Write `directory/model/` (model and tokenizer); return its tensors under the adapter's
    state-dict names, checked equal to the model's own.

    Raises:
        ArtifactInvalid: the files do not read back the model's tensors.
    """
    out = directory / HF_MODEL_DIR
    model: Any = adapter.hf
    model.save_pretrained(str(out))
    load_tokenizer(source).save_pretrained(str(out))
    saved: dict[str, Tensor] = {}
    for file in sorted(out.glob("*.safetensors")):
        saved.update({PREFIX + name: tensor for name, tensor in load_file(str(file)).items()})
    state = adapter.state_dict()
    for name, tensor in saved.items():
        if name not in state or not torch.equal(tensor, state[name].detach().cpu()):
            raise ArtifactInvalid(f"{HF_MODEL_DIR}/ does not read back tensor {name!r}")
    return saved


def model_files(directory: Path) -> list[str]:
    """The files of `directory/model/`, as artifact names ("model/config.json", ...)."""
    return sorted(f"{HF_MODEL_DIR}/{p.name}" for p in (directory / HF_MODEL_DIR).iterdir())


def recipe(adapter: HFAdapter, *, input_shape: tuple[int, ...], num_classes: int) -> dict[str, Any]:
    """The manifest's architecture entry: which class loads `model/` for which task kind."""
    return {
        "hf": HF_MODEL_DIR,
        "task_kind": adapter.kind,
        "auto_class": TASK_KINDS.resolve(adapter.kind).auto_class,
        "model_type": str(getattr(adapter.hf.config, "model_type", "")),
        "input_shape": [int(size) for size in input_shape],
        "input_dtype": "int64",
        "num_classes": int(num_classes),
    }


def load_adapter(directory: Path, architecture: dict[str, Any]) -> HFAdapter:
    """The artifact's model from `directory/model/`, wrapped for the engine (eval mode).

    Raises:
        ArtifactInvalid: the recipe names an unknown task kind.
        ModelLoadFailed: `model/` does not load.
    """
    kind_name = str(architecture.get("task_kind"))
    if kind_name not in TASK_KINDS:
        raise ArtifactInvalid(f"manifest names an unknown task kind {kind_name!r}")
    kind = TASK_KINDS.resolve(kind_name)()
    model = load_model(directory / HF_MODEL_DIR, kind=kind_name)
    excluded = {name: kind.head_reason for name in head_modules(model)}
    return HFAdapter(
        model,
        kind=kind_name,
        excluded=excluded,
        forward_kwargs=kind.forward_kwargs,
        source=str(directory / HF_MODEL_DIR),
    )
