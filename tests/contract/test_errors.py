"""One error root, one list of codes: every code the packages use is in it, and the docs list it."""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import redis.exceptions
import sqlalchemy.exc

from core.contract.errors import ERROR_CODES, AdapruneError, as_error_code
from service.http_errors import CODE_OF_STATUS
from service.store.leases import ATTEMPTS_EXHAUSTED
from workers.errors import StorageUnavailable, infra_code

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("core", "service", "workers", "cli")
# `code = "x"`, `code: ErrorCode = "x"`, `code="x"`, `error_code="x"`, `"code": "x"`
CODE_LITERAL = re.compile(
    r"""(?:\b(?:error_)?code\s*(?::\s*ErrorCode\s*)?=\s*|["']code["']\s*:\s*)["']([a-z_]+)["']"""
)
EXCEPTION_CLASS = re.compile(r"^class (\w+)\(([^)]*)\):", re.MULTILINE)


def _sources() -> list[Path]:
    return sorted(path for package in PACKAGES for path in (ROOT / package).rglob("*.py"))


def test_every_code_literal_in_the_packages_is_a_listed_error_code() -> None:
    found: dict[str, str] = {}
    for path in _sources():
        for code in CODE_LITERAL.findall(path.read_text(encoding="utf-8")):
            found.setdefault(code, str(path.relative_to(ROOT)))
    assert len(found) > 20  # the scan sees the codes (guards against a broken pattern)
    unknown = {code: where for code, where in found.items() if code not in ERROR_CODES}
    assert not unknown, f"codes missing from ErrorCode: {unknown}"


def test_codes_the_api_and_the_worker_compute_are_listed() -> None:
    emitted = {
        *CODE_OF_STATUS.values(),
        ATTEMPTS_EXHAUSTED,
        infra_code(StorageUnavailable("x")),
        infra_code(sqlalchemy.exc.OperationalError("select 1", {}, Exception("down"))),
        infra_code(redis.exceptions.ConnectionError("down")),
    }
    assert emitted <= set(ERROR_CODES)


def test_every_exception_class_derives_from_the_one_root_with_a_listed_code() -> None:
    classes = []
    for path in _sources():
        text = path.read_text(encoding="utf-8")
        for name, _bases in EXCEPTION_CLASS.findall(text):
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            candidate = getattr(importlib.import_module(module), name)
            if inspect.isclass(candidate) and issubclass(candidate, BaseException):
                classes.append(candidate)
    assert len(classes) >= 25
    for kind in classes:
        assert issubclass(kind, AdapruneError), kind
        assert kind.code in ERROR_CODES, (kind, kind.code)


def test_the_service_docs_list_exactly_the_error_codes() -> None:
    text = (ROOT / "docs" / "service.md").read_text(encoding="utf-8")
    section = text.split("## Error codes", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"^\| `([a-z_]+)` \|", section, re.MULTILINE)
    assert sorted(listed) == sorted(ERROR_CODES)
    assert len(listed) == len(set(listed))


def test_policy_refusals_have_one_code_everywhere() -> None:
    assert "policy_violation" in ERROR_CODES and "policy" not in ERROR_CODES


def test_a_code_from_another_process_reads_as_known_or_http_error() -> None:
    assert as_error_code("job_not_found") == "job_not_found"
    assert as_error_code("something_newer") == "http_error"
