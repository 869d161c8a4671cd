"""GPU path: these run only where CUDA exists (marked gpu; skipped elsewhere)."""

import numpy as np
import pytest
import torch
from torch import nn

from core.data import TaskData
from core.job import resolve_device
from core.loop import prune
from core.masks import prunable_parameters
from core.semistructured import measure_two_four
from core.spec import JobSpec

pytestmark = pytest.mark.gpu


def _task() -> TaskData:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 64)).astype(np.float32)
    y = (x[:, :8].sum(axis=1) > 0).astype(np.int64)
    return TaskData("gpu", x[:384], y[:384], x[384:], y[384:], None, None, 2, (64,))


def test_prune_runs_on_cuda_with_masks_and_model_on_the_device():
    spec = JobSpec.model_validate(
        {
            "model": {"arch": "mlp"},
            "task": {"dataset": "digits"},
            "prune": {"target_sparsity": 0.5, "schedule": {"kind": "linear", "steps": 2}},
            "finetune": {"pretrain_epochs": 2, "final_epochs": 1},
        }
    )
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 2))
    outcome = prune(model, _task(), spec, device=resolve_device("cuda"))
    assert all(mask.device.type == "cuda" for mask in outcome.masks.values())
    for name, param in prunable_parameters(outcome.model).items():
        assert param.device.type == "cuda"
        assert torch.count_nonzero(param[~outcome.masks[name]]) == 0


def test_two_four_kernels_are_timed_on_a_capable_gpu():
    device = torch.device("cuda")
    if torch.cuda.get_device_capability(device) < (8, 0):
        pytest.skip("semi-structured kernels need compute capability 8.0")
    layer = nn.Linear(1024, 1024)
    with torch.no_grad():
        layer.weight.view(1024, -1, 4)[..., 2:] = 0
    result = measure_two_four(nn.Sequential(layer), device=device)
    assert result["layers"] and (
        "speedup" in result["layers"][0] or "skipped" in result["layers"][0]
    )


def test_a_job_leaves_no_tensors_on_the_gpu():
    device = torch.device("cuda")
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated(device)
    spec = JobSpec.model_validate(
        {
            "model": {"arch": "mlp"},
            "task": {"dataset": "digits"},
            "prune": {"target_sparsity": 0.5, "schedule": {"kind": "oneshot"}},
            "finetune": {"pretrain_epochs": 1, "final_epochs": 1},
        }
    )
    outcome = prune(
        nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 2)), _task(), spec, device=device
    )
    del outcome
    torch.cuda.empty_cache()
    assert torch.cuda.memory_allocated(device) == before
