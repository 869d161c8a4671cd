"""Measured N:M (2:4) kernels: time each pruned Linear as a semi-structured sparse matmul.

NVIDIA's sparse tensor cores (compute capability 8.0 and newer) run 2:4 sparse matrices through
`torch.sparse.to_sparse_semi_structured`. Whether that is faster than the dense matmul depends on
the shapes and the card (it can be several times slower), so each layer is timed against its
dense self and the measured ratio is recorded; nothing is claimed where nothing was measured.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

MIN_CAPABILITY = (8, 0)


def unsupported_reason(device: torch.device) -> str | None:
    """Why semi-structured kernels cannot be measured on `device`, or None if they can."""
    if device.type != "cuda":
        return "semi-structured sparse kernels need a CUDA GPU (compute capability >= 8.0)"
    if not torch.cuda.is_available():
        return "CUDA is not available"
    capability = torch.cuda.get_device_capability(device)
    if capability < MIN_CAPABILITY:
        return f"compute capability {capability} is below {MIN_CAPABILITY}"
    if not hasattr(torch.sparse, "to_sparse_semi_structured"):
        return "this torch build has no to_sparse_semi_structured"
    return None


def is_two_four(weight: Tensor) -> bool:
    """True when every group of 4 consecutive inputs of every row has at most 2 non-zeros."""
    if weight.dim() != 2 or weight.shape[1] % 4:
        return False
    groups = (weight != 0).reshape(weight.shape[0], -1, 4).sum(dim=-1)
    return bool((groups <= 2).all())


def _median_seconds(function: Callable[[], Tensor], *, device: torch.device, repeats: int) -> float:
    for _ in range(3):
        function()
    torch.cuda.synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


@torch.inference_mode()
def measure_two_four(
    model: nn.Module, *, device: torch.device, tokens: int = 1024, repeats: int = 20
) -> dict[str, Any]:
    """Time every 2:4-pruned Linear of `model` dense vs semi-structured sparse on `device`.

    Each layer multiplies a (tokens, in_features) half-precision input; the sparse kernel needs
    fp16/bf16 and shapes the kernel accepts, and layers it refuses are listed with the reason.

    Returns:
        {"measured": bool, "reason": str | None, "layers": [{"name", "shape", "dense_s",
        "sparse_s", "speedup"} or {"name", "shape", "skipped"}]}
    """
    reason = unsupported_reason(device)
    if reason is not None:
        return {"measured": False, "reason": reason, "layers": []}
    convert = torch.sparse.to_sparse_semi_structured
    layers: list[dict[str, Any]] = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear) or not is_two_four(module.weight):
            continue
        weight = module.weight.detach().to(device=device, dtype=torch.float16).contiguous()
        x = torch.randn(tokens, weight.shape[1], device=device, dtype=torch.float16)
        entry: dict[str, Any] = {"name": name, "shape": list(weight.shape)}
        try:
            sparse = convert(weight)
            dense_s = _median_seconds(partial(F.linear, x, weight), device=device, repeats=repeats)
            sparse_s = _median_seconds(partial(F.linear, x, sparse), device=device, repeats=repeats)
        except (RuntimeError, ValueError) as error:
            entry["skipped"] = str(error).splitlines()[0][:200]
        else:
            entry |= {"dense_s": dense_s, "sparse_s": sparse_s, "speedup": dense_s / sparse_s}
        layers.append(entry)
    return {"measured": any("speedup" in e for e in layers), "reason": None, "layers": layers}
