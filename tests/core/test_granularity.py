import torch
from torch import nn

from core.granularity import SparsityPlan, make_granularity
from core.masks import prunable_parameters
from core.spec import PruneSpec


def _model() -> nn.Module:
    torch.manual_seed(0)
    # in-dims 6 (not a multiple of 4), 8, 8: the first layer cannot take 2:4
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))


def test_nm_describe_lists_the_layers_the_pattern_cannot_cover_with_the_reason():
    model = _model()
    granularity = make_granularity("2:4")
    described = granularity.describe(model, plan=SparsityPlan())
    assert described == {
        "granularity": "2:4",
        "skipped_layers": [
            {"name": "0.weight", "reason": "input dimension 6 is not a multiple of 4"}
        ],
    }


def test_nm_sparsify_prunes_the_covered_layers_and_count_measures_them():
    model = _model()
    spec = PruneSpec(target_sparsity=0.5, granularity="2:4")
    granularity = make_granularity("2:4")
    plan = SparsityPlan(layer_order=["2.weight", "4.weight"])
    target = granularity.plan(
        model, target=0.5, spec=spec, plan=plan, example_inputs=torch.zeros(1, 6)
    )
    assert 0.0 < target < 0.5  # the 6-input layer stays dense
    scores = {k: v.detach().abs() for k, v in prunable_parameters(model).items()}
    masks = granularity.sparsify(
        model,
        scores=scores,
        target=target,
        spec=spec,
        masks={},
        plan=plan,
        example_inputs=torch.zeros(1, 6),
    )
    assert bool(masks["0.weight"].all())  # kept dense
    assert not bool(masks["2.weight"].all()) and not bool(masks["4.weight"].all())
    overall, per_layer = granularity.count(model, plan=plan)
    assert per_layer["0.weight"] == 0.0 and per_layer["2.weight"] == 0.5
    assert abs(overall - target) < 1e-6


def test_channel_describe_names_the_classifier_head_it_keeps():
    model = _model()
    spec = PruneSpec(target_sparsity=0.5, granularity="channel", round_to=2)
    granularity = make_granularity("channel")
    plan = SparsityPlan(dense_params=sum(p.numel() for p in model.parameters()))
    scores = {k: v.detach().abs() for k, v in prunable_parameters(model).items()}
    granularity.sparsify(
        model,
        scores=scores,
        target=0.5,
        spec=spec,
        masks={},
        plan=plan,
        example_inputs=torch.zeros(1, 6),
    )
    skipped = {
        entry["name"]: entry["reason"]
        for entry in granularity.describe(model, plan=plan)["skipped_layers"]
    }
    assert "classifier" in skipped["4"]
    assert model[0].out_features == 4  # half the hidden channels are gone
    removed, per_layer = granularity.count(model, plan=plan)
    assert removed > 0.0 and per_layer == {}
    assert granularity.changes_shapes and not make_granularity("unstructured").changes_shapes
