"""Artifact records: which named files a job produced, where they live, their checksums."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, NamedTuple

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite

from core.contract.layout import HF_MODEL_DIR
from service.db.models import Artifact, Job, utcnow
from service.errors import InvalidKey
from service.store.base import StoreBase
from service.store.steps import held_by

# a plain file name, or one inside the `model/` directory of a Hugging Face model's artifact
ARTIFACT_NAME = re.compile(rf"^(?:{HF_MODEL_DIR}/)?[A-Za-z0-9][A-Za-z0-9._-]{{0,240}}$")
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


def check_artifact_name(name: str) -> str:
    """Return `name` if it is a plain file name (letters, digits, '.', '_', '-'), or one under
    `model/` (a Hugging Face model's directory); no other path.

    Raises:
        InvalidKey: naming the bad value.
    """
    if not ARTIFACT_NAME.match(name) or ".." in name:
        raise InvalidKey(f"artifact name {name!r} must be a plain file name")
    return name


class ArtifactRow(NamedTuple):
    """One stored artifact file: its name, storage key, size and sha256."""

    name: str
    storage_key: str
    size_bytes: int
    sha256: str


def _artifact_values(job_id: str, row: ArtifactRow) -> dict[str, Any]:
    check_artifact_name(row.name)
    if not SHA256_HEX.match(row.sha256):
        raise ValueError(f"sha256 {row.sha256!r} is not 64 lowercase hex digits")
    if row.size_bytes < 0:
        raise ValueError(f"size_bytes {row.size_bytes} is negative")
    return {
        "job_id": job_id,
        "name": row.name,
        "storage_key": row.storage_key,
        "size_bytes": row.size_bytes,
        "sha256": row.sha256,
        "created_at": utcnow(),
    }


class ArtifactOps(StoreBase):
    """Write and read artifact rows."""

    def record_artifact(
        self,
        job_id: str,
        *,
        owner: str | None,
        name: str,
        storage_key: str,
        size_bytes: int,
        sha256: str,
    ) -> bool:
        """Insert or replace the row for artifact `name` of a job.

        Args:
            job_id: the job.
            owner: the lease identity that must hold the job (None: no lease check).
            name: a plain file name such as "weights.safetensors".
            storage_key: where the bytes are in the artifact storage.
            size_bytes: the object's size.
            sha256: lowercase hex digest of the bytes.

        Returns:
            Whether the row was written (False: the lease was lost, or no such job).
        """
        row = ArtifactRow(name, storage_key, size_bytes, sha256)
        return self.record_artifacts(job_id, [row], owner=owner)

    def record_artifacts(
        self, job_id: str, rows: Sequence[ArtifactRow], *, owner: str | None
    ) -> bool:
        """Insert or replace several artifact rows of a job in one transaction.

        A reader sees either none of them or all of them, never part of a set.

        Args:
            job_id: the job.
            rows: the artifacts (plain file names, non-negative sizes, hex sha256 digests).
            owner: the worker's lease identity: nothing is written unless it still holds the
                lease of a running or cancelling job (None: no lease check, for tools and
                fixtures that write outside a worker).

        Returns:
            Whether the rows were written (an empty `rows` writes nothing and returns True).
        """
        values = [_artifact_values(job_id, row) for row in rows]
        if not values:
            return True
        with self.tx() as session:
            if owner is not None:
                # A no-op update that takes the job's row lock and states the lease check.
                held = session.execute(
                    update(Job).where(Job.id == job_id, *held_by(owner)).values(lease_owner=owner)
                )
                if int(getattr(held, "rowcount", 0)) != 1:
                    return False
            dialect = session.get_bind().dialect.name
            insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
            statement = insert(Artifact).values(values)
            updates = {
                column: statement.excluded[column]
                for column in ("storage_key", "size_bytes", "sha256", "created_at")
            }
            session.execute(
                statement.on_conflict_do_update(index_elements=["job_id", "name"], set_=updates)
            )
        return True

    def list_artifacts(self, job_id: str) -> list[Artifact]:
        """The job's artifacts by name."""
        with self.tx() as session:
            return list(
                session.scalars(
                    select(Artifact).where(Artifact.job_id == job_id).order_by(Artifact.name)
                )
            )

    def get_artifact(self, job_id: str, name: str) -> Artifact | None:
        """The row of artifact `name`, or None when the job recorded no such artifact."""
        with self.tx() as session:
            return session.get(Artifact, (job_id, name))
