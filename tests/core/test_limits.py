"""Per-job limits: a model sized on `meta`, .npz headers read before inflating, phase checks."""

from __future__ import annotations

import io
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from core.data import TaskData, load_task
from core.errors import PruneCancelled, ResourceLimit
from core.limits import MIB, JobLimits, check_npz
from core.loop import prune
from core.models import build_builtin
from core.sizing import count_on_meta, estimate
from core.spec import JobSpec, ModelRef, TaskRef


def _task(rows: int = 240) -> TaskData:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, 12)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    return TaskData("blobs", x, y, x[:60], y[:60], None, None, num_classes=2, input_shape=(12,))


def _mlp(hidden: list[int]) -> object:
    return lambda: build_builtin("mlp", input_shape=(12,), num_classes=2, hidden=hidden)


def test_a_model_of_400m_parameters_is_sized_on_meta_and_refused_without_allocating() -> None:
    started = time.perf_counter()
    with pytest.raises(ResourceLimit, match=r"400,320,002 parameters.*ADAPRUNE_MAX_PARAMS"):
        estimate(_mlp([20000, 20000]), data=_task(), batch_size=128, limits=JobLimits())
    assert time.perf_counter() - started < 5  # 1.6 GB of weights would take longer to fill


def test_a_width_of_2_to_the_40_is_counted_and_2_to_the_70_cannot_be_represented() -> None:
    assert count_on_meta(_mlp([2**40])) == 12 * 2**40 + 2**40 + 2 * 2**40 + 2
    with pytest.raises(ResourceLimit, match="cannot be represented"):
        count_on_meta(_mlp([2**70]))


def test_the_memory_estimate_refuses_a_job_over_its_memory_limit() -> None:
    limits = JobLimits(max_job_memory_bytes=100 * MIB)
    size = estimate(_mlp([64]), data=_task(), batch_size=32, limits=JobLimits())
    assert size.params == 12 * 64 + 64 + 64 * 2 + 2
    assert size.memory_bytes >= 64 * MIB
    with pytest.raises(ResourceLimit, match=r"about .* to train .*ADAPRUNE_MAX_JOB_MEMORY_BYTES"):
        estimate(_mlp([4000, 4000]), data=_task(), batch_size=32, limits=limits)


def test_kwargs_integers_beyond_2_to_the_53_are_refused_by_the_spec() -> None:
    with pytest.raises(ValueError, match=r"kwargs\['hidden'\]\[1\]: integer .* 2\*\*53"):
        ModelRef(arch="mlp", kwargs={"hidden": [8, 2**70]})


def _npy_header(shape: tuple[int, ...], dtype: str = "<f4") -> bytes:
    header = {"descr": dtype, "fortran_order": False, "shape": shape}
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, header)  # magic string included
    return out.getvalue()


def test_an_npy_header_declaring_4_tib_is_refused_before_any_allocation(tmp_path: Path) -> None:
    path = tmp_path / "huge.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x_train.npy", _npy_header((1 << 30, 1024)))
    assert path.stat().st_size < 1024
    with pytest.raises(ResourceLimit, match=r"x_train: declares 4\.0 TiB .* per array"):
        check_npz(path, limits=JobLimits())


def test_a_small_npz_that_would_inflate_past_the_limit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bomb.npz"
    rows = 64 * MIB // (4 * 64)  # 64 MiB of float32 zeros, deflated to a few hundred KiB
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("y_train.npy", _npy_header((4,), "<i8") + bytes(32))
        with archive.open("x_train.npy", "w", force_zip64=True) as member:
            member.write(_npy_header((rows, 64)))
            chunk = bytes(MIB)
            for _ in range(64):
                member.write(chunk)
    assert path.stat().st_size < 2 * MIB
    limits = JobLimits(max_array_bytes=32 * MIB)
    task = TaskRef(data=f"file://{path}")
    with pytest.raises(ResourceLimit, match=r"x_train: declares 64\.0 MiB .* 32\.0 MiB"):
        load_task(task, fetch=lambda _uri: path, limits=limits)
    with pytest.raises(ResourceLimit, match="for all arrays"):
        check_npz(path, limits=JobLimits(max_total_array_bytes=48 * MIB))
    with pytest.raises(ResourceLimit, match="ADAPRUNE_MAX_DATA_BYTES"):
        check_npz(path, limits=JobLimits(max_data_bytes=1024))


def _spec(**finetune: object) -> JobSpec:
    return JobSpec.model_validate(
        {
            "model": {"arch": "mlp"},
            "task": {"dataset": "digits"},
            "prune": {
                "target_sparsity": 0.5,
                "criterion": "auto",
                "scope": "sensitivity",
                "schedule": {"kind": "linear", "steps": 2},
            },
            "finetune": {"final_epochs": 1, "batch_size": 8, **finetune},
            "budget": {"max_runtime_s": 0.5},
        }
    )


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 2))


def test_a_tiny_runtime_budget_bounds_pre_training_and_the_probes() -> None:
    started = time.perf_counter()
    result = prune(_model(), _task(rows=4000), _spec(pretrain_epochs=10_000)).result
    assert time.perf_counter() - started < 10
    assert result.stop_reason == "max_runtime"


def test_a_cancel_during_pre_training_stops_it() -> None:
    deadline = time.perf_counter() + 0.5
    started = time.perf_counter()
    spec = _spec(pretrain_epochs=10_000).model_copy(
        update={"budget": _spec().budget.model_copy(update={"max_runtime_s": 3600.0})}
    )
    with pytest.raises(PruneCancelled):
        prune(_model(), _task(), spec, should_stop=lambda: time.perf_counter() > deadline)
    assert time.perf_counter() - started < 5


def test_a_cancel_during_the_probes_stops_them() -> None:
    phases: list[str] = []
    calls: list[int] = []
    spec = _spec(pretrain_epochs=0).model_copy(
        update={"budget": _spec().budget.model_copy(update={"max_runtime_s": 3600.0})}
    )

    def should_stop() -> bool:
        # no pre-training: three checks in the baseline, the fourth inside the sensitivity probe
        # (without it, the fourth would come after the criterion probe set phase "scoring")
        calls.append(1)
        return len(calls) >= 4

    with pytest.raises(PruneCancelled):
        prune(_model(), _task(), spec, on_phase=phases.append, should_stop=should_stop)
    assert phases == ["baseline"]
