"""Operational routes: liveness, readiness (database, Redis, storage) and Prometheus metrics."""

from __future__ import annotations

import errno
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as ProbeTimeout

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from starlette.responses import Response

from service.deps import ServicesDep

router = APIRouter(tags=["operations"])
# A storage that hangs (an S3 endpoint that never answers) must not hang readiness: the probe
# runs beside the request and counts as failed after STORAGE_PROBE_S.
STORAGE_PROBE_S = 5.0
_probes = ThreadPoolExecutor(max_workers=2, thread_name_prefix="storage-probe")


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz(services: ServicesDep) -> JSONResponse:
    """Readiness: 200 when the database, Redis and storage answer, else 503 naming what failed.

    The storage check writes and deletes a small object (`ArtifactStorage.probe`).
    """
    checks: dict[str, str] = {}
    try:
        with services.store.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as error:  # any failure means not ready; the type tells which
        checks["database"] = f"unavailable: {type(error).__name__}"
    try:
        services.queue.ping()
        checks["redis"] = "ok"
    except Exception as error:
        checks["redis"] = f"unavailable: {type(error).__name__}"
    try:
        _probes.submit(services.storage.probe).result(timeout=STORAGE_PROBE_S)
        checks["storage"] = "ok"
    except ProbeTimeout:
        checks["storage"] = f"unavailable: no answer within {STORAGE_PROBE_S:g}s"
    except Exception as error:
        # The type and errno say enough (ENOSPC, EROFS); paths and endpoints stay out.
        number = getattr(error, "errno", None)
        name = errno.errorcode.get(number, "") if isinstance(number, int) else ""
        checks["storage"] = f"unavailable: {type(error).__name__}" + (f" ({name})" if name else "")
    failed = [name for name, status in checks.items() if status != "ok"]
    if not failed:
        return JSONResponse({"status": "ready", "checks": checks})
    body = {
        "error": {"code": "not_ready", "message": f"unavailable: {', '.join(failed)}"},
        "checks": checks,
    }
    return JSONResponse(body, status_code=503)


@router.get("/metrics")
def metrics(services: ServicesDep) -> Response:
    """Prometheus metrics of this API process."""
    return Response(generate_latest(services.metrics.registry), media_type=CONTENT_TYPE_LATEST)
