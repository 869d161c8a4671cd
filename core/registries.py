"""The built-in entries of every registry: one line per criterion, granularity, schedule, metric,
architecture, dataset and text task kind. Torch-free: implementations are named, not imported.

The spec's allowed values, the API's schema, the docs and the engine all read these registries;
adding a kind is one implementation plus one line here (or one `register` call elsewhere).
"""

from __future__ import annotations

import re
from typing import Any

from core.registry import Registry

_NM = re.compile(r"^(\d+):(\d+)$")
NM_MAX_M = 32


def parse_nm(name: str) -> tuple[int, int] | None:
    """Return (n, m) for an N:M pattern name such as "2:4", else None."""
    match = _NM.match(name)
    return (int(match[1]), int(match[2])) if match else None


def _is_nm(name: str) -> bool:
    nm = parse_nm(name)
    if nm is None:
        return False
    n, m = nm
    if not (0 < n < m <= NM_MAX_M):
        raise ValueError(f"N:M pattern {name!r} needs 0 < N < M <= {NM_MAX_M}")
    return True


# Criteria: classes mapping a ScoringContext to per-weight scores (core/importance.py).
# `auto_candidate`: probed by `criterion: auto`.
CRITERIA: Registry[Any] = Registry("criterion")
CRITERIA.register("magnitude", "core.importance:MagnitudeImportance", auto_candidate=True)
CRITERIA.register("taylor", "core.importance:TaylorImportance", auto_candidate=True)
CRITERIA.register("activation", "core.importance:ActivationImportance", auto_candidate=True)
CRITERIA.register("adaptive", "core.importance:AdaptiveImportance", auto_candidate=True)
CRITERIA.register("seed_ratio", "core.seed_ratio:SeedRatioImportance", auto_candidate=False)
# `criterion: auto` is not an entry: it picks one of the auto candidates per task.
AUTO = "auto"

# Granularities: classes implementing plan / sparsify / count / describe (core/granularity/).
GRANULARITIES: Registry[Any] = Registry("granularity")
GRANULARITIES.register("unstructured", "core.granularity.unstructured:UnstructuredGranularity")
GRANULARITIES.register("N:M", "core.granularity.nm:NMGranularity", parse=_is_nm, example="2:4")
GRANULARITIES.register("channel", "core.granularity.channel:ChannelGranularity")
# `hf_only`: for Hugging Face models (model.hf); `hidden`: takes prune.hidden (the hidden size)
GRANULARITIES.register(
    "width", "core.granularity.shrink:WidthGranularity", hf_only=True, hidden=True
)
GRANULARITIES.register("depth", "core.granularity.shrink:DepthGranularity", hf_only=True)

# Schedules: fixed ones are functions step -> sparsity (core/schedule.py); the adaptive one is
# the controller. `max_steps`: the most pruning steps, given the spec's nominal `steps`.
SCHEDULES: Registry[Any] = Registry("schedule")
SCHEDULES.register(
    "oneshot", "core.schedule:oneshot_sparsity", adaptive=False, max_steps=lambda steps: 1
)
SCHEDULES.register("linear", "core.schedule:linear_sparsity", adaptive=False, max_steps=lambda s: s)
SCHEDULES.register("cubic", "core.schedule:cubic_sparsity", adaptive=False, max_steps=lambda s: s)
SCHEDULES.register(
    "adaptive", "core.controller:AdaptiveController", adaptive=True, max_steps=lambda s: 3 * s
)

# One-shot, layer-wise methods for transformer models (core/oneshot/): `prune.method`.
# `groups`: the comparison groups (`prune.comparison_group`) the method accepts.
ONESHOT_METHODS: Registry[Any] = Registry("one-shot method")
ONESHOT_METHODS.register(
    "magnitude", "core.oneshot.methods:MagnitudeOneShot", groups=("layer", "row")
)
ONESHOT_METHODS.register("wanda", "core.oneshot.methods:WandaOneShot", groups=("row", "layer"))
ONESHOT_METHODS.register("sparsegpt", "core.oneshot.sparsegpt:SparseGPTOneShot", groups=())

# How a one-shot run spreads the target over the blocks (core/oneshot/allocation.py).
# `nm`: whether it works with an N:M pattern (whose sparsity is fixed per layer).
ALLOCATIONS: Registry[Any] = Registry("allocation")
ALLOCATIONS.register("uniform", "core.oneshot.allocation:UniformAllocation", nm=True)
ALLOCATIONS.register("owl", "core.oneshot.allocation:OwlAllocation", nm=False)

# Task metrics: classes computing a score from model outputs (core/metrics.py), with the
# direction in which the score is better; `max_metric_drop` is "worse by" in that direction.
METRICS: Registry[Any] = Registry("metric")
METRICS.register("accuracy", "core.metrics:Accuracy", higher_is_better=True)
METRICS.register("f1_macro", "core.metrics:F1Macro", higher_is_better=True)
# `relative`: max_metric_drop is the allowed relative increase (0.02: at most 2 % higher)
METRICS.register("perplexity", "core.metrics:Perplexity", higher_is_better=False, relative=True)

# Text task kinds of Hugging Face models (core/hf/tasks.py): the AutoModelFor... class loaded,
# how the task is trained, and the metrics that apply (the first is the default).
TASK_KINDS: Registry[Any] = Registry("task kind")
TASK_KINDS.register(
    "text-classification",
    "core.hf.tasks:TextClassification",
    metrics=("accuracy", "f1_macro"),
    default_metric="accuracy",
)
TASK_KINDS.register(
    "causal-lm", "core.hf.tasks:CausalLM", metrics=("perplexity",), default_metric="perplexity"
)

# Built-in architectures: builders (core/architectures.py) with their default settings.
ARCHITECTURES: Registry[Any] = Registry("architecture")
ARCHITECTURES.register("mlp", "core.architectures:build_mlp", defaults={"hidden": [64, 32]})
ARCHITECTURES.register("cnn1d", "core.architectures:build_cnn1d", defaults={"channels": 25})
ARCHITECTURES.register(
    "cnn2d", "core.architectures:build_cnn2d", defaults={"widths": [32, 64], "blocks": 1}
)
ARCHITECTURES.register(
    "lstm", "core.architectures:build_lstm", defaults={"hidden": 64, "layers": 1}
)
ARCHITECTURES.register(
    "transformer",
    "core.architectures:build_transformer",
    defaults={"d_model": 32, "layers": 2, "heads": 4, "ffn": 64},
)

# Built-in datasets: functions returning a TaskData (core/data.py), offline and deterministic.
DATASETS: Registry[Any] = Registry("dataset")
DATASETS.register("mnist1d", "core.data:mnist1d_task")
DATASETS.register("digits", "core.data:digits_task")
DATASETS.register("breast_cancer", "core.data:breast_cancer_task")
