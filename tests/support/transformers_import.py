"""Import `transformers` beside the CPU build of torch when torchvision's C extension cannot load.

transformers imports torchvision when it is installed; a torchvision wheel built for CUDA fails
at import next to a CPU torch (`operator torchvision::nms does not exist`) because its extension
never registered the operator schemas its Python code attaches fake kernels to. The model
definitions used here never call those operators, so declaring the schemas (no kernels) is
enough. Where the extension loads, it registers them itself and nothing is declared.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch

_SCHEMAS = {
    "nms": "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}


def _extension_loads() -> bool:
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return True  # no torchvision: transformers does not import it
    for location in spec.submodule_search_locations:
        for library in sorted(Path(location).glob("_C*.so")):
            try:
                torch.ops.load_library(str(library))
            except OSError:
                return False
            return True
    return False


def prepare_transformers() -> None:
    """Make `import transformers` (and its model modules) work; calling again is a no-op."""
    if "torchvision" in sys.modules or _extension_loads():
        return
    for name, schema in _SCHEMAS.items():
        if not hasattr(torch.ops.torchvision, name):
            torch.library.define(f"torchvision::{name}", schema)
