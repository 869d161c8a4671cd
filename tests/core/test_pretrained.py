from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from torch import nn

from core.data import builtin_task
from core.finetune import cosine_lr, epoch_generator, evaluate, to_tensors, train_epoch
from core.loop import prune
from core.pretrained import WARMUP_START, reestimate_batchnorm, step_lr, warmup_lr
from core.spec import PRETRAINED_FINETUNE_DEFAULTS, FinetuneSpec, JobSpec, ModelRef

CPU = torch.device("cpu")
WEIGHTS = "file:///models/trained.safetensors"


def _spec(model: dict | ModelRef, finetune: dict | FinetuneSpec | None = None) -> JobSpec:
    raw: dict = {
        "model": model,
        "task": {"dataset": "digits"},
        "prune": {"target_sparsity": 0.5},
    }
    if finetune is not None:
        raw["finetune"] = finetune
    return JobSpec.model_validate(raw)


def test_pretrained_weights_get_the_safe_fine_tuning_defaults() -> None:
    spec = _spec({"arch": "cnn2d", "weights": WEIGHTS})
    assert spec.finetune.lr == 1e-4
    assert spec.finetune.warmup_fraction == 0.1
    assert spec.finetune.bn_recalibration is True
    # dense training keeps the dense defaults
    dense = _spec({"arch": "cnn2d"})
    assert dense.finetune.lr == 1e-3
    assert dense.finetune.warmup_fraction == 0.0
    assert dense.finetune.bn_recalibration is False
    assert FinetuneSpec().lr == 1e-3
    assert set(PRETRAINED_FINETUNE_DEFAULTS) <= set(FinetuneSpec.model_fields)


def test_fields_the_user_sets_are_kept_even_at_the_dense_default_value() -> None:
    spec = _spec({"arch": "cnn2d", "weights": WEIGHTS}, {"lr": 1e-3, "bn_recalibration": False})
    assert spec.finetune.lr == 1e-3
    assert spec.finetune.bn_recalibration is False
    assert spec.finetune.warmup_fraction == 0.1
    # the same through model instances: what the user set is what model_fields_set holds
    typed = _spec(ModelRef(arch="cnn2d", weights=WEIGHTS), FinetuneSpec(lr=3e-3, final_epochs=1))
    assert typed.finetune.lr == 3e-3
    assert typed.finetune.final_epochs == 1
    assert typed.finetune.bn_recalibration is True


def test_resolved_defaults_survive_the_json_round_trip_through_the_service() -> None:
    spec = _spec({"arch": "cnn2d", "weights": WEIGHTS})
    again = JobSpec.model_validate(json.loads(json.dumps(spec.model_dump(mode="json"))))
    assert again == spec


def test_warmup_rises_linearly_over_its_fraction_of_the_first_epoch() -> None:
    assert warmup_lr(base=1e-3, fraction=0.0) is None
    schedule = warmup_lr(base=1e-3, fraction=0.2)
    assert schedule is not None
    first = schedule(0)
    assert first(0.0) == pytest.approx(1e-3 * WARMUP_START)
    assert first(0.1) == pytest.approx(1e-3 * (WARMUP_START + (1 - WARMUP_START) / 2))
    assert first(0.2) == pytest.approx(1e-3)
    assert first(0.9) == pytest.approx(1e-3)
    assert schedule(1)(0.0) == 1e-3


def test_an_annealed_step_warms_up_then_decays_to_zero_over_its_epochs() -> None:
    assert step_lr(base=1e-3, warmup_fraction=0.0, decay_epochs=0) is None
    constant = step_lr(base=1e-3, warmup_fraction=0.2, decay_epochs=0)
    assert constant is not None and constant(1)(0.5) == 1e-3  # the warm-up alone
    schedule = step_lr(base=1e-3, warmup_fraction=0.2, decay_epochs=2)
    assert schedule is not None
    assert schedule(0)(0.0) == pytest.approx(1e-3 * WARMUP_START)
    assert schedule(1)(0.0) == pytest.approx(1e-3 / 2)  # half-way through the cosine
    assert schedule(1)(1.0) == pytest.approx(0.0, abs=1e-12)  # measured once annealed
    plain = step_lr(base=1e-3, warmup_fraction=0.0, decay_epochs=1)
    assert plain is not None and plain(0)(0.0) == pytest.approx(1e-3)


def _bn_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 10),
    )


