"""Query strings are checked like bodies: a parameter the route does not declare is a 422."""

from __future__ import annotations

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from service.http_errors import validation_error
from service.schemas import ErrorDetail


def declared_query(route: APIRoute) -> frozenset[str]:
    """The query parameter names `route` declares, its dependencies' included."""
    return frozenset(_query_names(route.dependant))


def _query_names(dependant: Dependant) -> set[str]:
    names = {field.alias for field in dependant.query_params}
    for child in dependant.dependencies:
        names |= _query_names(child)
    return names


def reject_unknown_query(request: Request) -> None:
    """A router dependency: 422 naming every query parameter the route does not take.

    A misspelt filter (`?stat=failed`) would otherwise list every job as if it had matched.
    """
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    known = declared_query(route)
    unknown = sorted({name for name in request.query_params if name not in known})
    if not unknown:
        return
    allowed = ", ".join(sorted(known)) or "none"
    raise validation_error(
        [
            ErrorDetail(
                code="unknown_parameter",
                message=f"unknown query parameter {name!r} (this route takes: {allowed})",
                field=f"query.{name}",
            )
            for name in unknown
        ]
    )
