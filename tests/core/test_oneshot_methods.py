"""The one-shot methods on single layers: exact counts, N:M patterns, SparseGPT's reconstruction
against magnitude and Wanda, and OWL's allocation."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from core.oneshot.allocation import OwlAllocation, outlier_ratio, owl_sparsities
from core.oneshot.methods import LayerTarget, MagnitudeOneShot, WandaOneShot
from core.oneshot.selection import nm_mask
from core.oneshot.sparsegpt import SparseGPTOneShot
from core.oneshot.stats import InputStats

METHODS = [MagnitudeOneShot(), WandaOneShot(), SparseGPTOneShot(block_size=16)]


def correlated_inputs(features: int, tokens: int, seed: int) -> Tensor:
    """Tokens (tokens x features) with strongly correlated features of very different scales."""
    generator = torch.Generator().manual_seed(seed)
    latent = torch.randn(tokens, features // 4, generator=generator)
    mixing = torch.randn(features // 4, features, generator=generator)
    scales = torch.logspace(-1, 1, features)[torch.randperm(features, generator=generator)]
    noise = 0.1 * torch.randn(tokens, features, generator=generator)
    return (latent @ mixing + noise) * scales


def stats_of(inputs: Tensor) -> InputStats:
    stats = InputStats(inputs.shape[1], hessian=True, device=torch.device("cpu"))
    stats.add(inputs[: inputs.shape[0] // 2])
    stats.add(inputs[inputs.shape[0] // 2 :])
    return stats


def reconstruction_error(dense: Tensor, pruned: Tensor, inputs: Tensor) -> float:
    return float(
        ((dense - pruned) @ inputs.t()).square().sum() / (dense @ inputs.t()).square().sum()
    )


@pytest.fixture
def layer() -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(1)
    return torch.randn(24, 64, generator=generator), correlated_inputs(64, 512, seed=2)


def test_input_stats_are_norms_and_the_hessian_of_all_tokens(layer):
    _, inputs = layer
    stats = stats_of(inputs)
    assert stats.tokens == 512
    assert torch.allclose(stats.norms(), inputs.norm(dim=0), rtol=1e-5)
    assert torch.allclose(stats.hessian(), 2 * inputs.t() @ inputs / 512, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("sparsity", [0.5, 0.25, 0.75])
@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.name)
def test_each_method_prunes_exactly_the_target_fraction(layer, method, sparsity):
    weight, inputs = layer
    pruned = method.prune(weight, stats_of(inputs), LayerTarget(sparsity))
    assert int((pruned == 0).sum()) == round(weight.numel() * sparsity)
    if method.name == "wanda":  # compared per output row: every row alike
        assert ((pruned == 0).sum(dim=1) == round(64 * sparsity)).all()
    if method.name == "magnitude":  # per layer by default: the global smallest go
        kept = pruned != 0
        assert weight.abs()[kept].min() >= weight.abs()[~kept].max()


@pytest.mark.parametrize("group", ["row", "layer"])
def test_the_comparison_group_decides_who_competes(layer, group):
    weight, inputs = layer
    weight = weight * torch.linspace(0.1, 3.0, 24).unsqueeze(1)  # rows of different scales
    for method in (MagnitudeOneShot(), WandaOneShot()):
        zeros = (method.prune(weight, stats_of(inputs), LayerTarget(0.5, group=group)) == 0).sum(1)
        if group == "row":
            assert (zeros == 32).all()
        else:
            assert zeros[0] > zeros[-1]  # small rows lose more


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.name)
def test_each_method_keeps_two_of_every_four(layer, method):
    weight, inputs = layer
    pruned = method.prune(weight, stats_of(inputs), LayerTarget(0.5, nm=(2, 4)))
    groups = (pruned != 0).reshape(24, 16, 4).sum(dim=-1)
    assert (groups == 2).all()


def test_nm_refuses_a_width_that_is_not_a_multiple_of_m():
    with pytest.raises(ValueError, match="2:4"):
        nm_mask(torch.rand(3, 10), 2, 4)


@pytest.mark.parametrize("nm", [None, (2, 4)])
def test_sparsegpt_reconstructs_the_layer_better_than_magnitude_and_wanda(layer, nm):
    weight, inputs = layer
    stats = stats_of(inputs)
    target = LayerTarget(0.5, nm=nm)
    errors = {
        method.name: reconstruction_error(weight, method.prune(weight, stats, target), inputs)
        for method in METHODS
    }
    assert errors["sparsegpt"] < errors["wanda"] < errors["magnitude"]
    assert errors["sparsegpt"] < 0.7 * errors["wanda"]


def test_sparsegpt_on_a_layer_whose_input_never_fires(layer):
    weight, inputs = layer
    inputs = inputs.clone()
    inputs[:, :4] = 0.0
    pruned = SparseGPTOneShot().prune(weight, stats_of(inputs), LayerTarget(0.5))
    assert torch.isfinite(pruned).all()
    assert int((pruned == 0).sum()) == weight.numel() // 2


def test_outlier_ratio_counts_scores_above_m_times_the_mean():
    scores = torch.ones(100)
    scores[:3] = 50.0  # mean is 2.47: the three are above 5 x mean, the rest are not
    assert outlier_ratio([scores[:40], scores[40:]], threshold=5.0) == pytest.approx(0.03)


def test_owl_holds_the_mean_at_the_target_and_the_spread_at_two_lambda():
    ratios = [0.01, 0.05, 0.02, 0.09]
    sparsities = owl_sparsities(ratios, target=0.7, spread=0.08)
    assert sum(sparsities) / 4 == pytest.approx(0.7)
    assert max(sparsities) - min(sparsities) == pytest.approx(0.16)
    order = sorted(range(4), key=lambda i: ratios[i])
    assert [sparsities[i] for i in order] == sorted(sparsities, reverse=True)  # outliers keep more
    assert owl_sparsities([0.02, 0.02], target=0.5, spread=0.08) == [0.5, 0.5]


def test_owl_refuses_sparsities_outside_the_unit_interval():
    with pytest.raises(ValueError, match="owl_lambda"):
        owl_sparsities([0.0, 1.0], target=0.95, spread=0.2)
    with pytest.raises(ValueError, match="lambda"):
        OwlAllocation(spread=0.6)
