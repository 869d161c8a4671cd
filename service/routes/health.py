"""Operational routes: liveness, readiness (database and Redis) and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from starlette.responses import Response

from service.deps import ServicesDep

router = APIRouter(tags=["operations"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz(services: ServicesDep) -> JSONResponse:
    """Readiness: 200 when the database and Redis answer, else 503 naming what failed."""
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
