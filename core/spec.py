"""The job spec: the one contract between the API, the worker and the engine.

This module imports pydantic only, so the API process can validate specs without torch.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

PRUNE_TASK = "workers.prune"

BUILTIN_ARCHS = ("mlp", "cnn1d", "cnn2d", "lstm", "transformer")
BUILTIN_DATASETS = ("mnist1d", "digits", "breast_cancer")
CRITERIA = ("magnitude", "taylor", "activation", "adaptive", "seed_ratio", "auto")
URI_SCHEMES = ("file", "s3")

_ENTRYPOINT = re.compile(
    r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$"
)
_NM = re.compile(r"^(\d+):(\d+)$")
_URI = re.compile(r"^(?P<scheme>[a-z][a-z0-9+.-]*)://(?P<rest>.+)$")

Granularity = Annotated[
    str, Field(description='"unstructured", "channel" or an N:M pattern like "2:4"')
]


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


def parse_nm(granularity: str) -> tuple[int, int] | None:
    """Return (n, m) for an N:M granularity such as "2:4", else None."""
    match = _NM.match(granularity)
    return (int(match[1]), int(match[2])) if match else None


class ModelRef(BaseModel):
    """Which model to prune: a built-in architecture or a user factory, with optional weights."""

    model_config = _strict()

    arch: Literal["mlp", "cnn1d", "cnn2d", "lstm", "transformer"] | None = None
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
        return value

    @model_validator(mode="after")
    def _exactly_one_source(self) -> ModelRef:
        if (self.arch is None) == (self.entrypoint is None):
            raise ValueError("give exactly one of 'arch' (built-in) or 'entrypoint'")
        return self


class TaskRef(BaseModel):
    """The task the pruned model must serve: a built-in dataset or a user `.npz` file."""

    model_config = _strict()

    dataset: Literal["mnist1d", "digits", "breast_cancer"] | None = None
    data: str | None = Field(
        default=None, description="file:// or s3:// .npz with x_train,y_train,x_val,y_val"
    )
    metric: Literal["accuracy"] = "accuracy"

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

    kind: Literal["oneshot", "linear", "cubic", "adaptive"] = "adaptive"
    steps: int = Field(default=10, ge=1, le=200)


class PruneSpec(BaseModel):
    """What to prune, how much, and how much metric may be lost."""

    model_config = _strict()

    target_sparsity: float | Literal["max"] = Field(
        description='fraction of prunable weights zero at the end, or "max": as sparse as '
        "max_metric_drop and the budget allow, up to max_sparsity"
    )
    max_sparsity: float = Field(
        default=0.99, gt=0.0, lt=1.0, description='upper bound of target_sparsity: "max"'
    )
    granularity: Granularity = "unstructured"
    scope: Literal["global", "layer", "sensitivity"] = "global"
    criterion: Literal["magnitude", "taylor", "activation", "adaptive", "seed_ratio", "auto"] = (
        "adaptive"
    )
    schedule: ScheduleSpec = Field(default_factory=ScheduleSpec)
    max_metric_drop: float = Field(default=0.01, ge=0.0, le=1.0)
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

    @field_validator("granularity")
    @classmethod
    def _granularity(cls, value: str) -> str:
        if value in ("unstructured", "channel"):
            return value
        nm = parse_nm(value)
        if nm is None:
            raise ValueError(f"{value!r} is not 'unstructured', 'channel' or an N:M pattern")
        n, m = nm
        if not (0 < n < m <= 32):
            raise ValueError(f"N:M pattern {value!r} needs 0 < N < M <= 32")
        return value

    @field_validator("target_sparsity", mode="before")
    @classmethod
    def _target(cls, value: Any) -> Any:
        # one clear message instead of one per member of the union
        if value == "max" and isinstance(value, str):
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ValueError('must be a number in (0, 1) or "max"')
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f'must be a number in (0, 1) or "max", got {value!r}') from None
        if not 0.0 < number < 1.0:
            raise ValueError(f'must be a number in (0, 1) or "max", got {value!r}')
        return number

    @property
    def search_max(self) -> bool:
        """Whether the job asks for the highest sparsity within tolerance (`max`)."""
        return self.target_sparsity == "max"

    @property
    def target(self) -> float:
        """The sparsity the run aims at: `target_sparsity`, or `max_sparsity` for `max`."""
        return self.max_sparsity if self.target_sparsity == "max" else self.target_sparsity

    @model_validator(mode="after")
    def _max_needs_adaptive(self) -> PruneSpec:
        if self.target_sparsity == "max" and self.schedule.kind != "adaptive":
            raise ValueError(
                'target_sparsity "max" needs schedule.kind "adaptive" (a fixed schedule '
                "cannot search; give a number instead)"
            )
        return self

    @model_validator(mode="after")
    def _nm_target(self) -> PruneSpec:
        nm = parse_nm(self.granularity)
        if nm is not None:
            if self.target_sparsity == "max":
                raise ValueError(
                    f"target_sparsity must be a number for granularity {self.granularity!r} "
                    "(N:M fixes the sparsity)"
                )
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


class BudgetSpec(BaseModel):
    """Hard limits on a job; when one is hit the job stops, saves and says so."""

    model_config = _strict()

    max_epochs: int = Field(default=1000, ge=1, le=100_000, description="fine-tuning epochs")
    max_runtime_s: float = Field(default=3600.0, gt=0.0, le=7 * 24 * 3600.0)


class JobSpec(BaseModel):
    """A complete pruning job: model, task, pruning method, fine-tuning and budget."""

    model_config = _strict()

    name: str = Field(
        default="job", min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
    )
    model: ModelRef
    task: TaskRef
    prune: PruneSpec
    finetune: FinetuneSpec = Field(default_factory=FinetuneSpec)
    budget: BudgetSpec = Field(default_factory=BudgetSpec)
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
