"""Operations endpoints outside ``/api``: ``GET /health`` (liveness, seed 000), ``GET /ready`` (readiness) and
``GET /metrics`` (Prometheus text format), issue 7.

``/metrics`` protection: when ``METRICS_TOKEN`` is set it needs ``Authorization: Bearer <METRICS_TOKEN>`` (401
otherwise); in production without ``METRICS_TOKEN`` it is switched off (404), so it is never open to the world.
Workers and beat, which serve no API, expose theirs on a separate port (``METRICS_PORT``).
"""

from __future__ import annotations

import hmac
from typing import Any

from apiflask import APIBlueprint
from flask import Response, request
from sqlalchemy import text

from email_service import __version__
from email_service.errors import NotFound, Unauthorized
from email_service.observability import metrics
from email_service.services.readiness import check_readiness

from . import examples
from .context import service_context
from .gate import guard
from .schemas import HealthOut, ReadyOut

_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}}
METRICS_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Prometheus text exposition format 0.0.4",
        "content": {"text/plain": {"schema": {"type": "string"}, "example": examples.METRICS}},
    },
    401: {"description": "METRICS_TOKEN is set and the request does not carry it", "content": _ERROR},
    404: {"description": "Production without METRICS_TOKEN: metrics are switched off", "content": _ERROR},
}
READY_RESPONSES: dict[int | str, dict[str, Any]] = {
    503: {
        "description": "Not ready",
        "content": {"application/json": {**_ERROR["application/json"], "example": examples.NOT_READY}},
    }
}


def ops_blueprint() -> APIBlueprint:
    """The blueprint of ``/health``, ``/ready`` and ``/metrics`` (served once, at the root; no credentials of a
    tenant user, not rate limited, the query-parameter check of :func:`~email_service.api.gate.guard`)."""
    tag = {"name": "Operations", "description": "Liveness, readiness and metrics of the service"}
    bp = guard(APIBlueprint("ops", __name__, tag=tag), authenticated=False)

    @bp.get("/health")
    @bp.output(HealthOut, example=examples.HEALTH)
    @bp.doc(
        summary="Liveness and database check (seed 000)",
        description="Answers 200 with the service name and version when the database answers `SELECT 1`, "
        "503 with `database: unavailable` otherwise. Needs no credentials and is not rate limited.",
        operation_id="getHealth",
        responses=[503],
    )
    def health() -> Any:
        body = {"status": "healthy", "service": "email_service", "version": __version__, "database": "ok"}
        try:
            with service_context().db.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except Exception:
            body.update(status="unhealthy", database="unavailable")
            return body, 503
        return body

    @bp.get("/ready")
    @bp.output(ReadyOut, example=examples.READY)
    @bp.doc(
        summary="Readiness: database, migrations at head, Redis and broker when configured",
        description="200 when every check is `ok`; 503 naming the failing parts in `message` and `checks`. "
        "Needs no credentials and is not rate limited.",
        operation_id="getReadiness",
        responses=READY_RESPONSES,
    )
    def ready() -> Any:
        readiness = check_readiness(service_context())
        body: dict[str, Any] = {"status": "ready" if readiness.ready else "not ready", "checks": readiness.checks}
        if readiness.ready:
            return body
        failing = ", ".join(f"{name} {readiness.checks[name]}" for name in readiness.failing)
        body.update(error="Service unavailable", message=f"Not ready: {failing}")
        return body, 503

    @bp.get("/metrics")
    @bp.doc(
        summary="Prometheus metrics of this API process group",
        description="HTTP requests by route template and status, latencies, rate-limit refusals, jobs queued. "
        "Needs `Authorization: Bearer <METRICS_TOKEN>` when METRICS_TOKEN is set; off in production without it. "
        "Not rate limited.",
        operation_id="getMetrics",
        responses=METRICS_RESPONSES,
    )
    def metrics_view() -> Response:
        _authorize_metrics()
        return Response(metrics.exposition(), content_type=metrics.CONTENT_TYPE)

    return bp


def _authorize_metrics() -> None:
    settings = service_context().settings
    if settings.metrics_token is None:
        if settings.is_production:
            raise NotFound("Not found")
        return
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), settings.metrics_token.encode()):
        raise Unauthorized("Bearer METRICS_TOKEN required")
