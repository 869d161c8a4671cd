import json

import pytest

from core.contract.version import RUN_STATE_VERSION
from core.controller import AdaptiveController
from core.errors import SpecInvalid
from core.granularity import SparsityPlan
from core.report import StepReport
from core.run_state import Counters, RunState, decode_run_state, encode_run_state


def _state() -> RunState:
    return RunState(
        criterion="taylor",
        target=0.75,
        counters=Counters(step=3, epoch=7, finetune_epochs=4, elapsed=1.5),
        dense_metric=0.9,
        probe={"loss.taylor": 0.3},
        controller=AdaptiveController.initial_state(target=0.75, steps=5),
        next_target=0.45,
        best_within=0.3,
        stop_reason=None,
        finished=False,
        reports=[
            StepReport(
                step=1,
                target_sparsity=0.15,
                sparsity=0.149,
                metric=0.88,
                loss=0.4,
                decision="keep",
                seconds=0.1,
                epochs=1,
                phase_seconds={"scoring": 0.01},
            )
        ],
        plan=SparsityPlan(layer_order=["a.weight"], sensitivity={"a.weight": 0.1}, dense_params=9),
        shapes={"a.weight": [4, 8]},
    )


def test_run_state_round_trips_through_json():
    state = _state()
    encoded = json.loads(json.dumps(encode_run_state(state)))
    assert encoded["version"] == RUN_STATE_VERSION
    assert decode_run_state(encoded) == state


def test_run_state_without_version_reads_as_version_one():
    encoded = encode_run_state(_state())
    del encoded["version"]
    assert decode_run_state(encoded) == _state()


def test_newer_run_state_is_refused_naming_both_versions():
    encoded = encode_run_state(_state()) | {"version": RUN_STATE_VERSION + 1}
    with pytest.raises(SpecInvalid, match=f"version {RUN_STATE_VERSION + 1}"):
        decode_run_state(encoded)
