"""The artifact: weights.safetensors, manifest.json, steps.csv and curve.png, written atomically.

This module owns the file format (writing, reading, verifying and loading); what the manifest
states about the models is counted or measured in `core.measure`. Loading never unpickles.
"""

from __future__ import annotations

import csv
import json
import math
import platform
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import ValidationError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from core import measure
from core.contract.entrypoints import ANY_MODULE, EntrypointAllowList
from core.contract.jsonsafe import json_safe
from core.contract.layout import (
    ARTIFACT_FORMAT,
    CURVE_PNG,
    HF_MODEL_DIR,
    MANIFEST,
    STEPS_CSV,
    WEIGHTS,
    sha256_file,
)
from core.contract.records import STEP_COLUMNS, FileEntry, Manifest
from core.contract.specfile import describe_validation
from core.curve import write_curve
from core.data import TaskData
from core.errors import ArtifactInvalid, PruningError
from core.granularity import make_granularity
from core.hf.adapter import HFAdapter
from core.latency import measure_latency
from core.measure import Evaluate, plain_copy
from core.models import build_from_architecture
from core.report import PruneResult
from core.spec import ExportSpec, JobSpec
from core.structured import resize_to_shapes, shapes_of

__all__ = [
    "FORMAT",
    "LATENCY_BATCH_SIZES",
    "Evaluate",
    "export",
    "load",
    "manifest_record",
    "measure_latency",
    "plain_copy",
    "read_manifest",
    "sha256_file",
]

FORMAT = ARTIFACT_FORMAT
STEPS = STEPS_CSV
CURVE = CURVE_PNG
# the spec's default batch sizes (`export.latency_batch_sizes`)
LATENCY_BATCH_SIZES = tuple(ExportSpec().latency_batch_sizes)
_VERSIONED = ("numpy", "safetensors", "torch-pruning", "matplotlib", "adaprune")


def _write_weights(path: Path, model: nn.Module) -> dict[str, Tensor]:
    """Save the state dict (contiguous CPU copies) and check the file reads back identical."""
    state = {
        name: tensor.detach().to("cpu").contiguous().clone()
        for name, tensor in model.state_dict().items()
    }
    save_file(state, str(path), metadata={"format": FORMAT})
    saved = load_file(str(path))
    if saved.keys() != state.keys() or not all(
        torch.equal(saved[name], state[name]) for name in state
    ):
        raise ArtifactInvalid(f"{path.name} does not read back the tensors that were written")
    return saved


def _write_steps(path: Path, result: PruneResult) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(STEP_COLUMNS)
        for report in result.steps:
            row = report.to_dict()
            writer.writerow([row[column] for column in STEP_COLUMNS])


def _versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {"python": platform.python_version(), "torch": torch.__version__}
    for name in _VERSIONED:
        try:
            found[name.replace("-", "_")] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name.replace("-", "_")] = None
    return found


def _check_export_args(out_dir: Path, batch_sizes: Sequence[int]) -> None:
    for size in batch_sizes:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"latency batch size {size!r} must be a positive integer")
    if out_dir.exists() and not (out_dir.is_dir() and not any(out_dir.iterdir())):
        raise FileExistsError(f"{out_dir} already exists and is not an empty directory")


