"""The job spec: the one contract between the API, the worker and the engine.

This module imports pydantic only, so the API process can validate specs without torch. The
model and task sources live in `core.spec_sources`, the shared field types in `core.spec_types`;
both are re-exported here.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationInfo, field_validator, model_validator

from core.contract.version import SPEC_VERSION
from core.registries import ALLOCATIONS, GRANULARITIES, ONESHOT_METHODS, TASK_KINDS, parse_nm
from core.spec_sources import TEXT_SUFFIXES, DataSplits, ModelRef, TaskRef
from core.spec_types import (
    URI_SCHEMES,
    AllocationName,
    ArchName,
    CriterionName,
    DatasetName,
    Granularity,
    MetricName,
    OneShotMethodName,
    Registered,
    ScheduleName,
    TaskKindName,
    check_uri,
    strict,
)

__all__ = [
    "PRETRAINED_FINETUNE_DEFAULTS",
    "PRUNE_TASK",
    "TEXT_SUFFIXES",
    "URI_SCHEMES",
    "ArchName",
    "BudgetSpec",
    "CriterionName",
    "DataSplits",
    "DatasetName",
    "ExportSpec",
    "FinetuneSpec",
    "Granularity",
    "JobSpec",
    "MetricName",
    "ModelRef",
    "PruneSpec",
    "Registered",
    "ScheduleName",
    "ScheduleSpec",
    "TaskKindName",
    "TaskRef",
    "check_uri",
]

PRUNE_TASK = "workers.prune"


class ScheduleSpec(BaseModel):
    """How sparsity grows over the pruning steps.

    oneshot prunes to the target once; linear and cubic take `steps` steps; adaptive starts with
    the larger of `steps` equal density ratios and the cubic schedule's first step, and lets the
    controller resize its increments (at most 3 * steps steps).
    """

    model_config = strict()

    kind: ScheduleName = "adaptive"
    steps: int = Field(default=10, ge=1, le=200)


class PruneSpec(BaseModel):
    """What to prune, how much, and how much metric may be lost."""

    model_config = strict()

    target_sparsity: float | Literal["max"] = Field(
        description='fraction of prunable weights zero at the end, or "max": as sparse as '
        "max_metric_drop and the budget allow, up to max_sparsity"
    )
    max_sparsity: float = Field(
        default=0.99, gt=0.0, lt=1.0, description='upper bound of target_sparsity: "max"'
    )
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

    method: OneShotMethodName | None = Field(
        default=None,
        description="one-shot, block by block (transformer models); unset: the iterative loop",
    )
    allocation: AllocationName = Field(
        default="uniform", description="one-shot: how the target is spread over the blocks"
    )
    calibration_samples: int = Field(
        default=128,
        ge=1,
        le=100_000,
        description="one-shot, width and depth: calibration sequences (from the train split)",
    )
    hidden: bool = Field(
        default=False,
        description="width: also shrink the hidden size (embedding channels, every norm and "
        "linear layer that touches it)",
    )
    comparison_group: Literal["row", "layer"] | None = Field(
        default=None,
        description="one-shot magnitude/wanda: weights compete per output row or per layer "
        "(unset: per layer for magnitude, per row for wanda)",
    )
    sparsegpt_block_size: int = Field(
        default=128, ge=1, le=65_536, description="sparsegpt: columns per block"
    )
    sparsegpt_dampening: float = Field(
        default=0.01, gt=0.0, le=1.0, description="sparsegpt: fraction of mean diag(H) added"
    )
    owl_threshold: float = Field(
        default=5.0, gt=0.0, le=1000.0, description="owl: outliers are scores above M x mean"
    )
    owl_lambda: float = Field(
        default=0.08, ge=0.0, lt=0.5, description="owl: block sparsities within target +- lambda"
    )

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

    @model_validator(mode="after")
    def _shrink_fields(self) -> PruneSpec:
        info = GRANULARITIES.info(self.granularity)
        if self.hidden and not info.get("hidden", False):
            raise ValueError(
                f"'hidden' shrinks the hidden size with a width granularity, not "
                f"{self.granularity!r}"
            )
        if info.get("hf_only", False) and self.search_max:
            raise ValueError(
                f"granularity {self.granularity!r} cuts once: target_sparsity must be a number "
                "(the fraction of parameters removed)"
            )
        return self

    @model_validator(mode="after")
    def _oneshot_fields(self) -> PruneSpec:
        if self.method is None:
            if self.allocation != "uniform" or self.comparison_group is not None:
                raise ValueError("'allocation' and 'comparison_group' need a one-shot 'method'")
            return self
        if self.search_max:
            raise ValueError(f"one-shot method {self.method!r} needs a number as target_sparsity")
        granularity = GRANULARITIES.entry(self.granularity).name
        if granularity not in ("unstructured", "N:M"):
            raise ValueError(
                f"one-shot method {self.method!r} takes granularity 'unstructured' or N:M, "
                f"not {self.granularity!r}"
            )
        if granularity == "N:M" and not ALLOCATIONS.info(self.allocation)["nm"]:
            raise ValueError(f"allocation {self.allocation!r} cannot vary an N:M pattern")
        groups = ONESHOT_METHODS.info(self.method)["groups"]
        if self.comparison_group is not None and self.comparison_group not in groups:
            raise ValueError(
                f"one-shot method {self.method!r} takes no comparison_group "
                f"{self.comparison_group!r}"
            )
        return self


class FinetuneSpec(BaseModel):
    """Training settings for dense pre-training and masked fine-tuning."""

    model_config = strict()

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
    distill_weight: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="weight of the logit distillation term; the task loss gets 1 - weight",
    )
    distill_hidden_weight: float = Field(
        default=0.0,
        ge=0.0,
        le=100.0,
        description="weight of the hidden-state distillation term (Hugging Face models only)",
    )
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

    @field_validator("distill_hidden_weight")
    @classmethod
    def _hidden_needs_distill(cls, value: float, info: ValidationInfo) -> float:
        if value > 0 and not info.data.get("distill", False):
            raise ValueError("distill_hidden_weight > 0 needs distill: true")
        return value


# Fine-tuning defaults for a trained network (`model.weights` or `model.hf` given), used for
# every field the spec leaves out: dense-training settings (lr 1e-3, no warm-up) wreck a trained
# network in one epoch, so that every cut would be blamed for the damage and rolled back.
PRETRAINED_FINETUNE_DEFAULTS: dict[str, Any] = {
    "lr": 1e-4,
    "warmup_fraction": 0.1,
    "bn_recalibration": True,
}


# A one-shot method prunes each block once, with no fine-tuning between blocks; recovery after
# it is `final_epochs` of masked fine-tuning, and only when the spec asks for it.
ONESHOT_FINETUNE_DEFAULTS: dict[str, Any] = {"epochs_per_step": 0, "final_epochs": 0}


class BudgetSpec(BaseModel):
    """Hard limits on a job; when one is hit the job stops, saves and says so."""

    model_config = strict()

    max_epochs: int = Field(default=1000, ge=1, le=100_000, description="fine-tuning epochs")
    max_runtime_s: float = Field(default=3600.0, gt=0.0, le=7 * 24 * 3600.0)


MAX_LATENCY_BATCH_SIZES = 4
MAX_LATENCY_BATCH = 1024


class ExportSpec(BaseModel):
    """How the artifact's latency is measured; its time counts against `budget.max_runtime_s`.

    `latency_seconds` is the most time spent timing forward passes (all batch sizes together);
    when less of the job's budget is left, less is measured and the manifest says so.
    """

    model_config = strict()

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

    model_config = strict()

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
        """With a trained model (`model.weights` or `model.hf`) given, fill the fine-tuning
        fields the spec leaves out from PRETRAINED_FINETUNE_DEFAULTS; fields given explicitly
        are kept as they are.

        The filled-in values are stored with the spec, so the API shows what will run and a
        spec read back (from JSON, where every field is present) means the same job.
        """
        if not isinstance(data, dict):
            return data
        model = data.get("model")
        pretrained = model.pretrained if isinstance(model, ModelRef) else False
        if isinstance(model, dict):
            pretrained = model.get("weights") is not None or model.get("hf") is not None
        prune = data.get("prune")
        oneshot = (prune.method if isinstance(prune, PruneSpec) else None) is not None or (
            isinstance(prune, dict) and prune.get("method") is not None
        )
        defaults = PRETRAINED_FINETUNE_DEFAULTS if pretrained else {}
        defaults = defaults | (ONESHOT_FINETUNE_DEFAULTS if oneshot else {})
        if not defaults:
            return data
        finetune = data.get("finetune", {})
        if isinstance(finetune, FinetuneSpec):
            finetune = finetune.model_dump(include=finetune.model_fields_set)
        if not isinstance(finetune, dict):
            return data
        return {**data, "finetune": defaults | finetune}

    @field_validator("spec_version")
    @classmethod
    def _known_version(cls, value: int) -> int:
        if value > SPEC_VERSION:
            raise ValueError(
                f"spec_version {value} is newer than this adaprune understands ({SPEC_VERSION})"
            )
        return value

    @model_validator(mode="after")
    def _text_needs_hf(self) -> JobSpec:
        """Text tasks are tokenised by the model's own tokenizer: `task.kind` and `model.hf`
        come together."""
        if self.task.kind is not None and self.model.hf is None:
            raise ValueError(f"task.kind {self.task.kind!r} needs a Hugging Face model (model.hf)")
        if self.model.hf is not None and self.task.kind is None:
            kinds = ", ".join(TASK_KINDS)
            raise ValueError(f"model.hf needs task.kind (one of {kinds}) and text data")
        return self

    @field_validator("prune")
    @classmethod
    def _hf_only_granularity(cls, value: PruneSpec, info: ValidationInfo) -> PruneSpec:
        """Width and depth rebuild a Hugging Face model from its config: `model.hf` only
        (`model` validates before `prune`, so the error is reported at prune)."""
        model = info.data.get("model")
        if not isinstance(model, ModelRef):
            return value  # the model's own error is reported
        if GRANULARITIES.info(value.granularity).get("hf_only") and model.hf is None:
            raise ValueError(
                f"granularity {value.granularity!r} needs a Hugging Face model (model.hf): it "
                "rewrites the model's config; for other models use 'channel'"
            )
        return value

    @field_validator("prune")
    @classmethod
    def _oneshot_needs_hf(cls, value: PruneSpec, info: ValidationInfo) -> PruneSpec:
        """A one-shot method prunes a transformer block by block: `model.hf` only."""
        model = info.data.get("model")
        if value.method is not None and isinstance(model, ModelRef) and model.hf is None:
            raise ValueError(
                f"one-shot method {value.method!r} needs a Hugging Face model (model.hf): it "
                "prunes a transformer block by block; for other models leave method unset"
            )
        return value

    @model_validator(mode="after")
    def _oneshot_finetune(self) -> JobSpec:
        if self.prune.method is not None and self.finetune.epochs_per_step > 0:
            raise ValueError(
                f"finetune.epochs_per_step must be 0 with one-shot method {self.prune.method!r}: "
                "it prunes each block once; recovery after it is finetune.final_epochs"
            )
        return self

    @model_validator(mode="after")
    def _hidden_distill_needs_hf(self) -> JobSpec:
        """The hidden-state term compares transformer blocks: only a Hugging Face model has
        them in a known place."""
        if self.finetune.distill_hidden_weight > 0 and self.model.hf is None:
            raise ValueError("finetune.distill_hidden_weight needs a Hugging Face model (model.hf)")
        return self

    def uris(self) -> list[tuple[str, str]]:
        """(field, URI) for every file or directory the job reads: model and task data."""
        model = [
            (f"model.{field}", uri)
            for field, uri in (("weights", self.model.weights), ("hf", self.model.hf))
            if uri is not None
        ]
        return model + self.task.uris()
