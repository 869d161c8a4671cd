"""The artifact: weights.safetensors, manifest.json, steps.csv and curve.png, written atomically.

Everything the manifest states about the pruned model is counted or measured: sparsity from the
saved file, metrics from `evaluate`, latency from timed forward passes. Loading never unpickles.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import json
import math
import platform
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from torch.nn.utils import parametrize, prune

from core.data import TaskData
from core.errors import ArtifactInvalid, PruningError
from core.latency import compare_latency, measure_latency
from core.masks import measured_sparsity, prunable_parameters
from core.models import build_from_architecture
from core.report import PruneResult
from core.semistructured import measure_two_four
from core.spec import JobSpec, parse_nm
from core.structured import (
    count_macs_params,
    count_params,
    nonzero_params,
    removed_by_layer,
    removed_fraction,
    resize_to_shapes,
    shapes_of,
)

__all__ = [
    "FORMAT",
    "LATENCY_BATCH_SIZES",
    "export",
    "load",
    "measure_latency",
    "read_manifest",
    "sha256_file",
]

FORMAT = "adaprune/1"
WEIGHTS = "weights.safetensors"
MANIFEST = "manifest.json"
STEPS = "steps.csv"
CURVE = "curve.png"
# small, medium and large batches: a pruned model can be faster at one and slower at another
LATENCY_BATCH_SIZES = (1, 32, 256)
STEP_COLUMNS = (
    "step",
    "target_sparsity",
    "sparsity",
    "metric",
    "loss",
    "decision",
    "seconds",
    "epochs",
)
_VERSIONED = ("numpy", "safetensors", "torch-pruning", "matplotlib", "adaprune")

Evaluate = Callable[[nn.Module, np.ndarray, np.ndarray], float]


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def plain_copy(model: nn.Module) -> nn.Module:
    """A deep copy of `model` with pruning reparametrisations folded into plain parameters.

    `torch.nn.utils.prune` keeps `weight_orig` and `weight_mask` and recomputes `weight` in a
    forward pre-hook; `torch.nn.utils.parametrize` keeps `parametrizations.<name>.original`.
    The copy holds the effective (masked) values under the plain names instead.
    """
    plain = copy.deepcopy(model)
    for module in plain.modules():
        for hook in list(module._forward_pre_hooks.values()):
            if isinstance(hook, prune.BasePruningMethod):
                prune.remove(module, hook._tensor_name)  # type: ignore[no-untyped-call]
        if parametrize.is_parametrized(module):
            parametrizations = cast(nn.ModuleDict, module.parametrizations)
            for name in list(parametrizations.keys()):
                parametrize.remove_parametrizations(module, name, leave_parametrized=True)
    return plain


def _device_of(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    return torch.device("cpu")


def _metric(evaluate: Evaluate, model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    value = evaluate(model, x, y)
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise ValueError(f"evaluate returned {value!r}, not a number")
    return float(value)


def _metrics(evaluate: Evaluate, model: nn.Module, data: TaskData) -> dict[str, float]:
    found = {"val": _metric(evaluate, model, data.x_val, data.y_val)}
    if data.x_test is not None and data.y_test is not None:
        found["test"] = _metric(evaluate, model, data.x_test, data.y_test)
    return found


def _size(model: nn.Module, example: Tensor) -> dict[str, int]:
    macs, params = count_macs_params(model, example_inputs=example)
    return {"params": int(params), "nonzero": int(nonzero_params(model)), "macs": int(macs)}


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


def _write_curve(path: Path, *, result: PruneResult, max_metric_drop: float) -> None:
    # Figure without pyplot draws with Agg and touches no global backend state.
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(7, 4), layout="constrained")
    metric_axis = figure.subplots()
    sparsity_axis = metric_axis.twinx()
    steps = [report.step for report in result.steps]
    dense = result.dense_metric
    metric_axis.axhspan(
        dense - max_metric_drop, dense, color="tab:green", alpha=0.15, label="tolerance"
    )
    metric_axis.axhline(dense, color="tab:green", linestyle="--", label="dense metric")
    metric_axis.plot(
        steps, [r.metric for r in result.steps], "o-", color="tab:blue", label="metric"
    )
    sparsity_axis.plot(
        steps, [r.sparsity for r in result.steps], "s-", color="tab:orange", label="sparsity"
    )
    metric_axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    metric_axis.set_xlabel("step")
    metric_axis.set_ylabel("validation metric")
    sparsity_axis.set_ylabel("sparsity")
    sparsity_axis.set_ylim(0.0, 1.0)
    handles = metric_axis.get_legend_handles_labels()
    more = sparsity_axis.get_legend_handles_labels()
    metric_axis.legend(handles[0] + more[0], handles[1] + more[1], loc="lower left")
    figure.savefig(path, dpi=100)


def _versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {"python": platform.python_version(), "torch": torch.__version__}
    for name in _VERSIONED:
        try:
            found[name.replace("-", "_")] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name.replace("-", "_")] = None
    return found


def _finite(value: Any) -> Any:
    """Replace NaN and infinities by None so the manifest is strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(key): _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def _sparsity(
    *,
    saved: Mapping[str, Tensor],
    pruned: nn.Module,
    dense: nn.Module,
    spec: JobSpec,
    sizes: Mapping[str, Any],
) -> dict[str, Any]:
    """Zeros among the prunable weights; for channel jobs, the parameters gone from the file."""
    names = list(prunable_parameters(pruned))
    overall, per_layer = measured_sparsity({name: saved[name] for name in names})
    found: dict[str, Any] = {"overall": overall, "per_layer": per_layer}
    dense_params = count_params(dense)
    pruned_params = sum(saved[name].numel() for name, _ in pruned.named_parameters())
    if spec.prune.granularity == "channel" or dense_params != pruned_params:
        found["params_dense"] = dense_params
        found["params_pruned"] = pruned_params
        found["removed_fraction"] = removed_fraction(
            params_dense=dense_params, params_pruned=pruned_params
        )
    if spec.prune.granularity == "channel":
        found["overall"] = found["removed_fraction"]
        found["per_layer"] = removed_by_layer(dict(dense.named_parameters()), saved, names=names)
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
    extra: Mapping[str, Any] | None,
) -> dict[str, Any]:
    pruned = plain_copy(model)
    dense = plain_copy(dense_model)
    saved = _write_weights(tmp / WEIGHTS, pruned)
    metrics = {
        "dense": _metrics(evaluate, dense_model, data),
        "pruned": _metrics(evaluate, pruned, data),
    }
    example = torch.from_numpy(np.ascontiguousarray(data.x_val[:1]))
    sizes = {
        "dense": _size(dense, example.to(_device_of(dense))),
        "pruned": _size(pruned, example.to(_device_of(pruned))),
    }
    latency = compare_latency(
        dense=dense.to(device),
        pruned=pruned.to(device),
        features=data.x_val,
        device=device,
        batch_sizes=latency_batch_sizes,
    )
    _write_steps(tmp / STEPS, result)
    _write_curve(tmp / CURVE, result=result, max_metric_drop=spec.prune.max_metric_drop)
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
        "sparsity": _sparsity(saved=saved, pruned=pruned, dense=dense, spec=spec, sizes=sizes),
        "complexity": sizes,
        "latency": latency,
        "nm_kernels": (
            measure_two_four(pruned, device=torch.device(device))
            if parse_nm(spec.prune.granularity)
            else None
        ),
        "result": summary,
        "versions": _versions(),
        "files": {
            name: {"sha256": sha256_file(tmp / name), "bytes": (tmp / name).stat().st_size}
            for name in (WEIGHTS, STEPS, CURVE)
        },
        "extra": dict(extra or {}),
    }
    manifest = _finite(manifest)
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
    latency_batch_sizes: Sequence[int] = LATENCY_BATCH_SIZES,
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
        latency_batch_sizes: batch sizes latency is measured at.
        extra: JSON-able values stored under "extra".

    Returns:
        The manifest, as written to manifest.json.

    Raises:
        FileExistsError: `out_dir` exists and is not an empty directory.
        ValueError: a bad batch size or device, or `evaluate` returned a non-number.
        ArtifactInvalid: the weights file did not read back what was written.
    """
    out_dir = Path(out_dir)
    _check_export_args(out_dir, latency_batch_sizes)
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


def _verify_files(directory: Path, files: Any) -> None:
    if not isinstance(files, dict) or WEIGHTS not in files:
        raise ArtifactInvalid(f"manifest lists no checksum for {WEIGHTS}")
    for name, entry in files.items():
        # Names are plain file names inside the artifact; anything else could escape it.
        if not isinstance(name, str) or Path(name).name != name or name.startswith("."):
            raise ArtifactInvalid(f"manifest names a file outside the artifact: {name!r}")
        file = directory / name
        if not file.is_file():
            raise ArtifactInvalid(f"{name} is missing from the artifact")
        if not isinstance(entry, dict) or sha256_file(file) != entry.get("sha256"):
            raise ArtifactInvalid(f"{name}: sha256 does not match the manifest")


def load(
    path: Path, *, allowed_entrypoints: Sequence[str] | None = None, verify: bool = True
) -> nn.Module:
    """Rebuild the pruned model from an artifact directory, in eval mode on the CPU.

    Args:
        path: the artifact directory.
        allowed_entrypoints: module prefixes a user factory may come from; None allows any.
        verify: check every file's sha256 against the manifest first.

    Returns:
        The model with the artifact's weights (channel-pruned widths restored from "shapes").

    Raises:
        ArtifactInvalid: missing file, checksum mismatch, or weights that do not fit the model.
        ModelLoadFailed: the architecture cannot be built (e.g. refused entry point).
    """
    directory = Path(path)
    manifest = read_manifest(directory)
    if verify:
        _verify_files(directory, manifest.get("files"))
    architecture = manifest.get("architecture")
    if not isinstance(architecture, dict):
        raise ArtifactInvalid("manifest has no architecture recipe")
    model = build_from_architecture(architecture, allowed_entrypoints=allowed_entrypoints)
    try:
        shapes = manifest.get("shapes")
        if shapes is not None and shapes != shapes_of(model):
            resize_to_shapes(model, shapes)
        state = load_file(str(directory / WEIGHTS))
        model.load_state_dict(state, strict=True)
    except PruningError:
        raise
    except Exception as error:
        raise ArtifactInvalid(f"{WEIGHTS} does not fit the architecture: {error}") from error
    return model.eval()
