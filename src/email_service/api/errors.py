"""Error mapping: every error leaves as ``{"error", "message"[, "details"]}`` with the seed status codes.

5xx bodies never carry exception text (DESIGN.md section 5); the exception is logged with its traceback instead.
"""

from __future__ import annotations

import logging
from typing import Any

from apiflask import APIFlask, HTTPError
from werkzeug.exceptions import HTTPException

from email_service.errors import EmailServiceError

log = logging.getLogger("email_service.api")

_KINDS = {
    400: "Invalid request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Payload too large",
    415: "Unsupported media type",
    416: "Range not satisfiable",
    429: "Rate limit exceeded",
    503: "Service unavailable",
}


def _first_message(detail: Any) -> str | None:
    """The first human sentence in a nested marshmallow error structure."""
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):
        for item in detail:
            if (found := _first_message(item)) is not None:
                return found
    if isinstance(detail, dict):
        for key, value in detail.items():
            found = _first_message(value)
            if found is not None:
                return found if key in ("json", "query", "_schema", "form", "files", "path") else _field(key, found)
    return None


def _field(name: Any, message: str) -> str:
    """Prefix the field name unless the sentence already names it ("Port must be ..." names ``port``)."""
    text = str(message)
    return text if str(name).lower() in text.lower() else f"{name}: {text}"


def _body(status: int, message: str, details: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "error": _KINDS.get(status, "Server error" if status >= 500 else "Error"),
        "message": message,
    }
    if details:
        body["details"] = details
    return body


def install_error_handlers(app: APIFlask) -> None:
    """Map :class:`EmailServiceError`, apiflask/webargs validation errors and werkzeug errors to JSON."""

    @app.error_processor
    def _http_error(error: HTTPError) -> tuple[dict[str, Any], int, Any]:
        status = error.status_code
        if status == 422 or (status == 400 and error.detail):
            status = 400
            message = _first_message(error.detail) or "Invalid request"
            details = error.detail.get("json") or error.detail.get("query") or error.detail
            return _body(400, message, details), 400, error.headers
        message = error.message or _KINDS.get(status, "Error")
        if status >= 500:
            message = "Internal server error"
        return _body(status, message), status, error.headers

    @app.errorhandler(EmailServiceError)
    def _service_error(error: EmailServiceError) -> tuple[dict[str, Any], int]:
        if error.status >= 500 and error.status not in (502, 503):
            log.error("internal error: %s", type(error).__name__)
            return _body(500, "Internal server error"), 500
        body = error.to_body()
        return body, error.status

    @app.errorhandler(HTTPException)
    def _werkzeug_error(error: HTTPException) -> tuple[dict[str, Any], int, list[tuple[str, str]]]:
        status = error.code or 500
        if status >= 500:
            return _body(500, "Internal server error"), 500, []
        # Keep the exception's own headers (405 must carry Allow, RFC 9110 section 15.5.6), not its HTML type.
        headers = [(name, value) for name, value in error.get_headers() if name.lower() != "content-type"]
        return _body(status, error.description or _KINDS.get(status, "Error")), status, headers

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> tuple[dict[str, Any], int]:
        log.exception("unhandled error", exc_info=error)
        return _body(500, "Internal server error"), 500
