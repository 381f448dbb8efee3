"""Authentication middleware (seed 001): bearer JWT or trusted headers, tenant context, roles, request log.

* ``Authorization: Bearer <JWT>`` (HS256; ``exp`` required; ``tenant_id``, ``user_id``, ``role`` claims).
* ``X-Tenant-ID`` + ``X-User-ID`` only when ``AUTH_TRUST_HEADERS`` is on; the role is then always ``user``
  (a role never comes from a header, DESIGN.md section 2).

The principal is resolved once per request and kept on ``flask.g``.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, Response, current_app, g, request

from email_service.errors import EmailServiceError, Forbidden, Unauthorized
from email_service.security.tokens import Principal, decode_jwt_token, parse_uuid
from email_service.services.access import verify_resource_access

from .context import service_context

log = logging.getLogger("email_service.request")
F = TypeVar("F", bound=Callable[..., Any])
MISSING_AUTH = "Bearer token or X-Tenant-ID and X-User-ID headers required"

__all__ = [
    "current_principal",
    "extract_bearer_token",
    "install_request_logging",
    "try_principal",
    "verify_resource_access",
    "verify_role",
    "verify_tenant_context",
]


def extract_bearer_token() -> str | None:
    """The token of an ``Authorization: Bearer`` header, ``None`` when there is no such header.

    Raises:
        Unauthorized: an Authorization header that is not a well-formed bearer credential.
    """
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Authorization header must be 'Bearer <token>'")
    return token.strip()


def _resolve() -> Principal:
    ctx = service_context()
    token = extract_bearer_token()
    if token is not None:
        return decode_jwt_token(ctx.tokens, token)
    tenant = request.headers.get("X-Tenant-ID")
    user = request.headers.get("X-User-ID")
    if ctx.settings.auth_trust_headers and tenant is not None and user is not None:
        return Principal(parse_uuid(tenant, "Tenant ID"), parse_uuid(user, "User ID"), "user")
    raise Unauthorized(MISSING_AUTH)


def current_principal() -> Principal:
    """The caller of this request (resolved and cached on first use).

    Raises:
        Unauthorized: no or bad credentials (401).
        InvalidInput: a trusted header that is not a UUID (400).
    """
    principal: Principal | None = g.get("principal")
    if principal is None:
        principal = _resolve()
        g.principal = principal
    return principal


def try_principal() -> Principal | None:
    """The caller if the request authenticates, else ``None`` (for rate-limit keys and logs)."""
    try:
        return current_principal()
    except EmailServiceError:
        return None


def verify_tenant_context(view: F) -> F:
    """Decorator: the view runs only for an authenticated caller with a valid tenant context."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        current_principal()
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def verify_role(*roles: str) -> Callable[[F], F]:
    """Decorator: the caller's role must be one of ``roles`` (403 "Insufficient permissions" otherwise).

    The roles are also recorded on the view (``required_roles``), so that :func:`require_authentication` checks
    them before anything else of the request is looked at: a non-admin gets 403 whatever the query string holds.
    """

    def decorator(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            _check_role(roles)
            return view(*args, **kwargs)

        wrapper.required_roles = roles  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorator


def _check_role(roles: tuple[str, ...]) -> None:
    if current_principal().role not in roles:
        raise Forbidden(f"Insufficient permissions. Required role: {' or '.join(roles)}")


def install_request_logging(app: Flask) -> None:
    """Log one line per request: method, path, status, duration, user, tenant, role, ip, user agent.

    Never logs headers, bodies or query strings (they may hold secrets).
    """

    @app.before_request
    def _start_timer() -> None:
        g.request_started = time.perf_counter()

    @app.after_request
    def _log(response: Response) -> Response:
        principal: Principal | None = g.get("principal")
        started = g.get("request_started", time.perf_counter())
        log.info(
            "Request: method=%s endpoint=%s status=%s duration_ms=%.1f user_id=%s tenant_id=%s role=%s ip=%s ua=%r",
            request.method,
            request.path,
            response.status_code,
            (time.perf_counter() - started) * 1000,
            principal.user_id if principal else "-",
            principal.tenant_id if principal else "-",
            principal.role if principal else "-",
            request.remote_addr,
            (request.user_agent.string or "")[:200],
        )
        return response


def require_authentication() -> None:
    """``before_request`` hook of authenticated blueprints: resolve the caller (401) and check the role the view
    declares with :func:`verify_role` (403) before any input is validated."""
    if request.method == "OPTIONS":
        return
    current_principal()
    view = current_app.view_functions.get(request.endpoint or "")
    roles: tuple[str, ...] | None = getattr(view, "required_roles", None)
    if roles:
        _check_role(roles)
