"""Where a job's model and task come from: built-ins, user factories and `.npz` files, or a
Hugging Face `save_pretrained` directory with text data (JSONL, CSV or Parquet).

Torch-free (pydantic only): the API validates these without importing the engine.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, ValidationInfo, field_validator, model_validator

from core.contract.artifact_uri import ARTIFACT_SCHEME
from core.registries import TASK_KINDS
from core.spec_types import (
    ENTRYPOINT,
    ArchName,
    DatasetName,
    MetricName,
    TaskKindName,
    check_uri,
    strict,
)

# the text formats a task split may come in (Parquet needs pyarrow on the worker)
TEXT_SUFFIXES = (".jsonl", ".csv", ".parquet")
MAX_TEXT_LENGTH = 8192


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
    """Which model to prune: a built-in architecture, a user factory (with optional weights) or
    a Hugging Face `save_pretrained` directory (`hf`)."""

    model_config = strict()

    arch: ArchName | None = None
    entrypoint: str | None = Field(default=None, description='"pkg.module:factory"')
    kwargs: dict[str, Any] = Field(default_factory=dict, description="passed to the factory")
    weights: str | None = Field(
        default=None, description="file://, s3:// or artifact://JOB_ID/NAME .safetensors URI"
    )
    hf: str | None = Field(
        default=None,
        description="file:// or s3:// save_pretrained directory (config.json, *.safetensors, "
        "tokenizer files); loaded offline, never with remote code, never from a pickle",
    )

    @field_validator("entrypoint")
    @classmethod
    def _entrypoint_format(cls, value: str | None) -> str | None:
        if value is not None and not ENTRYPOINT.match(value):
            raise ValueError(f"{value!r} is not of the form 'package.module:factory'")
        return value

    @field_validator("weights")
    @classmethod
    def _weights_uri(cls, value: str | None) -> str | None:
        return None if value is None else check_uri(value, suffix=".safetensors")

    @field_validator("hf")
    @classmethod
    def _hf_uri(cls, value: str | None) -> str | None:
        return None if value is None else check_uri(value, suffix=None)

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
        sources = [self.arch, self.entrypoint, self.hf]
        if sum(source is not None for source in sources) != 1:
            raise ValueError(
                "give exactly one of 'arch' (built-in), 'entrypoint' or 'hf' (a directory)"
            )
        if self.hf is not None and (self.weights is not None or self.kwargs):
            raise ValueError("'hf' carries its own weights and config: drop 'weights'/'kwargs'")
        return self

    @property
    def pretrained(self) -> bool:
        """The model arrives trained (weights given, or a Hugging Face directory)."""
        return self.weights is not None or self.hf is not None


def is_directory_uri(data: object) -> bool:
    """Whether a text task's `data` names a `datasets` save_to_disk directory (a URI ending
    in "/")."""
    return isinstance(data, str) and data.endswith("/")


class DataSplits(BaseModel):
    """One text file per split; `test` is optional."""

    model_config = strict()

    train: str
    val: str
    test: str | None = None

    @field_validator("train", "val", "test")
    @classmethod
    def _text_uri(cls, value: str | None) -> str | None:
        return None if value is None else check_uri(value, suffix=TEXT_SUFFIXES)


class TaskRef(BaseModel):
    """The task the pruned model must serve: a built-in dataset, a user `.npz` file, or text
    (`kind` set) in JSONL, CSV or Parquet files, per split or one file split by fractions."""

    model_config = strict()

    kind: TaskKindName | None = Field(
        default=None, description="text task of a Hugging Face model ('hf')"
    )
    dataset: DatasetName | None = None
    data: str | DataSplits | None = Field(
        default=None,
        description="file://, s3:// or artifact:// .npz with x_train,y_train,x_val,y_val; "
        "with `kind`: "
        "{train, val, test} text files, one text file split by val/test_fraction, or a "
        "`datasets` save_to_disk directory (a URI ending in '/')",
    )
    metric: MetricName = Field(
        default="accuracy", description="default: accuracy, or the task kind's own default"
    )
    text_column: str = Field(default="text", min_length=1, max_length=128)
    label_column: str = Field(default="label", min_length=1, max_length=128)
    max_length: int = Field(default=128, ge=2, le=MAX_TEXT_LENGTH, description="tokens kept")
    val_fraction: float | None = Field(default=None, gt=0.0, lt=1.0)
    test_fraction: float | None = Field(default=None, gt=0.0, lt=1.0)

    @field_validator("data")
    @classmethod
    def _data_uri(cls, value: str | DataSplits | None, info: ValidationInfo) -> Any:
        """A single file: `.npz` for a tensor task, a text file when `kind` is set (`kind` is
        validated first, so a bad URI is reported at task.data)."""
        if value is None or isinstance(value, DataSplits):
            return value
        text = info.data.get("kind") is not None
        if text and is_directory_uri(value):
            if value.startswith(f"{ARTIFACT_SCHEME}://"):
                raise ValueError(f"{value!r}: an artifact:// URI names a file, not a directory")
            return check_uri(value, suffix=None)
        return check_uri(value, suffix=TEXT_SUFFIXES if text else ".npz")

    @model_validator(mode="before")
    @classmethod
    def _kind_metric_default(cls, data: Any) -> Any:
        """A text task that names no metric gets its kind's default (perplexity for causal-lm)."""
        if (
            isinstance(data, dict)
            and "metric" not in data
            and isinstance(data.get("kind"), str)
            and data["kind"] in TASK_KINDS
        ):
            return {**data, "metric": TASK_KINDS.info(data["kind"])["default_metric"]}
        return data

    @model_validator(mode="after")
    def _exactly_one_source(self) -> TaskRef:
        if self.kind is None:
            return self._check_tensor_task()
        return self._check_text_task(self.kind)

    def _check_tensor_task(self) -> TaskRef:
        # a stored spec carries every field at its default: only a value that differs from it
        # was asked for
        text_fields = sorted(
            name
            for name in (
                "text_column",
                "label_column",
                "max_length",
                "val_fraction",
                "test_fraction",
            )
            if name in self.model_fields_set
            and getattr(self, name) != type(self).model_fields[name].default
        )
        if text_fields:
            raise ValueError(f"{', '.join(text_fields)}: only for text tasks (set 'kind')")
        if (self.dataset is None) == (self.data is None):
            raise ValueError("give exactly one of 'dataset' (built-in) or 'data' (.npz URI)")
        if isinstance(self.data, DataSplits):
            raise ValueError("per-split data files are text: set 'kind'")
        return self

    def _check_text_task(self, kind: str) -> TaskRef:
        if self.dataset is not None:
            raise ValueError(f"a {kind} task reads 'data' files, not a built-in 'dataset'")
        if self.data is None:
            raise ValueError(f"a {kind} task needs 'data': {{train, val[, test]}} or one file")
        metrics = TASK_KINDS.info(kind)["metrics"]
        if self.metric not in metrics:
            raise ValueError(
                f"metric {self.metric!r} does not apply to {kind}; allowed: {', '.join(metrics)}"
            )
        fractions = (self.val_fraction or 0.0) + (self.test_fraction or 0.0)
        if isinstance(self.data, DataSplits):
            if fractions:
                raise ValueError("val_fraction/test_fraction split one file; data names splits")
            return self
        if self.val_fraction is None and not is_directory_uri(self.data):
            raise ValueError("one data file needs val_fraction (and optionally test_fraction)")
        if fractions >= 0.9:
            raise ValueError(f"val_fraction + test_fraction = {fractions:g} leaves under 10 %")
        return self

    def uris(self) -> list[tuple[str, str]]:
        """(field, URI) for every file the task reads."""
        if isinstance(self.data, DataSplits):
            named = [("train", self.data.train), ("val", self.data.val), ("test", self.data.test)]
            return [(f"task.data.{split}", uri) for split, uri in named if uri is not None]
        return [] if self.data is None else [("task.data", self.data)]
