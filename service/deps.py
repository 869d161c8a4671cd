"""What routes depend on: the app's services and the authenticated tenant."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.auth import authenticate
from service.db.models import Tenant
from service.metrics import ApiMetrics
from service.queue import JobQueue
from service.settings import ApiSettings
from service.storage import ArtifactStorage
from service.store import JobStore


@dataclass(frozen=True)
class Services:
    """Everything one app instance talks to."""

    settings: ApiSettings
    store: JobStore
    queue: JobQueue
    storage: ArtifactStorage
    metrics: ApiMetrics


def get_services(request: Request) -> Services:
    """The services of the app serving this request."""
    services = request.app.state.services
    if not isinstance(services, Services):
        raise TypeError("app.state.services is not set; build the app with create_app()")
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


# Declared so that OpenAPI documents the scheme; the header is checked by `authenticate`,
# which answers 401 with the project's error body rather than FastAPI's.
bearer = HTTPBearer(auto_error=False, description="API key: `Authorization: Bearer <key>`")


def current_tenant(
    request: Request,
    services: ServicesDep,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Tenant:
    """The tenant whose API key is in the Authorization header (401 otherwise)."""
    with services.store.sessions() as session:
        return authenticate(session, request.headers.get("authorization"))


TenantDep = Annotated[Tenant, Depends(current_tenant)]
