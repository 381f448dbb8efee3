"""Root exception and the API-facing error kinds.

Every error the service raises on purpose derives from :class:`EmailServiceError`.  The API maps the kinds below
to the seed status codes and the body ``{"error": <kind>, "message": <sentence>, "details"?: {...}}``
(DESIGN.md section 5).  Kinds are grouped by what the caller should do: fix input (400/409/413/415), authenticate
(401), stop trying (403/404), slow down (429).
"""

from __future__ import annotations

from typing import Any


class EmailServiceError(Exception):
    """Root of every deliberate error of this package.

    Attributes:
        status: HTTP status the API answers with (500 for internal kinds).
        kind: short, stable value of the ``error`` field of the response body.
        message: one human sentence, safe to show (never a secret, never exception text of a library).
        details: optional field errors, ``{field: [sentence, ...]}``.
    """

    status = 500
    kind = "Internal error"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_body(self) -> dict[str, Any]:
        """Response body: ``{"error", "message"[, "details"]}``."""
        body: dict[str, Any] = {"error": self.kind, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body


class InvalidInput(EmailServiceError):
    """The request is malformed or fails validation (400, seed 000/001 "Invalid request")."""

    status = 400
    kind = "Invalid request"


class Unauthorized(EmailServiceError):
    """No or bad credentials (401, seed 001)."""

    status = 401
    kind = "Unauthorized"


class Forbidden(EmailServiceError):
    """Authenticated, but the role or owner does not allow it (403, seed 001)."""

    status = 403
    kind = "Forbidden"


class NotFound(EmailServiceError):
    """The resource does not exist for this caller; also used for other tenants' ids (404)."""

    status = 404
    kind = "Not found"


class Conflict(EmailServiceError):
    """The request clashes with existing state, e.g. a duplicate address (409, seed 000)."""

    status = 409
    kind = "Conflict"


class PayloadTooLarge(EmailServiceError):
    """A body or file is over its limit (413, seed 004)."""

    status = 413
    kind = "Payload too large"


class UnsupportedMediaType(EmailServiceError):
    """The request body is not of a content type the endpoint accepts (415)."""

    status = 415
    kind = "Unsupported media type"


class RateLimited(EmailServiceError):
    """Too many requests (429, seed 000 body)."""

    status = 429
    kind = "Rate limit exceeded"


class ConfigurationError(EmailServiceError):
    """A setting is missing, malformed or unsafe for the selected mode; the message names the setting."""

    status = 500
    kind = "Configuration error"


class ServiceUnavailable(EmailServiceError):
    """A service this request needs is down for now, e.g. the virus scanner (503); the message says which."""

    status = 503
    kind = "Service unavailable"


class MailServerError(EmailServiceError):
    """A mail server could not be reached or refused us; the message carries the server's evidence (502)."""

    status = 502
    kind = "Mail server error"


class CannotCalculateChanges(EmailServiceError):
    """The client's state is older than the pruned change log (or not a state of this account): it must reload
    its lists (410; JMAP RFC 8620 section 5.2 ``cannotCalculateChanges``)."""

    status = 410
    kind = "cannotCalculateChanges"
