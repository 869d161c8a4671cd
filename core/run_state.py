"""The serialisable state of one pruning run, and the one place it is encoded for checkpoints.

A checkpoint's `state.json` holds `encode_run_state(state)`; resuming reads it back with
`decode_run_state`. Tensors (weights, masks, optimizer moments) travel beside it in safetensors.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from core.contract.version import RUN_STATE_VERSION
from core.controller import ControllerState
from core.errors import SpecInvalid
from core.granularity import SparsityPlan
from core.report import StepReport, StopReason


@dataclass
class Counters:
    step: int = 0
    epoch: int = 0  # every epoch run so far, pre-training included: seeds the shuffles
    finetune_epochs: int = 0
    elapsed: float = 0.0


@dataclass
class RunState:
    """Everything about a run that is not a tensor and must survive a resume.

    `target` is the sparsity the run aims at (the spec's, lowered to what the granularity can
    reach); `next_target` the adaptive controller's next proposal; `best_within` the highest
    measured sparsity of an accepted step within tolerance; `shapes` the current parameter shapes
    (channel pruning changes them, and a fresh model must be resized before loading weights).
    While the run builds on a provisional step (past tolerance within the validation noise) it
    holds back its last model within tolerance: every checkpoint carries that model's tensors,
    and `fallback_shapes` and `fallback_plan` are its shapes and plan.
    """

    criterion: str
    target: float
    counters: Counters = field(default_factory=Counters)
    dense_metric: float = 0.0
    probe: dict[str, float] = field(default_factory=dict)
    controller: ControllerState | None = None
    next_target: float = 0.0
    best_within: float = 0.0
    stop_reason: StopReason | None = None
    finished: bool = False
    reports: list[StepReport] = field(default_factory=list)
    plan: SparsityPlan = field(default_factory=SparsityPlan)
    shapes: dict[str, list[int]] = field(default_factory=dict)
    fallback_shapes: dict[str, list[int]] = field(default_factory=dict)
    fallback_plan: SparsityPlan = field(default_factory=SparsityPlan)


def encode_run_state(state: RunState) -> dict[str, Any]:
    """The JSON form of `state`, tagged with RUN_STATE_VERSION."""
    return {
        "version": RUN_STATE_VERSION,
        "criterion": state.criterion,
        "target": state.target,
        "counters": asdict(state.counters),
        "dense_metric": state.dense_metric,
        "probe": dict(state.probe),
        "controller": None if state.controller is None else state.controller.to_dict(),
        "next_target": state.next_target,
        "best_within": state.best_within,
        "stop_reason": state.stop_reason,
        "finished": state.finished,
        "reports": [report.to_dict() for report in state.reports],
        "plan": asdict(state.plan),
        "shapes": {name: list(shape) for name, shape in state.shapes.items()},
        "fallback_shapes": {name: list(shape) for name, shape in state.fallback_shapes.items()},
        "fallback_plan": asdict(state.fallback_plan),
    }


def decode_run_state(data: dict[str, Any]) -> RunState:
    """Rebuild a RunState from `encode_run_state`'s output.

    Raises:
        SpecInvalid: the checkpoint was written by a newer engine (a higher version).
    """
    version = int(data.get("version", 1))
    if version > RUN_STATE_VERSION:
        raise SpecInvalid(
            f"checkpoint run state version {version} is newer than this engine's "
            f"{RUN_STATE_VERSION}"
        )
    controller = data["controller"]
    return RunState(
        criterion=data["criterion"],
        target=data["target"],
        counters=Counters(**data["counters"]),
        dense_metric=data["dense_metric"],
        probe=dict(data["probe"]),
        controller=None if controller is None else ControllerState.from_dict(controller),
        next_target=data["next_target"],
        best_within=data["best_within"],
        stop_reason=data["stop_reason"],
        finished=data["finished"],
        reports=[StepReport(**report) for report in data["reports"]],
        plan=SparsityPlan(**data["plan"]),
        shapes={name: list(shape) for name, shape in data["shapes"].items()},
        # absent from version 1 checkpoints, which held nothing back
        fallback_shapes={
            name: list(shape) for name, shape in data.get("fallback_shapes", {}).items()
        },
        fallback_plan=SparsityPlan(**data.get("fallback_plan", {})),
    )