@pytest.fixture(scope="module")
def trained() -> nn.Module:
    data = builtin_task("digits")
    x, y = to_tensors(data.x_train, data.y_train, device=CPU)
    torch.manual_seed(0)
    model = _bn_cnn()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    # annealed to zero: at a constant 1e-2 the running statistics of the last batches swing
    # the validation accuracy between 0.4 and 0.9 from one epoch (or thread count) to the next
    epochs = 6
    for epoch in range(epochs):
        train_epoch(
            model,
            x=x,
            y=y,
            optimizer=optimizer,
            batch_size=64,
            generator=epoch_generator(seed=0, epoch=epoch),
            lr_at=cosine_lr(base=1e-2, epoch=epoch, epochs=epochs),
        )
    return model.eval()


def _cut(model: nn.Module, fraction: float) -> None:
    """Zero the smallest `fraction` of every conv's weights."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                weight = module.weight
                threshold = weight.abs().flatten().kthvalue(int(weight.numel() * fraction)).values
                weight.mul_((weight.abs() > threshold).to(weight.dtype))


def test_batchnorm_reestimation_restores_accuracy_after_a_cut(trained: nn.Module) -> None:
    data = builtin_task("digits")
    x, _ = to_tensors(data.x_train, data.y_train, device=CPU)
    xv, yv = to_tensors(data.x_val, data.y_val, device=CPU)
    dense = evaluate(trained, x=xv, y=yv).metric
    model = copy.deepcopy(trained)
    _cut(model, 0.7)
    cut = evaluate(model, x=xv, y=yv).metric
    weights = {name: p.clone() for name, p in model.named_parameters()}
    layers = reestimate_batchnorm(model, [x[i : i + 128] for i in range(0, 512, 128)])
    after = evaluate(model, x=xv, y=yv).metric
    assert layers == 2
    assert dense > 0.75
    assert cut < 0.4
    assert after > cut + 0.3
    # statistics only: weights (and so masks) untouched, momenta and eval mode restored
    assert all(torch.equal(p, weights[name]) for name, p in model.named_parameters())
    assert [m.momentum for m in model.modules() if isinstance(m, nn.BatchNorm2d)] == [0.1, 0.1]
    assert not model.training


def test_reestimation_leaves_dropout_off_and_ignores_models_without_batchnorm() -> None:
    plain = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5))
    assert reestimate_batchnorm(plain, [torch.ones(3, 4)]) == 0
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Dropout(1.0)).train()
    inputs = torch.arange(12.0).reshape(3, 4)
    seen: list[torch.Tensor] = []
    model[2].register_forward_hook(lambda _m, _i, out: seen.append(out))
    reestimate_batchnorm(model, [inputs])
    # with dropout on (p=1) the output would be all zeros
    assert seen[0].abs().sum() > 0
    assert model.training
    bn = model[1]
    assert isinstance(bn, nn.BatchNorm1d)
    expected = model[0](inputs).mean(dim=0)
    assert torch.allclose(bn.running_mean, expected.detach(), atol=1e-6)


def _oneshot_cut(trained: nn.Module, *, recalibrate: bool) -> tuple[float, float, nn.Module]:
    """A one-shot 0.7 magnitude cut through the loop: (metric, sparsity, pruned model)."""
    spec = JobSpec.model_validate(
        {
            "model": {"arch": "cnn2d", "weights": WEIGHTS},
            "task": {"dataset": "digits"},
            "prune": {
                "target_sparsity": 0.7,
                "criterion": "magnitude",
                "schedule": {"kind": "oneshot"},
            },
            "finetune": {"epochs_per_step": 0, "final_epochs": 0, "bn_recalibration": recalibrate},
            "export": {"latency_batch_sizes": []},
        }
    )
    outcome = prune(copy.deepcopy(trained), builtin_task("digits"), spec, device=CPU)
    step = outcome.result.steps[1]
    return step.metric, step.sparsity, outcome.model


def test_loop_reestimates_batchnorm_after_each_cut(trained: nn.Module) -> None:
    stale, stale_sparsity, stale_model = _oneshot_cut(trained, recalibrate=False)
    fresh, fresh_sparsity, fresh_model = _oneshot_cut(trained, recalibrate=True)
    dense_mean = next(m for m in trained.modules() if isinstance(m, nn.BatchNorm2d)).running_mean

    def first_mean(model: nn.Module) -> torch.Tensor:
        return next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d)).running_mean

    assert torch.equal(first_mean(stale_model), dense_mean)
    assert not torch.equal(first_mean(fresh_model), dense_mean)
    # the same cut: only the statistics differ, and they are what the cut broke
    assert stale_sparsity == fresh_sparsity and np.isclose(fresh_sparsity, 0.7, atol=0.02)
    assert fresh > stale + 0.2, (stale, fresh)
