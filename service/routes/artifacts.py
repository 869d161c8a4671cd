"""Artifact routes: list a job's files and download one."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter, Depends
from fastapi.responses import RedirectResponse, StreamingResponse
from starlette.responses import Response

from service.deps import ServicesDep, TenantDep
from service.http_errors import ApiError
from service.query import reject_unknown_query
from service.routes.jobs import ERRORS, JobIdDep
from service.schemas import ArtifactPublic
from service.store import check_artifact_name

router = APIRouter(
    prefix="/v1/jobs/{job_id}/artifacts",
    tags=["artifacts"],
    dependencies=[Depends(reject_unknown_query)],
)

MEDIA_TYPES = {".json": "application/json", ".csv": "text/csv", ".png": "image/png"}


@router.get("", responses=ERRORS)
def list_artifacts(
    tenant: TenantDep, job_id: JobIdDep, services: ServicesDep
) -> list[ArtifactPublic]:
    """The files a job produced, with sizes and sha256 checksums."""
    services.store.get_job(tenant.id, job_id)
    return [ArtifactPublic.of(row) for row in services.store.list_artifacts(job_id)]


@router.get("/{name:path}", responses={**ERRORS, 307: {"description": "presigned storage URL"}})
def download_artifact(
    name: str, tenant: TenantDep, job_id: JobIdDep, services: ServicesDep
) -> Response:
    """Download one artifact (a redirect to a presigned URL when storage is S3)."""
    check_artifact_name(name)
    services.store.get_job(tenant.id, job_id)
    row = services.store.get_artifact(job_id, name)
    if row is None:
        raise ApiError(404, code="artifact_not_found", message=f"job has no artifact {name!r}")
    url = services.storage.presigned_url(row.storage_key, services.settings.presign_ttl_s)
    if url is not None:
        return RedirectResponse(url, status_code=307)
    try:
        # The stored size, not the recorded one: a header that disagrees with the body breaks
        # the response, while a checksum mismatch is for the client to detect.
        size = services.storage.size(row.storage_key)
        stream: Iterator[bytes] = services.storage.open_stream(row.storage_key)
    except FileNotFoundError as error:
        raise ApiError(
            404, code="artifact_missing", message=f"artifact {name!r} is recorded but not stored"
        ) from error
    suffix = name[name.rfind(".") :] if "." in name else ""
    return StreamingResponse(
        stream,
        media_type=MEDIA_TYPES.get(suffix, "application/octet-stream"),
        headers={
            "Content-Length": str(size),
            "Content-Disposition": f'attachment; filename="{name.rpartition("/")[2]}"',
            "X-Checksum-Sha256": row.sha256,
        },
    )