def _build(
    tmp: Path,
    *,
    model: nn.Module,
    dense_model: nn.Module,
    result: PruneResult,
    spec: JobSpec,
    architecture: Mapping[str, Any],
    data: TaskData,
    evaluate: Evaluate,
    device: str,
    latency_batch_sizes: Sequence[int],
    latency_seconds: float,
    time_left_s: float | None,
    extra: Mapping[str, Any] | None,
) -> dict[str, Any]:
    started = time.perf_counter()
    pruned = plain_copy(model)
    dense = plain_copy(dense_model)
    if isinstance(pruned, HFAdapter) and pruned.source is not None:
        from core.hf.export import model_files, write_pretrained

        saved = write_pretrained(tmp, pruned, source=Path(pruned.source))
        model_names = model_files(tmp)
    else:
        saved = _write_weights(tmp / WEIGHTS, pruned)
        model_names = [WEIGHTS]
    metrics = {
        "dense": measure.metrics(evaluate, dense_model, data),
        "pruned": measure.metrics(evaluate, pruned, data),
    }
    example = torch.from_numpy(np.ascontiguousarray(data.x_val[:1]))
    sizes = {
        "dense": measure.size(dense, example.to(measure.device_of(dense))),
        "pruned": measure.size(pruned, example.to(measure.device_of(pruned))),
    }
    # a model no smaller than the dense one runs the same dense kernels: no speedup to expect
    smaller = sizes["pruned"]["params"] < sizes["dense"]["params"]
    latency = measure.latency(
        dense=dense,
        pruned=pruned,
        data=data,
        device=device,
        batch_sizes=latency_batch_sizes,
        seconds=latency_seconds,
        time_left_s=None if time_left_s is None else time_left_s - (time.perf_counter() - started),
        speedup_expected=smaller,
    )
    _write_steps(tmp / STEPS, result)
    write_curve(
        tmp / CURVE,
        result=result,
        name=spec.name,
        target_sparsity=None if spec.prune.search_max else spec.prune.target,
        max_metric_drop=spec.prune.max_metric_drop,
    )
    summary = result.to_dict()
    summary.pop("steps")
    manifest = {
        "format": FORMAT,
        "created_at": datetime.now(UTC).isoformat(),
        "seed": spec.seed,
        "spec": spec.model_dump(mode="json"),
        "architecture": dict(architecture),
        "shapes": shapes_of(pruned),
        "metrics": metrics,
        "sparsity": measure.sparsity(
            saved=saved,
            pruned=pruned,
            dense=dense,
            structured=make_granularity(spec.prune.granularity).changes_shapes,
        ),
        "complexity": sizes,
        "latency": latency,
        "skipped_layers": list(result.skipped_layers),
        "nm_kernels": make_granularity(spec.prune.granularity).kernel_report(
            pruned, device=torch.device(device)
        ),
        "result": summary,
        "versions": _versions(),
        "files": {
            name: {"sha256": sha256_file(tmp / name), "bytes": (tmp / name).stat().st_size}
            for name in (*model_names, STEPS, CURVE)
        },
        "extra": dict(extra or {}),
    }
    manifest = json_safe(manifest)
    text = json.dumps(manifest, indent=2, allow_nan=False)
    (tmp / MANIFEST).write_text(text + "\n", encoding="utf-8")
    return dict(json.loads(text))


