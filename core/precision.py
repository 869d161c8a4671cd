"""The numeric precision that training, scoring and evaluation share on each device."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch


def autocast(device: torch.device) -> AbstractContextManager[object]:
    """bf16 autocast on CUDA (no loss scaling needed), plain float32 elsewhere."""
    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return nullcontext()
