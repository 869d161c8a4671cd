from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.importance import (
    AUTO_CANDIDATES,
    IMPORTANCES,
    ActivationImportance,
    AdaptiveImportance,
    MagnitudeImportance,
    ScoringContext,
    TaylorImportance,
    make_importance,
)
from core.masks import prunable_parameters
from core.seed_ratio import (
    SeedRatioImportance,
    fraction_below_threshold,
    is_pruned_by_threshold,
    seed_ratio,
)
from core.spec import PruneSpec

SPEC = PruneSpec(target_sparsity=0.5)


def tiny_mlp() -> tuple[nn.Sequential, list[tuple[Tensor, Tensor]]]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    batches = [(torch.randn(5, 6), torch.randint(0, 3, (5,))) for _ in range(2)]
    return model, batches


def tiny_conv1d() -> tuple[nn.Sequential, list[tuple[Tensor, Tensor]]]:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv1d(2, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv1d(4, 4, 3, padding=1, groups=2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 7, 3),
    )
    batches = [(torch.randn(4, 2, 7), torch.randint(0, 3, (4,))) for _ in range(2)]
    return model, batches


class TinyLSTM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(3, 4, num_layers=2, batch_first=True, dropout=0.5)
        self.head = nn.Linear(4, 2)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.rnn(x)[0]
        logits: Tensor = self.head(out[:, -1])
        return logits


def context(model: nn.Module, batches: list[tuple[Tensor, Tensor]]) -> ScoringContext:
    return ScoringContext(
        model=model, params=prunable_parameters(model), batches=batches, loss_fn=F.cross_entropy
    )


MODELS: dict[str, Callable[[], tuple[nn.Sequential, list[tuple[Tensor, Tensor]]]]] = {
    "mlp": tiny_mlp,
    "conv1d": tiny_conv1d,
}


@pytest.mark.parametrize("model_name", list(MODELS))
@pytest.mark.parametrize("criterion", list(IMPORTANCES))
def test_every_criterion_gives_finite_non_negative_repeatable_scores_and_leaves_model_alone(
    criterion: str, model_name: str
) -> None:
    model, batches = MODELS[model_name]()
    model.train()
    model[1].eval()
    ctx = context(model, batches)
    first_name = next(iter(ctx.params))
    marker = torch.full_like(ctx.params[first_name], 7.0)
    ctx.params[first_name].grad = marker.clone()
    weights_before = {name: p.detach().clone() for name, p in ctx.params.items()}
    importance = make_importance(criterion, SPEC)

    scores = importance(ctx)
    again = importance(ctx)

    assert importance.name == criterion
    assert list(scores) == list(ctx.params)
    for name, param in ctx.params.items():
        assert scores[name].shape == param.shape
        assert scores[name].device == param.device
        assert scores[name].is_floating_point()
        assert torch.isfinite(scores[name]).all()
        assert (scores[name] >= 0).all()
        assert torch.equal(scores[name], again[name])
        assert torch.equal(param, weights_before[name])
    grad = ctx.params[first_name].grad
    assert grad is not None and torch.equal(grad, marker)
    assert all(p.grad is None for name, p in model.named_parameters() if name != first_name)
    assert model.training and model[0].training and not model[1].training


def test_magnitude_scores_are_absolute_weights() -> None:
    model, batches = tiny_mlp()
    ctx = context(model, batches)
    scores = MagnitudeImportance()(ctx)
    for name, param in ctx.params.items():
        assert torch.equal(scores[name], param.detach().abs())


def test_taylor_sums_absolute_weight_times_gradient_per_batch() -> None:
    model, batches = tiny_mlp()
    ctx = context(model, batches)
    expected = {name: torch.zeros_like(p) for name, p in ctx.params.items()}
    for x, y in batches:
        grads = torch.autograd.grad(F.cross_entropy(model(x), y), list(ctx.params.values()))
        for (name, p), grad in zip(ctx.params.items(), grads, strict=True):
            expected[name] += (p.detach() * grad).abs()

    scores = TaylorImportance()(ctx)

    for name in ctx.params:
        torch.testing.assert_close(scores[name], expected[name])


def test_taylor_is_zero_for_a_weight_whose_gradient_is_zero() -> None:
    model, batches = tiny_mlp()
    silent = [(x.index_fill(1, torch.tensor([2]), 0.0), y) for x, y in batches]
    scores = TaylorImportance()(context(model, silent))
    assert (scores["0.weight"][:, 2] == 0).all()
    assert (scores["0.weight"][:, [0, 1, 3, 4, 5]] > 0).any()


