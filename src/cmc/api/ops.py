"""Operations endpoints: liveness, readiness, Prometheus metrics, the OpenAPI document."""

from __future__ import annotations

from litestar import Response, get
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from cmc.api import HttpRequest, openapi
from cmc.api.services import Services
from cmc.errors import NotReady
from cmc.store.database import ping


@get("/health")
async def health() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@get("/ready")
async def ready(request: HttpRequest) -> dict[str, str]:
    """Readiness: the store answers a query."""
    try:
        await Services.of(request).db.read(ping)
    except Exception as exc:
        raise NotReady() from exc
    return {"status": "ready"}


@get("/metrics")
async def metrics(request: HttpRequest) -> Response[bytes]:
    """Prometheus text exposition."""
    registry = Services.of(request).metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


@get("/schema/openapi.json")
async def openapi_document() -> Response[bytes]:
    """The OpenAPI 3.1 description of the API, generated from the wire Structs."""
    return Response(openapi.document(), media_type="application/json")


ROUTES = [health, ready, metrics, openapi_document]
