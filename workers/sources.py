"""Fetch a job's data and weights into its private work directory, checked at the open.

The API checked the spec's references already; the worker checks them again here, at the
moment it reads them, and hands the engine private copies only:
- `file://`: the path is resolved once, checked against the tenant's roots and the service's
  own directories, then that resolved path is opened with no link followed on any component
  (a link swapped in after the check makes the open fail) and copied;
- `s3://`: checked against the allowed and the service's own prefixes, then downloaded;
- `model.hf` (a `save_pretrained` directory): the same checks; a `file://` directory is opened
  with no link followed, as a file is, and the regular files directly in it are copied (a link
  inside it is refused), an `s3://` prefix has its objects downloaded;
- `artifact://JOB_ID/NAME`: the job must be the tenant's; the file is read from that tenant's
  own prefix (the key is built from the claim's tenant, so no other prefix is reachable) and
  its checksum compared with the recorded one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from core.contract.artifact_uri import ARTIFACT_SCHEME, parse_artifact_uri
from core.contract.errors import AdapruneError, ErrorCode
from core.contract.layout import sha256_file
from core.spec import JobSpec
from core.spec_sources import is_directory_uri
from core.uri import copy_dir_no_links, copy_no_links, fetch, fetch_dir
from service.policy import DataPolicy, resolved_path
from service.storage import ArtifactStorage, artifact_key
from service.store import Claim, JobStore
from workers.checkpoints import storage_call


class SourceRefused(AdapruneError):
    """A reference the worker will not read, or cannot find; `code` is the job's error code.

    `policy_violation` by default; `model_load_failed` or `data_invalid` for a missing file.
    """

    code: ErrorCode = "policy_violation"

    def __init__(self, code: ErrorCode, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.code = code
        self.field = field


@dataclass(frozen=True)
class SourceFetcher:
    """Everything needed to read one claimed job's references."""

    claim: Claim
    policy: DataPolicy
    store: JobStore
    storage: ArtifactStorage
    cache_dir: Path

    def fetch_all(self, spec: JobSpec) -> dict[str, Path]:
        """{uri: local private copy} for the spec's weights and task data.

        Raises:
            SourceRefused: `policy_violation` for a reference outside what the tenant may
                read; `model_load_failed` (weights) or `data_invalid` (data) when it is missing.
        """
        sources: dict[str, Path] = {}
        for field, uri in spec.uris():
            if uri in sources:
                continue
            if field == "model.hf":
                sources[uri] = self._directory(field, uri, depth=0, missing="model_load_failed")
                continue
            if is_directory_uri(uri) and field == "task.data":
                sources[uri] = self._directory(field, uri, depth=1, missing="data_invalid")
                continue
            missing: ErrorCode = (
                "model_load_failed" if field.startswith("model.") else "data_invalid"
            )
            sources[uri] = self._fetch(field, uri, missing)
        return sources

    def _fetch(self, field: str, uri: str, missing: ErrorCode) -> Path:
        scheme = urlsplit(uri).scheme
        target = self.cache_dir / hashlib.sha256(uri.encode()).hexdigest()[:16]
        try:
            if scheme == "file":
                return self._file(field, uri, target)
            if scheme == "s3":
                problem = self.policy.s3_problem(uri)
                if problem is not None:
                    raise SourceRefused("policy_violation", field, problem)
                return fetch(uri, cache_dir=self.cache_dir)
            if scheme == ARTIFACT_SCHEME:
                return self._artifact(field, uri, target, missing)
        except FileNotFoundError as error:
            raise SourceRefused(missing, field, f"{uri!r}: no such file") from error
        raise SourceRefused("policy_violation", field, f"{uri!r}: scheme {scheme!r} not readable")

    def _directory(self, field: str, uri: str, *, depth: int, missing: ErrorCode) -> Path:
        """A private copy of a directory: a `save_pretrained` one (depth 0: the files directly
        inside it) or a `datasets` one (depth 1: a DatasetDict's split directories too)."""
        scheme = urlsplit(uri).scheme
        target = self.cache_dir / hashlib.sha256(uri.encode()).hexdigest()[:16]
        try:
            if scheme == "file":
                path = resolved_path(uri)
                problem = self.policy.file_problem(uri, path)
                if problem is not None:
                    raise SourceRefused("policy_violation", field, problem)
                try:
                    return copy_dir_no_links(path, target / Path(path).name, depth=depth)
                except NotADirectoryError as error:
                    raise SourceRefused(missing, field, f"{uri!r}: not a directory") from error
                except PermissionError as error:
                    raise SourceRefused("policy_violation", field, str(error)) from error
            if scheme == "s3":
                problem = self.policy.s3_problem(uri)
                if problem is not None:
                    raise SourceRefused("policy_violation", field, problem)
                return fetch_dir(uri, cache_dir=self.cache_dir, depth=depth)
        except FileNotFoundError as error:
            raise SourceRefused(missing, field, f"{uri!r}: no such directory") from error
        raise SourceRefused("policy_violation", field, f"{uri!r}: scheme {scheme!r} not readable")

    def _file(self, field: str, uri: str, target: Path) -> Path:
        path = resolved_path(uri)
        problem = self.policy.file_problem(uri, path)
        if problem is not None:
            raise SourceRefused("policy_violation", field, problem)
        try:
            return copy_no_links(path, target.with_suffix(Path(path).suffix))
        except PermissionError as error:
            raise SourceRefused("policy_violation", field, str(error)) from error

    def _artifact(self, field: str, uri: str, target: Path, missing: ErrorCode) -> Path:
        job_id, name = parse_artifact_uri(uri)
        job = self.store.load_job(job_id)
        if job is None or job.tenant_id != self.claim.tenant_id:
            raise SourceRefused("policy_violation", field, f"{uri!r}: you have no job {job_id}")
        row = self.store.get_artifact(job_id, name)
        if row is None:
            raise SourceRefused(missing, field, f"{uri!r}: job {job_id} has no artifact {name}")
        dest = target.with_suffix(Path(name).suffix)
        key = artifact_key(self.claim.tenant, job_id, name)
        storage_call(f"download {key}", self.storage.get_file, key, dest, reading=True)
        if sha256_file(dest) != row.sha256:
            raise SourceRefused(missing, field, f"{uri!r}: checksum differs from the recorded one")
        return dest