def test_activation_column_scores_zero_for_a_feature_that_is_always_zero() -> None:
    model, batches = tiny_mlp()
    silent = [(x.index_fill(1, torch.tensor([4]), 0.0), y) for x, y in batches]
    scores = ActivationImportance()(context(model, silent))
    assert (scores["0.weight"][:, 4] == 0).all()
    assert (scores["0.weight"][:, :4] > 0).all()


def test_activation_scales_with_input_feature_norm() -> None:
    model, batches = tiny_mlp()
    scaled = [(x * torch.tensor([1.0, 3.0, 1.0, 1.0, 1.0, 1.0]), y) for x, y in batches]
    ctx = context(model, batches)
    base = ActivationImportance()(ctx)["0.weight"]
    grown = ActivationImportance()(context(model, scaled))["0.weight"]
    torch.testing.assert_close(grown[:, 1], 3.0 * base[:, 1])
    torch.testing.assert_close(grown[:, [0, 2, 3, 4, 5]], base[:, [0, 2, 3, 4, 5]])
    inputs = torch.cat([x for x, _ in batches])
    expected = ctx.params["0.weight"].detach().abs() * inputs.norm(dim=0)
    torch.testing.assert_close(base, expected)


def test_activation_on_conv_uses_channel_norm_over_batch_and_positions() -> None:
    model, batches = tiny_conv1d()
    ctx = context(model, batches)
    scores = ActivationImportance()(ctx)
    inputs = torch.cat([x for x, _ in batches])
    channel_norm = inputs.pow(2).sum(dim=(0, 2)).sqrt()
    expected = ctx.params["0.weight"].detach().abs() * channel_norm.view(1, -1, 1)
    torch.testing.assert_close(scores["0.weight"], expected)


def test_activation_on_grouped_conv_uses_each_groups_own_channels() -> None:
    model, batches = tiny_conv1d()
    inputs = torch.cat([x for x, _ in batches])
    hidden = torch.relu(model[0](inputs)).detach()
    norms = hidden.pow(2).sum(dim=(0, 2)).sqrt()
    ctx = context(model, batches)
    scores = ActivationImportance()(ctx)["2.weight"]
    weight = ctx.params["2.weight"].detach().abs()
    torch.testing.assert_close(scores[:2], weight[:2] * norms[:2].view(1, 2, 1))
    torch.testing.assert_close(scores[2:], weight[2:] * norms[2:].view(1, 2, 1))


def test_activation_on_lstm_uses_inputs_for_first_layer_and_hidden_outputs_otherwise() -> None:
    torch.manual_seed(0)
    model = TinyLSTM()
    batches = [(torch.randn(2, 5, 3), torch.randint(0, 2, (2,)))]
    ctx = context(model, batches)
    assert {"rnn.weight_ih_l0", "rnn.weight_hh_l0", "rnn.weight_ih_l1"} <= set(ctx.params)
    model.eval()
    with torch.no_grad():
        hidden, _ = model.rnn(batches[0][0])
    model.train()
    scores = ActivationImportance()(ctx)
    input_norm = batches[0][0].reshape(-1, 3).norm(dim=0)
    hidden_norm = hidden.reshape(-1, 4).norm(dim=0)
    weight_ih = ctx.params["rnn.weight_ih_l0"].detach().abs()
    weight_hh = ctx.params["rnn.weight_hh_l1"].detach().abs()
    torch.testing.assert_close(scores["rnn.weight_ih_l0"], weight_ih * input_norm)
    torch.testing.assert_close(scores["rnn.weight_hh_l1"], weight_hh * hidden_norm)
    assert model.training and model.rnn.dropout == 0.5


def test_hooks_are_removed_when_the_loss_fails() -> None:
    model, batches = tiny_mlp()

    def broken_loss(logits: Tensor, targets: Tensor) -> Tensor:
        raise RuntimeError("loss failed")

    ctx = ScoringContext(
        model=model, params=prunable_parameters(model), batches=batches, loss_fn=broken_loss
    )
    with pytest.raises(RuntimeError, match="loss failed"):
        AdaptiveImportance()(ctx)
    assert all(not module._forward_hooks for module in model.modules())
    assert model.training


