"""The FastAPI application: `create_app()`, or `service.main:app` built on first access."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from service.deps import Services
from service.http_errors import install_error_handlers
from service.metrics import ApiMetrics, ScrapeSources
from service.middleware import BodyLimitMiddleware, MetricsMiddleware
from service.queue import JobQueue
from service.routes import artifacts, events, health, jobs, ui
from service.settings import ApiSettings
from service.storage import storage_from_url
from service.store import JobStore

DOCS_ASSETS_URL = "/static/docs"


def build_services(settings: ApiSettings) -> Services:
    """Connect nothing yet: engines, broker and storage clients connect on first use."""
    store = JobStore.from_url(settings.database_url)
    queue = JobQueue(settings.redis_url)

    def queue_depths() -> dict[str, int]:
        # Only the configured queues become labels: a name a client chose never reaches
        # /metrics, and the label set stays bounded.
        return {name: queue.queue_depth(name) for name in settings.queues}

    sources = ScrapeSources(
        state_counts=store.job_state_counts,
        queue_depths=queue_depths,
        max_heartbeat_age_s=store.max_heartbeat_age_s,
    )
    return Services(
        settings=settings,
        store=store,
        queue=queue,
        storage=storage_from_url(settings.artifact_url),
        metrics=ApiMetrics(sources),
    )


def create_app(settings: ApiSettings | None = None) -> FastAPI:
    """Build the API for `settings` (read from the environment when None)."""
    services = build_services(settings if settings is not None else ApiSettings())

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        services.queue.close()
        services.store.engine.dispose()

    # Swagger UI and ReDoc from assets shipped in the fastapi-offline wheel: /docs works offline.
    app = FastAPIOffline(
        title="adaprune",
        version="0.1.0",
        lifespan=lifespan,
        static_url=DOCS_ASSETS_URL,
        # Swagger UI would otherwise send the spec's URL to its public validator.
        swagger_ui_parameters={"validatorUrl": None},
        # No redirect from `/v1/jobs/` to `/v1/jobs`: it would be built from the Host header.
        redirect_slashes=False,
    )
    app.state.services = services
    install_error_handlers(app)
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=services.settings.max_body_bytes,
        timeout_s=services.settings.body_timeout_s,
    )
    app.add_middleware(MetricsMiddleware, metrics=services.metrics)
    app.include_router(jobs.router)
    app.include_router(events.router)
    app.include_router(artifacts.router)
    app.include_router(health.router)
    app.include_router(ui.router)
    return app


_app: FastAPI | None = None


def __getattr__(name: str) -> Any:
    # `app` is built on first access so that importing this module reads no settings.
    global _app
    if name == "app":
        if _app is None:
            _app = create_app()
        return _app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
