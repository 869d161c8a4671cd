"""Make `import torchvision` (and `transformers`, which imports it) work beside the CPU torch.

The only torchvision 0.28.0 wheel available here is a CUDA build. Its C extension (`_C.so`)
cannot be loaded next to the CPU build of torch, so the operator schemas it would register are
missing, and `import torchvision` fails when its Python code attaches fake kernels to them
(`operator torchvision::nms does not exist`, then the same for `torchvision::qnms`). The model
definitions the tests use are pure Python and never call those operators: declaring the two
schemas (no kernels) is enough for the import to succeed. Where the extension does load, it
registers them itself and nothing is declared here.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch

# the schemas torchvision's C extension declares for these two operators
_MISSING_SCHEMAS = {
    "torchvision::nms": "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "torchvision::qnms": "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}


def _extension_loads() -> bool:
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return False
    for location in spec.submodule_search_locations:
        for library in sorted(Path(location).glob("_C*.so")) + sorted(
            Path(location).glob("_C*.pyd")
        ):
            try:
                torch.ops.load_library(str(library))
            except OSError:
                return False
            return True
    return False


def prepare_torchvision() -> None:
    """Declare the operator schemas torchvision needs when its C extension cannot load.

    Call before the first `import torchvision` or `import transformers`; calling again is a no-op.
    """
    if "torchvision" in sys.modules or _extension_loads():
        return
    for name, schema in _MISSING_SCHEMAS.items():
        namespace, _, op = name.partition("::")
        if not hasattr(getattr(torch.ops, namespace), op):
            torch.library.define(name, schema)
