"""Checks on a valid spec that depend on the deployment: allowed entry points and file roots."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from core.contract.entrypoints import EntrypointAllowList
from core.spec import JobSpec


@dataclass(frozen=True)
class PolicyViolation:
    """A spec field the deployment refuses, with the reason."""

    field: str
    message: str


def file_allowed(uri: str, roots: Sequence[str]) -> bool:
    """Whether a file:// URI resolves (symlinks followed) to a path inside one of `roots`."""
    path = os.path.realpath(unquote(urlsplit(uri).path))
    for root in roots:
        real_root = os.path.realpath(root)
        if os.path.commonpath([path, real_root]) == real_root:
            return True
    return False


def check_policy(
    spec: JobSpec, *, allowed_entrypoints: Sequence[str], allowed_file_roots: Sequence[str]
) -> list[PolicyViolation]:
    """Every field of `spec` this deployment refuses (empty when the spec may run).

    Args:
        spec: a spec that already passed JobSpec validation.
        allowed_entrypoints: module prefixes user factories may come from (empty: none).
        allowed_file_roots: directories file:// data, weights and model directories must lie
            in (empty: none).
    """
    problems: list[PolicyViolation] = []
    entrypoint = spec.model.entrypoint
    allow_list = EntrypointAllowList.only(allowed_entrypoints)
    if entrypoint is not None and not allow_list.allows(entrypoint):
        problems.append(
            PolicyViolation(
                "model.entrypoint",
                f"{entrypoint!r} is not under an allowed module: {allow_list.describe()}",
            )
        )
    for field, uri in spec.uris():
        if uri.startswith("file://") and not file_allowed(uri, allowed_file_roots):
            problems.append(PolicyViolation(field, f"{uri!r} is outside the allowed file roots"))
    return problems
