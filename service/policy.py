"""Checks on a valid spec that depend on the deployment: allowed entry points and data sources.

A spec reaches only data its tenant may read:
- `file://` paths must resolve inside an allowed file root and never inside the service's own
  state (ADAPRUNE_HOME, a file:// artifact directory), whatever the roots say;
- `s3://` objects must lie under an allowed bucket/prefix (none by default) and never under the
  service's own artifact bucket/prefix;
- `artifact://JOB_ID/NAME` names the tenant's own job's files; the caller says which jobs the
  tenant owns, and the worker reads them from that tenant's prefix only.
Roots and prefixes may contain `{tenant}`, replaced by the tenant's name.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from core.contract.artifact_uri import ARTIFACT_SCHEME, parse_artifact_uri
from core.contract.entrypoints import EntrypointAllowList
from core.spec import JobSpec
from service.settings import SharedSettings

TENANT_PLACEHOLDER = "{tenant}"
OWN_FILES_HINT = "name your own job's files as artifact://JOB_ID/NAME"


@dataclass(frozen=True)
class PolicyViolation:
    """A spec field the deployment refuses, with the reason."""

    field: str
    message: str


@dataclass(frozen=True)
class DataPolicy:
    """Where one tenant's specs may read data and weights from.

    Attributes:
        file_roots: directories file:// references must resolve inside.
        private_roots: directories no file:// reference may resolve inside (the service's own).
        s3_prefixes: `bucket` or `bucket/prefix` entries s3:// references must lie under.
        private_s3: the service's own `bucket/prefix` entries, never readable through s3://.
    """

    file_roots: tuple[str, ...] = ()
    private_roots: tuple[str, ...] = ()
    s3_prefixes: tuple[str, ...] = ()
    private_s3: tuple[str, ...] = ()

    @classmethod
    def of(cls, settings: SharedSettings, *, tenant: str) -> DataPolicy:
        """The policy of `tenant` under `settings` (placeholders replaced by its name)."""
        private = [str(settings.home)]
        private_s3: list[str] = []
        artifacts = urlsplit(settings.artifact_url)
        if artifacts.scheme == "file":
            private.append(unquote(artifacts.path))
        elif artifacts.scheme == "s3":
            private_s3.append(f"{artifacts.netloc}/{artifacts.path.strip('/')}")
        return cls(
            file_roots=_for_tenant(settings.allowed_file_roots, tenant),
            private_roots=tuple(private),
            s3_prefixes=_for_tenant(settings.allowed_s3_prefixes, tenant),
            private_s3=tuple(private_s3),
        )

    def file_problem(self, uri: str, path: str | None = None) -> str | None:
        """Why the file:// `uri` may not be read, or None when it may.

        Args:
            path: `resolved_path(uri)` when the caller already resolved it (and opens that).
        """
        path = resolved_path(uri) if path is None else path
        if any(_inside(path, root) for root in self.private_roots):
            return f"{uri!r} is inside the service's own storage; {OWN_FILES_HINT}"
        if not any(_inside(path, root) for root in self.file_roots):
            roots = ", ".join(self.file_roots) or "none are configured"
            return f"{uri!r} is outside the allowed file roots ({roots})"
        return None

    def s3_problem(self, uri: str) -> str | None:
        """Why the s3:// `uri` may not be read, or None when it may."""
        parts = urlsplit(uri)
        bucket, key = parts.netloc, parts.path.lstrip("/")
        if any(_under_prefix(bucket, key, entry) for entry in self.private_s3):
            return f"{uri!r} is in the service's own artifact storage; {OWN_FILES_HINT}"
        if not any(_under_prefix(bucket, key, entry) for entry in self.s3_prefixes):
            # The service's own bucket stays out of the list even where an entry names it.
            readable = [e for e in self.s3_prefixes if not _overlaps_private(e, self.private_s3)]
            allowed = ", ".join(f"s3://{entry}" for entry in readable)
            return f"{uri!r} is outside the allowed S3 prefixes ({allowed or 'none configured'})"
        return None


def resolved_path(uri: str) -> str:
    """The file:// `uri`'s path with every link resolved (the path that is then opened)."""
    return os.path.realpath(unquote(urlsplit(uri).path))


def file_allowed(uri: str, roots: Sequence[str]) -> bool:
    """Whether a file:// URI resolves (symlinks followed) to a path inside one of `roots`."""
    return DataPolicy(file_roots=tuple(roots)).file_problem(uri) is None


def check_policy(
    spec: JobSpec,
    *,
    allowed_entrypoints: Sequence[str],
    allowed_file_roots: Sequence[str] = (),
    data: DataPolicy | None = None,
    owns_job: Callable[[str], bool] | None = None,
) -> list[PolicyViolation]:
    """Every field of `spec` this deployment refuses (empty when the spec may run).

    Args:
        spec: a spec that already passed JobSpec validation.
        allowed_entrypoints: module prefixes user factories may come from (empty: none).
        allowed_file_roots: file roots, used when `data` is not given (no S3, no private roots).
        data: the tenant's data policy (`DataPolicy.of`); it replaces `allowed_file_roots`.
        owns_job: whether the tenant owns a job id (None: every artifact:// is refused).
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
    policy = data if data is not None else DataPolicy(file_roots=tuple(allowed_file_roots))
    for field, uri in spec.uris():
        problem = source_problem(uri, policy, owns_job)
        if problem is not None:
            problems.append(PolicyViolation(field, problem))
    return problems


def source_problem(
    uri: str, policy: DataPolicy, owns_job: Callable[[str], bool] | None
) -> str | None:
    """Why the data or weights reference `uri` may not be read, or None when it may."""
    scheme = urlsplit(uri).scheme
    if scheme == "file":
        return policy.file_problem(uri)
    if scheme == "s3":
        return policy.s3_problem(uri)
    if scheme == ARTIFACT_SCHEME:
        job_id, _ = parse_artifact_uri(uri)
        if owns_job is None or not owns_job(job_id):
            return f"{uri!r}: you have no job {job_id}"
        return None
    return f"{uri!r}: scheme {scheme!r} is not readable here"


def _for_tenant(entries: Sequence[str], tenant: str) -> tuple[str, ...]:
    return tuple(entry.replace(TENANT_PLACEHOLDER, tenant) for entry in entries)


def _inside(path: str, root: str) -> bool:
    real_root = os.path.realpath(root)
    return os.path.commonpath([path, real_root]) == real_root


def _overlaps_private(entry: str, private: Sequence[str]) -> bool:
    bucket, _, prefix = entry.partition("/")
    return any(_under_prefix(bucket, prefix, own) for own in private) or any(
        own.partition("/")[0] == bucket and not prefix for own in private
    )


def _under_prefix(bucket: str, key: str, entry: str) -> bool:
    """Whether s3://bucket/key lies under `entry` (`bucket` or `bucket/prefix`, whole segments)."""
    entry_bucket, _, prefix = entry.partition("/")
    prefix = prefix.strip("/")
    if bucket != entry_bucket:
        return False
    return not prefix or key == prefix or key.startswith(prefix + "/")
