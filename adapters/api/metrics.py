"""``GET /metrics``: the service's metrics in the Prometheus text format (see
:mod:`adapters.metrics`), for a person with the ``admin`` role or a system with the scope
``system/Metrics.r`` (Prometheus gets its token with OAuth 2.0 client credentials, its
``oauth2`` scrape setting). The metrics hold no patient data, but they tell the activity of the
establishments: not for anyone who can open a socket."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from adapters.http.deps import ContainerDep, PrincipalDep, forbidden
from adapters.metrics import CONTENT_TYPE, exposition
from mpi.security import Role

__all__ = ["router", "METRICS_RESOURCE"]

METRICS_RESOURCE = "Metrics"

router = APIRouter(tags=["service"])


@router.get("/metrics", summary="The service's metrics (Prometheus text format)")
def prometheus_metrics(request: Request, principal: PrincipalDep,
                       container: ContainerDep) -> Response:
    allowed = (principal.has_role(Role.ADMIN) if principal.kind == "user"
               else principal.may(METRICS_RESOURCE, "r"))
    if not allowed:
        raise forbidden(request, f"{principal.actor_name} may not read the metrics (needs "
                                 "system/Metrics.r, or a person with the role admin)")
    return Response(exposition(container.metrics_state), media_type=CONTENT_TYPE)
