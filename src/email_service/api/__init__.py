"""HTTP API: blueprints (one module per resource), schemas, auth middleware, error mapping, OpenAPI.

Every blueprint is served under the canonical ``/api/v1`` prefix and again under ``/api`` (DESIGN.md section 2);
the OpenAPI document lists the canonical paths only.  Every blueprint is made through
:func:`email_service.api.gate.guard` (credentials, role, query parameter names, JSON body).
"""

from __future__ import annotations

from typing import Any

from apiflask import APIBlueprint, APIFlask
from sqlalchemy import text

from email_service import __version__

from . import accounts, actions, attachments, dev, examples, folders, mailbox, message_changes, sync
from .context import service_context
from .gate import guard
from .openapi import ALIAS_PREFIX, CANONICAL_PREFIX, finish_document, install_docs_assets
from .schemas import HealthOut


def _health_blueprint() -> APIBlueprint:
    tag = {"name": "Health", "description": "Liveness of the service and its database"}
    bp = guard(APIBlueprint("health", __name__, tag=tag), authenticated=False)

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

    return bp


def register_api(app: APIFlask, *, enable_dev_endpoints: bool) -> None:
    """Register the blueprints on ``app`` under both prefixes, the health check, the docs page's assets and the
    spec processor."""
    app.register_blueprint(_health_blueprint())
    blueprints = [accounts.bp, sync.bp, mailbox.bp, attachments.bp, message_changes.bp, folders.bp, actions.bp]
    if enable_dev_endpoints:
        blueprints.append(dev.bp)
    for bp in blueprints:
        app.register_blueprint(bp, url_prefix=CANONICAL_PREFIX)
        app.register_blueprint(bp, url_prefix=ALIAS_PREFIX, name=f"{bp.name}_alias")
    install_docs_assets(app)
    app.spec_processor(finish_document)
