"""f1_macro and perplexity: values against independent computations, directions, tolerance."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import f1_score

from core.finetune import evaluate
from core.losses import IGNORE
from core.metrics import make_metric, worse_by
from core.registries import METRICS


def test_f1_macro_over_batches_matches_scikit_learn():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(50, 4, generator=generator)
    targets = torch.randint(0, 3, (50,), generator=generator)  # class 3 never true
    model = torch.nn.Identity()
    found = evaluate(model, x=logits, y=targets, batch_size=7, metric=make_metric("f1_macro"))
    predicted = logits.argmax(dim=-1).numpy()
    expected = f1_score(targets.numpy(), predicted, average="macro")
    assert found.metric == pytest.approx(expected, abs=1e-12)
    assert METRICS.info("f1_macro")["higher_is_better"] is True


def test_perplexity_is_exp_of_mean_token_cross_entropy_over_real_tokens():
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(6, 5, 11, generator=generator)
    targets = torch.randint(0, 11, (6, 5), generator=generator)
    targets[0, 2:] = IGNORE  # padding and last positions carry no target
    targets[:, -1] = IGNORE
    model = torch.nn.Identity()
    found = evaluate(model, x=logits, y=targets, batch_size=4, metric=make_metric("perplexity"))
    keep = targets != IGNORE
    token_losses = F.cross_entropy(logits[keep], targets[keep], reduction="none")
    assert found.metric == pytest.approx(math.exp(float(token_losses.mean())), rel=1e-6)
    assert found.loss == pytest.approx(float(token_losses.mean()), rel=1e-6)
    # a model that ignores the padding targets: changing logits there changes nothing
    logits[0, 3:] = 100.0
    again = evaluate(model, x=logits, y=targets, batch_size=4, metric=make_metric("perplexity"))
    assert again.metric == pytest.approx(found.metric, rel=1e-12)


def test_worse_by_is_relative_for_perplexity_and_absolute_for_accuracy():
    perplexity = make_metric("perplexity")
    assert METRICS.info("perplexity") == {"higher_is_better": False, "relative": True}
    assert worse_by(perplexity, reference=10.0, value=10.5) == pytest.approx(0.05)
    assert worse_by(perplexity, reference=10.0, value=9.0) == pytest.approx(-0.1)
    accuracy = make_metric("accuracy")
    assert worse_by(accuracy, reference=0.9, value=0.85) == pytest.approx(0.05)
    assert np.isinf(worse_by(perplexity, reference=0.0, value=1.0))
