"""The job spec: the one contract between the API, the worker and the engine.

This module imports pydantic only, so the API process can validate specs without torch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

from core.contract.version import SPEC_VERSION
from core.registries import (
    ARCHITECTURES,
    AUTO,
    CRITERIA,
    DATASETS,
    GRANULARITIES,
    METRICS,
    SCHEDULES,
    parse_nm,
)
from core.registry import Registry

PRUNE_TASK = "workers.prune"

URI_SCHEMES = ("file", "s3")

_ENTRYPOINT = re.compile(
    r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$"
)
_URI = re.compile(r"^(?P<scheme>[a-z][a-z0-9+.-]*)://(?P<rest>.+)$")


@dataclass(frozen=True, eq=False)
class Registered:
    """A string field whose allowed values are a registry's names (read when validating).

    The JSON schema lists them as an enum when the set is closed, else in the description.
    """

    registry: Registry[Any]
    extra: tuple[str, ...] = ()

    def check(self, value: str) -> str:
        if value in self.extra:
            return value
        try:
            return self.registry.check(value)
        except ValueError as error:
            if not self.extra or "allowed:" not in str(error):
                raise
            allowed = ", ".join(repr(name) for name in (*self.registry, *self.extra))
            raise ValueError(
                f"unknown {self.registry.kind} {value!r}; allowed: {allowed}"
            ) from None

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        return core_schema.no_info_after_validator_function(self.check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        value = handler(schema)
        closed = (*self.registry.closed_names(), *self.extra)
        if len(closed) == len(self.registry) + len(self.extra):
            value["enum"] = list(closed)
        else:
            names = ", ".join(
                [
                    f"{entry.name!r} (e.g. {entry.info['example']!r})"
                    if "example" in entry.info
                    else repr(entry.name)
                    for entry in self.registry.entries()
                ]
                + [repr(name) for name in self.extra]
            )
            value["description"] = f"one of {names}"
        return value


ArchName = Annotated[str, Registered(ARCHITECTURES)]
DatasetName = Annotated[str, Registered(DATASETS)]
MetricName = Annotated[str, Registered(METRICS)]
ScheduleName = Annotated[str, Registered(SCHEDULES)]
CriterionName = Annotated[str, Registered(CRITERIA, extra=(AUTO,))]
Granularity = Annotated[str, Registered(GRANULARITIES)]


def _strict() -> ConfigDict:
    return ConfigDict(frozen=True, extra="forbid")


def check_uri(value: str, *, suffix: str) -> str:
    """Check that `value` is a `file://` or `s3://` URI whose path ends with `suffix`.

    Raises:
        ValueError: naming the scheme or suffix at fault.
    """
    match = _URI.match(value)
    if match is None:
        raise ValueError(f"{value!r} is not a URI; use file:///path or s3://bucket/key")
    scheme = match["scheme"]
    if scheme not in URI_SCHEMES:
        raise ValueError(f"URI scheme {scheme!r} is not allowed; allowed: file, s3")
    rest = match["rest"]
    if scheme == "file" and not rest.startswith("/"):
        raise ValueError(f"{value!r}: file URIs must be absolute (file:///abs/path)")
    if scheme == "s3" and "/" not in rest.strip("/"):
        raise ValueError(f"{value!r}: s3 URIs need a bucket and a key (s3://bucket/key)")
    if not rest.lower().endswith(suffix):
        raise ValueError(f"{value!r} must name a {suffix} file")
    if "\x00" in value or "/../" in f"{rest}/":
        raise ValueError(f"{value!r} must not contain '..' segments or NUL bytes")
    return value


# No size, count or seed a factory takes is near 2**53 (the largest integer JSON carries exactly);
# a larger one is an attack on the worker's memory, refused before it reaches a queue.
MAX_KWARG_INT = 2**53


def _check_integers(where: str, value: Any) -> None:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_KWARG_INT:
        raise ValueError(f"{where}: integer {value} is beyond the limit of 2**53")
    if isinstance(value, list):
        for index, item in enumerate(value):
            _check_integers(f"{where}[{index}]", item)


class ModelRef(BaseModel):
    """Which model to prune: a built-in architecture or a user factory, with optional weights."""

    model_config = _strict()

    arch: ArchName | None = None
    entrypoint: str | None = Field(default=None, description='"pkg.module:factory"')
    kwargs: dict[str, Any] = Field(default_factory=dict, description="passed to the factory")
    weights: str | None = Field(default=None, description="file:// or s3:// .safetensors URI")

    @field_validator("entrypoint")
    @classmethod
    def _entrypoint_format(cls, value: str | None) -> str | None:
        if value is not None and not _ENTRYPOINT.match(value):
            raise ValueError(f"{value!r} is not of the form 'package.module:factory'")
        return value

    @field_validator("weights")
    @classmethod
    def _weights_uri(cls, value: str | None) -> str | None:
        return None if value is None else check_uri(value, suffix=".safetensors")

    @field_validator("kwargs")
    @classmethod
    def _kwargs_plain(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key, item in value.items():
            if not isinstance(item, (int, float, str, bool, type(None), list)):
                raise ValueError(f"kwargs[{key!r}] must be a number, string, bool, null or list")
            _check_integers(f"kwargs[{key!r}]", item)
        return value

    @model_validator(mode="after")
    def _exactly_one_source(self) -> ModelRef:
        if (self.arch is None) == (self.entrypoint is None):
            raise ValueError("give exactly one of 'arch' (built-in) or 'entrypoint'")
        return self


class TaskRef(BaseModel):
    """The task the pruned model must serve: a built-in dataset or a user `.npz` file."""

    model_config = _strict()

    dataset: DatasetName | None = None
    data: str | None = Field(
        default=None, description="file:// or s3:// .npz with x_train,y_train,x_val,y_val"
    )
    metric: MetricName = "accuracy"

    @field_validator("data")
    @classmethod
    def _data_uri(cls, value: str | None) -> str | None:
        return None if value is None else check_uri(value, suffix=".npz")

    @model_validator(mode="after")
    def _exactly_one_source(self) -> TaskRef:
        if (self.dataset is None) == (self.data is None):
            raise ValueError("give exactly one of 'dataset' (built-in) or 'data' (.npz URI)")
        return self


class ScheduleSpec(BaseModel):
    """How sparsity grows over the pruning steps.

    oneshot prunes to the target once; linear and cubic take `steps` steps; adaptive starts with
    increments of target/steps and lets the controller resize them (at most 3 * steps steps).
    """

    model_config = _strict()

    kind: ScheduleName = "adaptive"
    steps: int = Field(default=10, ge=1, le=200)


class PruneSpec(BaseModel):
    """What to prune, how much, and how much metric may be lost."""

    model_config = _strict()

    target_sparsity: float = Field(gt=0.0, lt=1.0)
    granularity: Granularity = "unstructured"
    scope: Literal["global", "layer", "sensitivity"] = "global"
    criterion: CriterionName = "adaptive"
    schedule: ScheduleSpec = Field(default_factory=ScheduleSpec)
    max_metric_drop: float = Field(
        default=0.01,
        ge=0.0,
        le=1.0,
        description="tolerance: how much worse than dense, in the metric's direction",
    )
    min_layer_density: float = Field(
        default=0.02, ge=0.0, lt=1.0, description="per-layer floor: fraction of weights kept"
    )
    round_to: int = Field(default=8, ge=1, le=1024, description="channel widths multiple")
    calibration_batches: int = Field(default=8, ge=1, le=1000)
    adaptive_mix: float = Field(
        default=0.5, ge=0.0, le=1.0, description="adaptive criterion: weight of the gradient part"
    )
    seed_alpha: float = Field(default=1.0, gt=0.0, le=1e6, description="seed_ratio alpha")
    seed_gamma: float = Field(default=0.5, gt=0.0, lt=1.0, description="seed_ratio gamma")

    @model_validator(mode="after")
    def _nm_target(self) -> PruneSpec:
        nm = parse_nm(self.granularity)
        if nm is not None:
            pattern_sparsity = 1.0 - nm[0] / nm[1]
            if abs(self.target_sparsity - pattern_sparsity) > 1e-6:
                raise ValueError(
                    f"target_sparsity must be {pattern_sparsity:g} for granularity "
                    f"{self.granularity!r} (N:M keeps N of every M weights)"
                )
        return self


class FinetuneSpec(BaseModel):
    """Training settings for dense pre-training and masked fine-tuning."""

    model_config = _strict()

    pretrain_epochs: int = Field(
        default=20, ge=0, le=10_000, description="dense training when no weights are given"
    )
    epochs_per_step: int = Field(default=1, ge=0, le=1000)
    final_epochs: int = Field(default=3, ge=0, le=10_000)
    lr: float = Field(default=1e-3, gt=0.0, le=10.0)
    pretrain_lr: float | None = Field(default=None, gt=0.0, le=10.0)
    weight_decay: float = Field(default=0.0, ge=0.0, le=1.0)
    batch_size: int = Field(default=128, ge=1, le=65_536)
    distill: bool = False
    distill_temperature: float = Field(default=2.0, gt=0.0, le=100.0)
    distill_weight: float = Field(default=0.5, ge=0.0, le=1.0)
    warmup_fraction: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="linear lr warm-up over this fraction of the first epoch after each cut",
    )
    bn_recalibration: bool = Field(
        default=False,
        description="re-estimate BatchNorm running statistics after each cut (calibration batches)",
    )


# Fine-tuning defaults for a trained network (`model.weights` given), used for every field the
# spec leaves out: dense-training settings (lr 1e-3, no warm-up) wreck a trained network in one
# epoch, so that every cut would be blamed for the damage and rolled back.
PRETRAINED_FINETUNE_DEFAULTS: dict[str, Any] = {
    "lr": 1e-4,
    "warmup_fraction": 0.1,
    "bn_recalibration": True,
}


class BudgetSpec(BaseModel):
    """Hard limits on a job; when one is hit the job stops, saves and says so."""

    model_config = _strict()

    max_epochs: int = Field(default=1000, ge=1, le=100_000, description="fine-tuning epochs")
    max_runtime_s: float = Field(default=3600.0, gt=0.0, le=7 * 24 * 3600.0)


MAX_LATENCY_BATCH_SIZES = 4
MAX_LATENCY_BATCH = 1024


class ExportSpec(BaseModel):
    """How the artifact's latency is measured; its time counts against `budget.max_runtime_s`.

    `latency_seconds` is the most time spent timing forward passes (all batch sizes together);
    when less of the job's budget is left, less is measured and the manifest says so.
    """

    model_config = _strict()

    latency_batch_sizes: list[int] = Field(
        default_factory=lambda: [1, 32],
        min_length=0,
        max_length=MAX_LATENCY_BATCH_SIZES,
        description="batch sizes latency is measured at (empty: no latency measured)",
    )
    latency_seconds: float = Field(default=10.0, ge=0.0, le=600.0)

    @field_validator("latency_batch_sizes")
    @classmethod
    def _batch_sizes(cls, value: list[int]) -> list[int]:
        for size in value:
            if not 1 <= size <= MAX_LATENCY_BATCH:
                raise ValueError(f"latency batch size {size} must be in [1, {MAX_LATENCY_BATCH}]")
        if len(set(value)) != len(value):
            raise ValueError(f"latency batch sizes {value} repeat a size")
        return value


class JobSpec(BaseModel):
    """A complete pruning job: model, task, pruning method, fine-tuning and budget."""

    model_config = _strict()

    spec_version: int = Field(
        default=SPEC_VERSION,
        ge=1,
        description="the spec format's version; one newer than this code knows is refused",
    )
    name: str = Field(
        default="job", min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
    )
    model: ModelRef
    task: TaskRef
    prune: PruneSpec
    finetune: FinetuneSpec = Field(default_factory=FinetuneSpec)
    budget: BudgetSpec = Field(default_factory=BudgetSpec)
    export: ExportSpec = Field(default_factory=ExportSpec)
    seed: int = Field(default=0, ge=0, le=2**31 - 1)

    @model_validator(mode="before")
    @classmethod
    def _pretrained_finetune_defaults(cls, data: Any) -> Any:
        """With `model.weights` given, fill the fine-tuning fields the spec leaves out from
        PRETRAINED_FINETUNE_DEFAULTS; fields given explicitly are kept as they are.

        The filled-in values are stored with the spec, so the API shows what will run and a
        spec read back (from JSON, where every field is present) means the same job.
        """
        if not isinstance(data, dict):
            return data
        model = data.get("model")
        weights = model.weights if isinstance(model, ModelRef) else None
        if isinstance(model, dict):
            weights = model.get("weights")
        if weights is None:
            return data
        finetune = data.get("finetune", {})
        if isinstance(finetune, FinetuneSpec):
            finetune = finetune.model_dump(include=finetune.model_fields_set)
        if not isinstance(finetune, dict):
            return data
        return {**data, "finetune": PRETRAINED_FINETUNE_DEFAULTS | finetune}

    @field_validator("spec_version")
    @classmethod
    def _known_version(cls, value: int) -> int:
        if value > SPEC_VERSION:
            raise ValueError(
                f"spec_version {value} is newer than this adaprune understands ({SPEC_VERSION})"
            )
        return value
