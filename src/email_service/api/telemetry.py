"""Per-request telemetry (issue 7; seed 001 request logging): a request id, one log line and the HTTP metrics.

* Request id: an incoming ``X-Request-ID`` is kept when it is sane (1-128 characters of ``A-Z a-z 0-9 . _ : / +
  = -``, starting with a letter or digit), else a new one is generated (32 hex digits); it is echoed in the
  response's ``X-Request-ID`` and bound to every log record of the request.
* One line per request (logger ``email_service.request``, message ``request``) with the fields ``request_id``,
  ``method``, ``route`` (the URL rule template, e.g. ``/api/v1/accounts/<uuid:account_id>``), ``path``,
  ``status``, ``duration_ms``, ``tenant_id``, ``user_id``, ``role``, ``ip`` and ``user_agent`` (first 200
  characters).  Never headers, bodies or query strings: they may hold secrets.
* ``email_service_http_requests_total`` and ``email_service_http_request_duration_seconds`` by route template.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from flask import Flask, Response, g, request

from email_service.observability import metrics
from email_service.observability.logs import bind_context, clear_context
from email_service.security.tokens import Principal

log = logging.getLogger("email_service.request")
REQUEST_ID_HEADER = "X-Request-ID"
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/+=-]{0,127}$")
#: The route label of a request that matched no URL rule (404, 405 on unknown paths).
UNMATCHED = "<unmatched>"


def request_id_of(header: str | None) -> str:
    """The request id to use for an ``X-Request-ID`` header value: the value when sane, else a new one."""
    if header is not None and _SANE_REQUEST_ID.match(header):
        return header
    return uuid.uuid4().hex


def route_template() -> str:
    """The URL rule of the current request (its template, not the raw path), or ``<unmatched>``."""
    return request.url_rule.rule if request.url_rule is not None else UNMATCHED


def install_request_telemetry(app: Flask) -> None:
    """Install the request id, the request log line and the HTTP metrics on ``app``."""

    @app.before_request
    def _start() -> None:
        g.request_started = time.perf_counter()
        g.request_id = request_id_of(request.headers.get(REQUEST_ID_HEADER))
        bind_context(request_id=g.request_id)

    @app.after_request
    def _finish(response: Response) -> Response:
        seconds = time.perf_counter() - g.get("request_started", time.perf_counter())
        route = route_template()
        request_id = g.get("request_id") or request_id_of(None)
        response.headers[REQUEST_ID_HEADER] = request_id
        metrics.HTTP_REQUESTS.labels(method=request.method, route=route, status=str(response.status_code)).inc()
        metrics.HTTP_LATENCY.labels(method=request.method, route=route).observe(seconds)
        principal: Principal | None = g.get("principal")
        log.info(
            "request",
            extra={
                "request_id": request_id,
                "method": request.method,
                "route": route,
                "path": request.path,
                "status": response.status_code,
                "duration_ms": round(seconds * 1000, 1),
                "tenant_id": str(principal.tenant_id) if principal else None,
                "user_id": str(principal.user_id) if principal else None,
                "role": principal.role if principal else None,
                "ip": request.remote_addr,
                "user_agent": (request.user_agent.string or "")[:200],
            },
        )
        return response

    @app.teardown_request
    def _forget(_error: BaseException | None) -> None:
        clear_context()
