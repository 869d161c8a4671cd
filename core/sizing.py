"""A job's size before anything is allocated: the model built on `meta`, its training memory.

Training memory is estimated as

    params x 4 bytes x COPIES + data on the device + activations,

with COPIES = 8: the weights, their gradients, AdamW's two moments, the masks, the dense
reference copy, the rollback snapshot of the adaptive controller and the last model within
tolerance it holds back while it builds on a provisional step; the task's splits as float32
(they live on the device for the whole run); and a margin for activations and temporaries:
one more weights-sized buffer plus batch_size x example size x 4 bytes x 2 (a batch's inputs and
their gradients), at least 64 MiB for the allocator's own overhead. It is an estimate meant to
refuse the absurd (the job's memory limit catches what it misses), not an exact figure.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from core.data import TaskData
from core.errors import ModelLoadFailed, ResourceLimit
from core.limits import MIB, JobLimits, human_bytes

COPIES = 8
FLOAT_BYTES = 4
MIN_ACTIVATION_BYTES = 64 * MIB


@dataclass(frozen=True)
class JobSize:
    """What `estimate` found: the model's parameter count and the training memory estimate."""

    params: int
    memory_bytes: int


def count_on_meta(build: Callable[[], nn.Module]) -> int:
    """Parameters of the model `build()` makes, built on the `meta` device (no memory used).

    Raises:
        ResourceLimit: a size too large to represent (e.g. a width of 2**70).
        ModelLoadFailed: the builder refused its arguments (as the real build would).
    """
    try:
        with torch.device("meta"):
            model = build()
    except (ModelLoadFailed, ResourceLimit):
        raise
    except (OverflowError, MemoryError) as error:
        raise ResourceLimit(f"the model's sizes cannot be represented: {error}") from error
    except (TypeError, RuntimeError) as error:
        if "overflow" in str(error).lower():
            first = str(error).splitlines()[0]
            raise ResourceLimit(f"the model's sizes cannot be represented: {first}") from error
        raise ModelLoadFailed(f"the model cannot be built: {error}") from error
    return sum(int(p.numel()) for p in model.parameters()) + sum(
        int(b.numel()) for b in model.buffers()
    )


def training_bytes(params: int, *, data: TaskData, batch_size: int) -> int:
    """The module docstring's estimate of training memory, in bytes."""
    example = 1
    for size in data.input_shape:
        example *= size
    rows = sum(len(x) for x in (data.x_train, data.x_val) if x is not None)
    data_bytes = rows * example * FLOAT_BYTES
    activations = max(
        MIN_ACTIVATION_BYTES, params * FLOAT_BYTES + 2 * batch_size * example * FLOAT_BYTES
    )
    return params * FLOAT_BYTES * COPIES + data_bytes + activations


def estimate(
    build: Callable[[], nn.Module], *, data: TaskData, batch_size: int, limits: JobLimits
) -> JobSize:
    """Size the job on `meta` and refuse it when it exceeds `limits`.

    Raises:
        ResourceLimit: the parameter count or the memory estimate is over its limit; the
            message gives both figures and the setting that raises the limit.
    """
    params = count_on_meta(build)
    if params > limits.max_params:
        raise ResourceLimit(
            f"the model has {params:,} parameters, over the limit of {limits.max_params:,} "
            "(ADAPRUNE_MAX_PARAMS)"
        )
    memory = training_bytes(params, data=data, batch_size=batch_size)
    if memory > limits.max_job_memory_bytes:
        raise ResourceLimit(
            f"the job needs about {human_bytes(memory)} to train ({params:,} parameters), over "
            f"the limit of {human_bytes(limits.max_job_memory_bytes)} "
            "(ADAPRUNE_MAX_JOB_MEMORY_BYTES)"
        )
    return JobSize(params=params, memory_bytes=memory)
