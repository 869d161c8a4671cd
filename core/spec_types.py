"""Building blocks of the job spec: registry-backed names, strict models and URI checks.

Torch-free (pydantic only), like everything the spec is made of.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import unquote

from pydantic import ConfigDict, GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

from core.contract.artifact_uri import ARTIFACT_SCHEME, parse_artifact_uri
from core.registries import (
    ALLOCATIONS,
    ARCHITECTURES,
    AUTO,
    CRITERIA,
    DATASETS,
    GRANULARITIES,
    METRICS,
    ONESHOT_METHODS,
    SCHEDULES,
    TASK_KINDS,
)
from core.registry import Registry

URI_SCHEMES = ("file", "s3", ARTIFACT_SCHEME)

ENTRYPOINT = re.compile(
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
OneShotMethodName = Annotated[str, Registered(ONESHOT_METHODS)]
AllocationName = Annotated[str, Registered(ALLOCATIONS)]
TaskKindName = Annotated[str, Registered(TASK_KINDS)]


def strict() -> ConfigDict:
    return ConfigDict(frozen=True, extra="forbid")


def check_uri(value: str, *, suffix: str | tuple[str, ...] | None) -> str:
    """Check that `value` is a `file://`, `s3://` or `artifact://JOB_ID/NAME` URI whose path
    ends with `suffix`.

    `suffix` None accepts any path (a directory, such as a `save_pretrained` one).

    Raises:
        ValueError: naming the scheme or suffix at fault.
    """
    match = _URI.match(value)
    if match is None:
        raise ValueError(
            f"{value!r} is not a URI; use file:///path, s3://bucket/key or artifact://JOB_ID/NAME"
        )
    scheme = match["scheme"]
    if scheme not in URI_SCHEMES:
        raise ValueError(f"URI scheme {scheme!r} is not allowed; allowed: {', '.join(URI_SCHEMES)}")
    rest = match["rest"]
    if scheme == ARTIFACT_SCHEME:
        parse_artifact_uri(value)
    if scheme == "file" and not rest.startswith("/"):
        raise ValueError(f"{value!r}: file URIs must be absolute (file:///abs/path)")
    if scheme == "s3" and "/" not in rest.strip("/"):
        raise ValueError(f"{value!r}: s3 URIs need a bucket and a key (s3://bucket/key)")
    suffixes = (suffix,) if isinstance(suffix, str) else suffix
    if suffixes is not None and not rest.lower().endswith(suffixes):
        raise ValueError(f"{value!r} must name a {' or '.join(suffixes)} file")
    # Checked as written and as the loader reads it (percent-decoded: %00, %2e%2e).
    if any("\x00" in text or "/../" in f"{text}/" for text in (rest, unquote(rest))):
        raise ValueError(f"{value!r} must not contain '..' segments or NUL bytes")
    return value
