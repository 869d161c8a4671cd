"""How many CPU threads torch's intra-op pool uses for a job.

A small model's tensors are too small for torch to split an op usefully, yet every op still
synchronises the whole OpenMP team. On a machine whose cores are busy with other processes, a
team member that is descheduled makes every op wait for it: training the demo's 5 k-parameter
CNN on two busy cores took 180-205 s with two threads against 7-9 s with one. So small models
run on one thread unless a count is asked for; larger ones keep torch's default (the cores it sees).
"""

from __future__ import annotations

import torch
from torch import nn

# Below this many parameters a job's ops gain nothing from a second thread (see the module text).
SMALL_MODEL_PARAMETERS = 1_000_000

# torch's own choice in this process, taken before any job changed it
_DEFAULT_THREADS = torch.get_num_threads()


def auto_threads(parameters: int) -> int:
    """The thread count a model of `parameters` parameters gets when none is asked for."""
    return 1 if parameters < SMALL_MODEL_PARAMETERS else _DEFAULT_THREADS


def configure_threads(model: nn.Module, requested: int | None = None) -> int:
    """Set torch's intra-op thread count for the job that trains `model`; returns the count.

    Args:
        requested: a positive count to use as given; None or 0 chooses by model size
            (`auto_threads`).
    """
    if requested is not None and requested < 0:
        raise ValueError(f"threads must be >= 0 (0 = by model size), got {requested}")
    threads = requested or auto_threads(sum(p.numel() for p in model.parameters()))
    torch.set_num_threads(threads)
    return threads
