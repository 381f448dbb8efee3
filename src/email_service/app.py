"""Application factory: ``create_app(settings=None)`` builds the Flask app for either runtime mode."""

from __future__ import annotations

from apiflask import APIFlask
from flask_cors import CORS

from email_service import __version__
from email_service.api import register_api
from email_service.api.context import EXTENSION_KEY
from email_service.api.errors import install_error_handlers
from email_service.api.json_body import OrjsonProvider
from email_service.api.limits import install_rate_limits
from email_service.api.schemas import ErrorOut
from email_service.api.telemetry import REQUEST_ID_HEADER, install_request_telemetry
from email_service.config import Settings
from email_service.services.context import ServiceContext, build_context
from email_service.services.jobs import JobQueue

CORS_HEADERS = ["Content-Type", "Authorization", "X-Tenant-ID", "X-User-ID", "Idempotency-Key", REQUEST_ID_HEADER]
EXPOSED_HEADERS = [
    REQUEST_ID_HEADER,
    "Retry-After",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "Location",
]


def create_app(
    settings: Settings | None = None, *, context: ServiceContext | None = None, jobs: JobQueue | None = None
) -> APIFlask:
    """Build the API application.

    Args:
        settings: validated settings; read from the environment when omitted.
        context: an existing service context to share (tests, the ``serve`` command); built when omitted.
        jobs: the job queue the API hands sync requests to (ignored when ``context`` is given).

    Raises:
        ConfigurationError: the settings are unsafe for production (see :mod:`email_service.config`).
    """
    settings = settings or (context.settings if context else Settings.from_env())
    context = context or build_context(settings, jobs=jobs)

    app = APIFlask(
        "email_service",
        title="email_service API",
        version=__version__,
        spec_path="/api/v1/openapi.json",
        docs_path="/api/v1/docs",
        json_errors=True,
    )
    app.config.update(
        VALIDATION_ERROR_STATUS_CODE=400,
        VALIDATION_ERROR_DESCRIPTION="Invalid request",
        MAX_CONTENT_LENGTH=1024 * 1024,
        SPEC_FORMAT="json",
        DOCS_UI="swagger-ui",
        SECURITY_SCHEMES={
            "BearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
        },
        HTTP_ERROR_SCHEMA=ErrorOut,
        VALIDATION_ERROR_SCHEMA=ErrorOut,
    )
    app.json = OrjsonProvider(app)  # bodies written by orjson, keys sorted as Flask's provider does
    app.security_schemes = {"BearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}
    app.extensions[EXTENSION_KEY] = context

    install_error_handlers(app)
    install_request_telemetry(app)
    CORS(
        app,
        resources={
            r"/api/*": {"origins": list(settings.cors_origins)},
            "/health": {"origins": list(settings.cors_origins)},
        },
        methods=["GET", "POST", "PUT", "DELETE", "OPTIONS"],
        allow_headers=CORS_HEADERS,
        expose_headers=EXPOSED_HEADERS,
        max_age=600,
    )
    install_rate_limits(app, settings)
    register_api(app, enable_dev_endpoints=not settings.is_production)
    return app