def export(
    out_dir: Path,
    *,
    model: nn.Module,
    dense_model: nn.Module,
    result: PruneResult,
    spec: JobSpec,
    architecture: Mapping[str, Any],
    data: TaskData,
    evaluate: Evaluate,
    device: str = "cpu",
    latency_batch_sizes: Sequence[int] | None = None,
    latency_seconds: float | None = None,
    time_left_s: float | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write the artifact of a pruning run to `out_dir`, all or nothing.

    The files are written into a temporary directory beside `out_dir`, which is renamed onto
    `out_dir` only when every file is complete; on any error the temporary directory is removed.

    Args:
        out_dir: the artifact directory; must not exist, or be an empty directory.
        model: the pruned model (masks applied; `torch.nn.utils.prune` hooks are folded in).
        dense_model: the dense model it was pruned from.
        result: the run's result; its steps become steps.csv and curve.png.
        spec: the job spec.
        architecture: the recipe `core.models.build_from_architecture` rebuilds the model from.
        data: the task; validation (and test, when present) metrics are computed on it.
        evaluate: `evaluate(model, x, y) -> metric`, called on both models.
        device: where latency is measured; the models are copied there.
        latency_batch_sizes: batch sizes latency is measured at (default: the spec's
            `export.latency_batch_sizes`).
        latency_seconds: the most time spent timing (default: `export.latency_seconds`).
        time_left_s: what the job's budget has left; export measures less latency when it is
            short and says so in the manifest (None: no limit beyond `latency_seconds`).
        extra: JSON-able values stored under "extra".

    Returns:
        The manifest, as written to manifest.json.

    Raises:
        FileExistsError: `out_dir` exists and is not an empty directory.
        ValueError: a bad batch size or device, or `evaluate` returned a non-number.
        ArtifactInvalid: the weights file did not read back what was written.
    """
    out_dir = Path(out_dir)
    if latency_batch_sizes is None:
        latency_batch_sizes = spec.export.latency_batch_sizes
    if latency_seconds is None:
        latency_seconds = spec.export.latency_seconds
    _check_export_args(out_dir, latency_batch_sizes)
    if not (math.isfinite(latency_seconds) and latency_seconds >= 0):
        raise ValueError(f"latency_seconds={latency_seconds!r} must be a non-negative number")
    try:
        torch.device(device)
    except RuntimeError as error:
        raise ValueError(f"device={device!r} is not a torch device") from error
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=out_dir.parent))
    try:
        manifest = _build(
            tmp,
            model=model,
            dense_model=dense_model,
            result=result,
            spec=spec,
            architecture=architecture,
            data=data,
            evaluate=evaluate,
            device=device,
            latency_batch_sizes=latency_batch_sizes,
            latency_seconds=latency_seconds,
            time_left_s=time_left_s,
            extra=extra,
        )
        tmp.chmod(0o755)
        if out_dir.is_dir():
            out_dir.rmdir()
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def read_manifest(path: Path) -> dict[str, Any]:
    """Read an artifact's manifest.

    Args:
        path: the artifact directory (or its manifest.json).

    Returns:
        The manifest.

    Raises:
        ArtifactInvalid: missing or unreadable manifest, or an unknown format.
    """
    path = Path(path)
    file = path if path.name == MANIFEST and path.is_file() else path / MANIFEST
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise ArtifactInvalid(f"{file} is missing") from error
    except (OSError, ValueError) as error:
        raise ArtifactInvalid(f"{file} cannot be read as JSON: {error}") from error
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise ArtifactInvalid(f"{file}: format {found!r} is not {FORMAT!r}")
    return manifest


def manifest_record(manifest: Mapping[str, Any]) -> Manifest:
    """The typed view of a manifest read by `read_manifest`.

    Raises:
        ArtifactInvalid: a field the loader needs is missing or malformed.
    """
    try:
        return Manifest.model_validate(manifest)
    except ValidationError as error:
        raise ArtifactInvalid(f"{MANIFEST} is invalid: {describe_validation(error)}") from error


def _plain_name(name: str) -> bool:
    """A file name inside the artifact: plain, or plain under `model/`; nothing can escape."""
    parent, _, base = name.rpartition("/")
    return parent in ("", HF_MODEL_DIR) and Path(base).name == base and not base.startswith(".")


def _verify_files(directory: Path, files: Mapping[str, FileEntry]) -> None:
    if WEIGHTS not in files and f"{HF_MODEL_DIR}/config.json" not in files:
        raise ArtifactInvalid(f"manifest lists no checksum for {WEIGHTS} or {HF_MODEL_DIR}/")
    for name, entry in files.items():
        if not _plain_name(name):
            raise ArtifactInvalid(f"manifest names a file outside the artifact: {name!r}")
        file = directory / name
        if not file.is_file():
            raise ArtifactInvalid(f"{name} is missing from the artifact")
        if sha256_file(file) != entry.sha256:
            raise ArtifactInvalid(f"{name}: sha256 does not match the manifest")


def load(
    path: Path, *, allowed_entrypoints: EntrypointAllowList = ANY_MODULE, verify: bool = True
) -> nn.Module:
    """Rebuild the pruned model from an artifact directory, in eval mode on the CPU.

    Args:
        path: the artifact directory.
        allowed_entrypoints: the modules a user factory may come from (default: any).
        verify: check every file's sha256 against the manifest first.

    Returns:
        The model with the artifact's weights (channel-pruned widths restored from "shapes").

    Raises:
        ArtifactInvalid: missing file, checksum mismatch, or weights that do not fit the model.
        ModelLoadFailed: the architecture cannot be built (e.g. refused entry point).
    """
    directory = Path(path)
    manifest = manifest_record(read_manifest(directory))
    if verify:
        _verify_files(directory, manifest.files)
    if not manifest.architecture:
        raise ArtifactInvalid("manifest has no architecture recipe")
    if manifest.architecture.get("hf") == HF_MODEL_DIR:
        from core.hf.export import load_adapter

        return load_adapter(directory, manifest.architecture).eval()
    model = build_from_architecture(manifest.architecture, allowed_entrypoints=allowed_entrypoints)
    try:
        shapes = manifest.shapes
        if shapes is not None and shapes != shapes_of(model):
            resize_to_shapes(model, shapes)
        state = load_file(str(directory / WEIGHTS))
        model.load_state_dict(state, strict=True)
    except PruningError:
        raise
    except Exception as error:
        raise ArtifactInvalid(f"{WEIGHTS} does not fit the architecture: {error}") from error
    return model.eval()
