from __future__ import annotations

import math
from typing import Literal

import pytest
import torch
from torch import Tensor, nn

import core.selection
from core.masks import (
    apply_masks,
    layer_floor,
    measured_sparsity,
    nm_incompatible,
    nm_masks,
    prunable_parameters,
    sensitivity_allocation,
    unstructured_masks,
)


def random_scores(*shapes: tuple[int, ...]) -> dict[str, Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {f"l{i}": torch.rand(shape, generator=generator) for i, shape in enumerate(shapes)}


def pruned(masks: dict[str, Tensor]) -> int:
    return sum(int((~mask).sum()) for mask in masks.values())


def test_prunable_parameters_lists_linear_conv_and_recurrent_weights_only() -> None:
    model = nn.Sequential(
        nn.Embedding(10, 4),
        nn.LSTM(4, 4, num_layers=2),
        nn.Conv1d(4, 4, 3),
        nn.BatchNorm1d(4),
        nn.Conv2d(4, 4, 1),
        nn.LayerNorm(4),
        nn.GRU(4, 2),
        nn.Linear(4, 2),
    )
    names = list(prunable_parameters(model))
    assert names == [
        "1.weight_ih_l0",
        "1.weight_hh_l0",
        "1.weight_ih_l1",
        "1.weight_hh_l1",
        "2.weight",
        "4.weight",
        "6.weight_ih_l0",
        "6.weight_hh_l0",
        "7.weight",
    ]
    assert set(names) <= set(model.state_dict())


def test_global_masks_prune_exactly_the_requested_count_of_lowest_scores() -> None:
    scores = random_scores((8, 6), (5, 8), (3, 5))
    total = sum(s.numel() for s in scores.values())
    masks = unstructured_masks(scores, sparsity=0.37, scope="global", min_density=0.02)
    assert pruned(masks) == round(0.37 * total)
    kept = torch.cat([s[m] for s, m in zip(scores.values(), masks.values(), strict=True)])
    dropped = torch.cat([s[~m] for s, m in zip(scores.values(), masks.values(), strict=True)])
    assert dropped.max() < kept.min()
    for name, mask in masks.items():
        assert mask.dtype == torch.bool and mask.shape == scores[name].shape


def test_global_masks_keep_the_floor_of_a_layer_with_tiny_scores_and_still_hit_the_count() -> None:
    scores = random_scores((10, 10), (10, 10))
    scores["l1"] = scores["l1"] * 1e-6
    masks = unstructured_masks(scores, sparsity=0.6, scope="global", min_density=0.1)
    assert int(masks["l1"].sum()) == 10
    assert pruned(masks) == 120


def test_global_masks_never_empty_a_layer_even_with_zero_min_density() -> None:
    scores = random_scores((4, 4), (4, 4))
    scores["l0"] = torch.zeros(4, 4)
    masks = unstructured_masks(scores, sparsity=0.9, scope="global", min_density=0.0)
    assert int(masks["l0"].sum()) >= 1
    assert pruned(masks) == round(0.9 * 32)


def test_global_masks_prune_as_much_as_floors_allow_when_target_is_impossible() -> None:
    scores = random_scores((10, 10), (4, 5))
    masks = unstructured_masks(scores, sparsity=0.95, scope="global", min_density=0.5)
    assert [int(m.sum()) for m in masks.values()] == [50, 10]


def test_global_masks_break_ties_by_layer_then_index() -> None:
    scores = {"a": torch.ones(2, 3), "b": torch.ones(3, 2)}
    masks = unstructured_masks(scores, sparsity=0.5, scope="global", min_density=0.0)
    again = unstructured_masks(scores, sparsity=0.5, scope="global", min_density=0.0)
    assert not masks["a"].reshape(-1)[:5].any()
    assert masks["a"].reshape(-1)[5] and masks["b"].reshape(-1)[1:].all()
    assert not masks["b"].reshape(-1)[0]
    assert all(torch.equal(masks[k], again[k]) for k in masks)


def test_layer_scope_prunes_each_layers_share() -> None:
    scores = random_scores((8, 6), (5, 8))
    masks = unstructured_masks(scores, sparsity=0.5, scope="layer", min_density=0.02)
    assert [int((~m).sum()) for m in masks.values()] == [24, 20]
    for name, mask in masks.items():
        assert scores[name][~mask].max() < scores[name][mask].min()


def test_layer_sparsity_overrides_the_shared_target_per_layer() -> None:
    scores = random_scores((10, 10), (10, 10))
    masks = unstructured_masks(
        scores, sparsity=0.5, scope="layer", min_density=0.05, layer_sparsity={"l1": 0.99}
    )
    assert [int((~m).sum()) for m in masks.values()] == [50, 95]


def test_masks_are_monotonic_with_previous() -> None:
    first_scores = random_scores((8, 6), (5, 8))
    previous = unstructured_masks(first_scores, sparsity=0.3, scope="global", min_density=0.02)
    new_scores = {name: 1.0 - s for name, s in first_scores.items()}
    scopes: tuple[Literal["global", "layer"], ...] = ("global", "layer")
    for scope in scopes:
        masks = unstructured_masks(
            new_scores, sparsity=0.6, scope=scope, min_density=0.02, previous=previous
        )
        for name in masks:
            assert not (masks[name] & ~previous[name]).any()
    grown = unstructured_masks(
        new_scores, sparsity=0.6, scope="global", min_density=0.02, previous=previous
    )
    assert pruned(grown) == round(0.6 * 88)


def test_lower_request_than_previous_keeps_previous_masks() -> None:
    scores = random_scores((8, 6), (5, 8))
    previous = unstructured_masks(scores, sparsity=0.5, scope="global", min_density=0.02)
    masks = unstructured_masks(
        random_scores((8, 6), (5, 8)),
        sparsity=0.2,
        scope="global",
        min_density=0.02,
        previous=previous,
    )
    assert all(torch.equal(masks[k], previous[k]) for k in masks)


def test_unstructured_masks_reject_out_of_range_arguments() -> None:
    scores = random_scores((2, 2))
    with pytest.raises(ValueError, match=r"1\.5"):
        unstructured_masks(scores, sparsity=1.5, scope="global", min_density=0.0)
    with pytest.raises(ValueError, match="'channel'"):
        unstructured_masks(scores, sparsity=0.5, scope="channel", min_density=0.0)  # type: ignore[arg-type]


def groups_of(mask: Tensor, m: int) -> Tensor:
    return mask.movedim(1, -1).reshape(-1, m)


def test_nm_masks_keep_n_of_every_m_inputs_for_linear_and_conv() -> None:
    scores = random_scores((4, 8), (3, 8, 3), (2, 4, 3, 3))
    masks = nm_masks(scores, n=2, m=4)
    for name, mask in masks.items():
        assert (groups_of(mask, 4).sum(dim=1) == 2).all()
        score_groups = groups_of(scores[name], 4)
        mask_groups = groups_of(mask, 4)
        kept_min = score_groups.masked_fill(~mask_groups, math.inf).min(dim=1).values
        dropped_max = score_groups.masked_fill(mask_groups, -math.inf).max(dim=1).values
        assert (kept_min > dropped_max).all()


def test_nm_masks_leave_incompatible_and_unlisted_layers_dense() -> None:
    scores = random_scores((4, 8), (4, 6), (4, 8))
    assert nm_incompatible({k: tuple(v.shape) for k, v in scores.items()}, 4) == ["l1"]
    masks = nm_masks(scores, n=2, m=4, layers=["l0", "l1"])
    assert (groups_of(masks["l0"], 4).sum(dim=1) == 2).all()
    assert masks["l1"].all() and masks["l2"].all()


def test_nm_masks_keep_previous_zeros() -> None:
    scores = random_scores((4, 8))
    previous = torch.ones(4, 8, dtype=torch.bool)
    previous[0, 0] = False
    scores["l0"][0, 0] = 10.0
    masks = nm_masks(scores, n=2, m=4, previous={"l0": previous})
    assert not masks["l0"][0, 0]
    assert (groups_of(masks["l0"], 4).sum(dim=1) == 2).all()


def test_apply_masks_zeroes_pruned_weights_in_place() -> None:
    layer = nn.Linear(4, 3)
    params = prunable_parameters(layer)
    mask = torch.rand(3, 4, generator=torch.Generator().manual_seed(1)) > 0.5
    before = layer.weight.detach().clone()
    apply_masks(params, {"weight": mask})
    assert (layer.weight[~mask] == 0).all()
    assert torch.equal(layer.weight[mask], before[mask])


def test_measured_sparsity_counts_zeros_from_values() -> None:
    tensors = {"a": torch.tensor([[0.0, 1.0], [0.0, 0.0]]), "b": torch.tensor([2.0, 0.0, 3.0, 4.0])}
    overall, per_layer = measured_sparsity(tensors)
    assert per_layer == {"a": 0.75, "b": 0.25}
    assert overall == 0.5


def test_sensitivity_allocation_hits_the_mean_and_spares_sensitive_layers() -> None:
    sensitivity = {"a": 0.01, "b": 0.2, "c": 0.05, "d": 0.0}
    numel = {"a": 1000, "b": 300, "c": 5000, "d": 64}
    result = sensitivity_allocation(
        sensitivity=sensitivity, numel=numel, sparsity=0.7, min_density=0.02
    )
    mean = sum(result[k] * numel[k] for k in numel) / sum(numel.values())
    assert mean == pytest.approx(0.7, abs=1e-6)
    ordered = sorted(sensitivity, key=sensitivity.__getitem__)
    assert [result[k] for k in ordered] == sorted(result.values(), reverse=True)
    assert result["a"] > result["c"] > result["b"]
    assert all(0.0 <= s <= 0.98 for s in result.values())


def test_sensitivity_allocation_is_uniform_for_equal_sensitivities_and_capped_when_infeasible() -> (
    None
):
    numel = {"a": 10, "b": 30}
    equal = sensitivity_allocation(
        sensitivity={"a": 0.1, "b": 0.1}, numel=numel, sparsity=0.4, min_density=0.1
    )
    assert equal == pytest.approx({"a": 0.4, "b": 0.4}, abs=1e-9)
    capped = sensitivity_allocation(
        sensitivity={"a": 0.1, "b": 0.3}, numel=numel, sparsity=0.95, min_density=0.1
    )
    assert capped == pytest.approx({"a": 0.9, "b": 0.9})


def reference_global_pruned(
    scores: dict[str, Tensor], *, sparsity: float, floors: dict[str, int]
) -> set[tuple[str, int]]:
    names = list(scores)
    candidates = []
    for layer, name in enumerate(names):
        flat = scores[name].reshape(-1).tolist()
        ranked = sorted((value, layer, index) for index, value in enumerate(flat))
        candidates += ranked[: len(flat) - floors[name]]
    total = sum(s.numel() for s in scores.values())
    chosen = sorted(candidates)[: round(sparsity * total)]
    return {(names[layer], index) for _, layer, index in chosen}


@pytest.mark.parametrize("sparsity", [0.1, 0.45, 0.8])
def test_global_masks_with_many_ties_match_a_sorted_reference(
    sparsity: float, selection_path: str
) -> None:
    generator = torch.Generator().manual_seed(3)
    scores = {
        name: torch.randint(0, 4, shape, generator=generator).float()
        for name, shape in {"a": (6, 5), "b": (4, 4), "c": (3, 7)}.items()
    }
    masks = unstructured_masks(scores, sparsity=sparsity, scope="global", min_density=0.3)
    got = {
        (name, int(index))
        for name, mask in masks.items()
        for index in torch.nonzero(~mask.reshape(-1)).reshape(-1)
    }
    floors = {name: math.ceil(0.3 * s.numel()) for name, s in scores.items()}
    assert got == reference_global_pruned(scores, sparsity=sparsity, floors=floors)


@pytest.fixture(params=["joined", "radix"])
def selection_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test through both ways of finding the cut: one topk over joined keys (small
    pools) and radix selection layer by layer (large pools, forced here by a zero limit)."""
    if request.param == "radix":
        monkeypatch.setattr(core.selection, "_JOINED_KEYS_MAX", 0)
    return str(request.param)


@pytest.mark.parametrize("seed", range(24))
def test_global_masks_match_a_sorted_reference_when_floors_bind(
    seed: int, selection_path: str
) -> None:
    # Layers on very different scales: the small ones would be emptied without their floors, so
    # the selection must hand them exactly their cap and find the cut among the others.
    generator = torch.Generator().manual_seed(seed)
    count = int(torch.randint(1, 6, (1,), generator=generator))
    scores = {}
    for layer in range(count):
        shape = tuple(int(d) for d in torch.randint(1, 9, (2,), generator=generator))
        scale = 10.0 ** float(torch.randint(-6, 3, (1,), generator=generator))
        values = torch.randn(shape, generator=generator) * scale
        if layer % 2:  # integer-valued layers give ties inside and across layers
            values = values.round()
        scores[f"l{layer}"] = values
    min_density = float(torch.rand(1, generator=generator)) * 0.6
    sparsity = float(torch.rand(1, generator=generator)) * 0.99
    masks = unstructured_masks(scores, sparsity=sparsity, scope="global", min_density=min_density)
    got = {
        (name, int(index))
        for name, mask in masks.items()
        for index in torch.nonzero(~mask.reshape(-1)).reshape(-1)
    }
    floors = {
        name: layer_floor(numel=s.numel(), min_density=min_density) for name, s in scores.items()
    }
    assert got == reference_global_pruned(scores, sparsity=sparsity, floors=floors)
