"""One job end to end, with no service around it: spec -> data + model -> prune -> artifact.

`adaprune run` and the Celery worker both call `run_job`; they differ only in the callbacks
they pass and where the checkpoints and the artifact go.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from core import artifact
from core.contract.entrypoints import ANY_MODULE, EntrypointAllowList
from core.data import TaskData, load_task
from core.errors import DataInvalid, ModelLoadFailed, PruneCancelled
from core.finetune import evaluate, to_tensors
from core.granularity import make_granularity
from core.hf.adapter import HFAdapter
from core.limits import JobLimits, check_file_size
from core.loop import CheckpointCallback, PhaseCallback, PruneOutcome, prune
from core.metrics import make_metric
from core.models import architecture, build_model, load_weights
from core.oneshot.job import run_oneshot
from core.report import StepCallback
from core.sizing import estimate
from core.spec import JobSpec
from core.threads import configure_threads
from core.uri import fetch, fetch_dir


@dataclass(frozen=True)
class JobOutput:
    outcome: PruneOutcome
    manifest: dict[str, Any]
    artifact_dir: Path


def resolve_device(name: str) -> torch.device:
    """ "auto" -> cuda when available, else cpu; "cuda", "cuda:N" and "cpu" as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but CUDA is not available")
    return device


def prepare(
    spec: JobSpec,
    *,
    cache_dir: Path,
    allowed_entrypoints: EntrypointAllowList,
    sources: Mapping[str, Path] | None = None,
    limits: JobLimits | None = None,
) -> tuple[TaskData, nn.Module]:
    """Load the task's data and build the model (with its weights, when the spec names them).

    Args:
        sources: local copies of URIs the caller fetched already (files, and the `model.hf`
            directory); other URIs are fetched here.
        limits: with them, the data and weights files are size-checked before they are read,
            and the model is sized on the `meta` device before it is built (`core.sizing`).

    A Hugging Face model (`model.hf`) comes with its text task, tokenised by its tokenizer.
    """
    known = dict(sources or {})
    max_bytes = None if limits is None else limits.max_data_bytes

    def fetcher(uri: str) -> Path:
        if uri in known:
            return known[uri]
        return fetch(uri, cache_dir=cache_dir, max_bytes=max_bytes)

    if spec.model.hf is not None:
        from core.hf.load import prepare_hf

        torch.manual_seed(spec.seed)

        def directory_fetcher(uri: str) -> Path:
            if uri in known:
                return known[uri]
            # a task's `datasets` directory holds one sub-directory per split; a model's files
            # lie directly in its directory
            return fetch_dir(uri, cache_dir=cache_dir, depth=1 if uri == spec.task.data else 0)

        data, adapter, _ = prepare_hf(spec, fetch_dir=directory_fetcher, fetch=fetcher)
        return data, adapter
    data = load_task(spec.task, fetch=fetcher, limits=limits)
    build = functools.partial(
        build_model,
        spec.model,
        input_shape=data.input_shape,
        num_classes=data.num_classes,
        allowed_entrypoints=allowed_entrypoints,
        input_dtype=data.input_dtype,
    )
    if limits is not None:
        # sized on `meta` without the output check: a user's forward may not run there
        sizing = functools.partial(build, check_output=False)
        estimate(sizing, data=data, batch_size=spec.finetune.batch_size, limits=limits)
    torch.manual_seed(spec.seed)
    model = build()
    if spec.model.weights is not None:
        try:
            path = fetcher(spec.model.weights)
        except FileNotFoundError as error:
            raise ModelLoadFailed(str(error)) from error
        if limits is not None:
            check_file_size(path, limits=limits, what="weights")
        load_weights(model, path)
    return data, model


