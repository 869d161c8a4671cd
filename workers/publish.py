"""A finished engine run's artifact, published: files uploaded, then their rows recorded."""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from pathlib import Path

from core.contract.layout import MANIFEST, sha256_file
from core.contract.records import JobResult
from service.storage import ArtifactStorage, artifact_key, job_prefix
from service.store import ArtifactRow, Claim, JobStore
from workers.checkpoints import storage_call
from workers.errors import INFRA_ERRORS
from workers.handback import store_write

log = logging.getLogger(__name__)


@dataclass
class EngineOutput:
    """What is kept of a finished engine run once its models are released."""

    result: JobResult
    artifact_dir: Path
    files: list[str] = field(default_factory=list)


def publish_artifact(
    claim: Claim, output: EngineOutput, *, storage: ArtifactStorage, store: JobStore, owner: str
) -> bool:
    """Upload the artifact files (manifest.json last) and record each one's checksum.

    Rows are written only once every file is stored, so a failed upload lists nothing;
    the files it did store are removed again (best effort).

    Returns:
        False when the lease was lost before the rows were written (none are written; the
        files stay, since the worker that holds the job now writes the same keys).
    """
    ordered = [name for name in output.files if name != MANIFEST] + [MANIFEST]
    rows = []
    try:
        for name in ordered:
            path = output.artifact_dir / name
            key = artifact_key(claim.tenant, claim.job_id, name)
            storage_call(f"upload {key}", storage.put_file, key, path)
            rows.append(ArtifactRow(name, key, path.stat().st_size, sha256_file(path)))
    except INFRA_ERRORS:
        prefix = f"{job_prefix(claim.tenant, claim.job_id)}artifacts/"
        try:
            storage.delete_prefix(prefix)
        except Exception as error:  # the storage is failing already; the rows stay unwritten
            log.warning("job %s: could not remove partial %s: %s", claim.job_id, prefix, error)
        raise
    written = store_write(
        f"job {claim.job_id}: record artifacts",
        functools.partial(store.record_artifacts, claim.job_id, rows, owner=owner),
    )
    if not written:
        log.warning("job %s: lease lost before its artifacts were recorded", claim.job_id)
    return written