@pytest.mark.parametrize("mix", [0.0, 1.0])
def test_adaptive_at_the_ends_of_mix_is_the_mean_normalised_single_criterion(mix: float) -> None:
    model, batches = tiny_mlp()
    ctx = context(model, batches)
    single = (TaylorImportance() if mix == 1.0 else ActivationImportance())(ctx)
    scores = AdaptiveImportance(mix=mix)(ctx)
    for name in ctx.params:
        torch.testing.assert_close(scores[name], single[name] / single[name].mean())


def test_adaptive_blend_has_per_layer_mean_of_one() -> None:
    model, batches = tiny_conv1d()
    scores = AdaptiveImportance(mix=0.3)(context(model, batches))
    for score in scores.values():
        assert score.mean().item() == pytest.approx(1.0, rel=1e-5)


def test_seed_ratio_reproduces_the_documents_worked_example() -> None:
    ratio = seed_ratio(5.0, 10.0, 1.0)
    assert ratio == pytest.approx(1.0 / 3.0)
    assert is_pruned_by_threshold(ratio, 0.5)
    assert not is_pruned_by_threshold(seed_ratio(10.0, 5.0, 1.0), 0.5)


def test_seed_ratio_is_zero_when_both_contributions_are_zero() -> None:
    assert seed_ratio(0.0, 0.0, 1.0) == 0.0
    ratio = seed_ratio(torch.tensor([0.0, 5.0, 2.0]), torch.tensor([0.0, 10.0, 0.0]), 1.0)
    torch.testing.assert_close(ratio, torch.tensor([0.0, 1.0 / 3.0, 1.0]))
    assert is_pruned_by_threshold(ratio, 0.5).tolist() == [True, True, False]


def test_seed_ratio_ratios_lie_in_unit_interval_and_report_fraction_below_gamma() -> None:
    model, batches = tiny_mlp()
    ratios = SeedRatioImportance(alpha=1.0, gamma=0.5).ratios(context(model, batches))
    flat = torch.cat([s.reshape(-1) for s in ratios.values()])
    assert ((flat >= 0) & (flat <= 1)).all()
    expected = (flat < 0.5).float().mean().item()
    assert fraction_below_threshold(ratios, 0.5) == pytest.approx(expected)
    assert 0.0 < expected < 1.0


def test_seed_ratio_ranks_every_weight_the_rule_prunes_below_every_weight_it_keeps() -> None:
    model, batches = tiny_mlp()
    criterion = SeedRatioImportance(alpha=1.0, gamma=0.5)
    ctx = context(model, batches)
    ratios, scores = criterion.ratios(ctx), criterion(ctx)
    for name in scores:
        pruned_by_rule = ratios[name] < 0.5
        assert (scores[name][pruned_by_rule] < 1).all()
        assert (scores[name][~pruned_by_rule] >= 1).all()


def test_seed_ratio_orders_each_group_by_combined_contribution() -> None:
    criterion = SeedRatioImportance(alpha=1.0, gamma=0.5)
    g = torch.tensor([5.0, 0.5, 10.0, 1.0])  # I: 1/3, 1/3, 2/3, 2/3
    a = torch.tensor([10.0, 1.0, 5.0, 0.5])
    score = criterion.gated(g, a)
    assert score[1] < score[0] < 1 <= score[3] < score[2]


def test_seed_ratio_rejects_non_positive_alpha() -> None:
    with pytest.raises(ValueError, match="alpha"):
        seed_ratio(1.0, 1.0, 0.0)
    with pytest.raises(ValueError, match="gamma"):
        SeedRatioImportance(alpha=1.0, gamma=1.5)


def test_make_importance_names_an_unknown_criterion() -> None:
    with pytest.raises(ValueError, match="'sparsegpt'"):
        make_importance("sparsegpt", SPEC)
    with pytest.raises(ValueError, match="'auto'"):
        make_importance("auto", SPEC)
    assert set(AUTO_CANDIDATES) <= set(IMPORTANCES)


def test_make_importance_passes_spec_settings() -> None:
    spec = PruneSpec(target_sparsity=0.5, adaptive_mix=0.2, seed_alpha=3.0, seed_gamma=0.4)
    adaptive = make_importance("adaptive", spec)
    seed = make_importance("seed_ratio", spec)
    assert isinstance(adaptive, AdaptiveImportance) and adaptive.mix == 0.2
    assert isinstance(seed, SeedRatioImportance) and (seed.alpha, seed.gamma) == (3.0, 0.4)


def test_data_criteria_refuse_an_empty_calibration_set() -> None:
    model, _ = tiny_mlp()
    with pytest.raises(ValueError, match="calibration batch"):
        TaylorImportance()(context(model, []))