def metric_of(name: str) -> Callable[[nn.Module, np.ndarray, np.ndarray], float]:
    """The artifact's evaluator: metric `name` of a model on (x, y), on the model's device."""
    metric = make_metric(name)

    def measure(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
        device = next(model.parameters()).device
        xt, yt = to_tensors(x, y, device=device)
        return evaluate(model, x=xt, y=yt, metric=metric).metric

    return measure


accuracy_of = metric_of("accuracy")


def _recipe(spec: JobSpec, model: nn.Module, data: TaskData) -> dict[str, Any]:
    """The manifest's architecture entry: how the artifact's model is rebuilt."""
    if isinstance(model, HFAdapter):
        from core.hf.export import recipe

        return recipe(model, input_shape=data.input_shape, num_classes=data.num_classes)
    return architecture(
        spec.model,
        input_shape=data.input_shape,
        num_classes=data.num_classes,
        input_dtype=data.input_dtype,
    )


def _shrink_job(spec: JobSpec, *, model: nn.Module, **kwargs: Any) -> JobOutput:
    """Width and depth jobs rebuild a Hugging Face model in one cut (`core.hf.shrink.job`)."""
    from core.hf.shrink.job import run_shrink

    assert isinstance(model, HFAdapter)
    return run_shrink(spec, model=model, **kwargs)


def run_job(
    spec: JobSpec,
    *,
    out_dir: Path,
    work_dir: Path,
    device: str = "auto",
    allowed_entrypoints: EntrypointAllowList = ANY_MODULE,
    resume: bool = False,
    on_step: StepCallback | None = None,
    on_phase: PhaseCallback | None = None,
    on_checkpoint: CheckpointCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_data: Callable[[TaskData], None] | None = None,
    sources: Mapping[str, Path] | None = None,
    limits: JobLimits | None = None,
    threads: int | None = None,
) -> JobOutput:
    """Run `spec` and export its verified artifact to `out_dir`.

    Args:
        out_dir: where the artifact lands; it appears whole or not at all.
        work_dir: downloads (`cache/`) and per-step checkpoints (`checkpoints/`).
        resume: continue from the newest checkpoint in `work_dir/checkpoints`.
        on_data: receives the task's data once loaded (class count, sizes), before pruning.
        sources: local copies of the spec's URIs, already fetched and checked by the caller.
        limits: the job's resource limits (`core.limits`), checked before anything is allocated.
        threads: torch's CPU threads for this job; None or 0 chooses by model size
            (`core.threads`).
    """
    torch_device = resolve_device(device)
    data, model = prepare(
        spec,
        cache_dir=work_dir / "cache",
        allowed_entrypoints=allowed_entrypoints,
        sources=sources,
        limits=limits,
    )
    if data.x_train.shape[0] < 1 or data.x_val.shape[0] < 1:
        raise DataInvalid("the task needs at least one training and one validation example")
    configure_threads(model, threads)
    if on_data is not None:
        on_data(data)
    if make_granularity(spec.prune.granularity).rebuilds_model:
        return _shrink_job(
            spec,
            model=model,
            data=data,
            out_dir=out_dir,
            work_dir=work_dir,
            device=torch_device,
            resume=resume,
            on_step=on_step,
            on_phase=on_phase,
            on_checkpoint=on_checkpoint,
            should_stop=should_stop,
        )
    engine = run_oneshot if spec.prune.method is not None else prune
    outcome = engine(
        model,
        data,
        spec,
        device=torch_device,
        checkpoint_dir=work_dir / "checkpoints",
        resume=resume,
        on_step=on_step,
        on_phase=on_phase,
        on_checkpoint=on_checkpoint,
        should_stop=should_stop,
    )
    if should_stop is not None and should_stop():
        raise PruneCancelled("stop requested")
    if on_phase is not None:
        on_phase("exporting")
    manifest = artifact.export(
        out_dir,
        model=outcome.model,
        dense_model=outcome.dense_model,
        result=outcome.result,
        spec=spec,
        architecture=_recipe(spec, outcome.model, data),
        data=data,
        evaluate=metric_of(spec.task.metric),
        device=str(torch_device),
        # export is part of the job: its latency measuring gets what the budget has left
        time_left_s=spec.budget.max_runtime_s - outcome.result.seconds,
        extra=outcome.details,
    )
    return JobOutput(outcome=outcome, manifest=manifest, artifact_dir=out_dir)
