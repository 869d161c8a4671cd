import torch
from torch import nn

from core.masks import apply_masks, nm_masks, prunable_parameters
from core.semistructured import is_two_four, measure_two_four, unsupported_reason


def test_two_four_pattern_is_recognised_from_the_weights():
    layer = nn.Linear(8, 3)
    assert not is_two_four(layer.weight)
    params = prunable_parameters(nn.Sequential(layer))
    masks = nm_masks({k: v.abs() for k, v in params.items()}, n=2, m=4)
    apply_masks(params, masks)
    assert is_two_four(layer.weight)
    assert not is_two_four(torch.zeros(3, 6))  # inputs not a multiple of 4


def test_cpu_reports_why_nothing_was_measured():
    model = nn.Sequential(nn.Linear(8, 4))
    result = measure_two_four(model, device=torch.device("cpu"))
    assert result == {
        "measured": False,
        "reason": unsupported_reason(torch.device("cpu")),
        "layers": [],
    }
    assert "CUDA" in result["reason"]
