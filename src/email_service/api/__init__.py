"""HTTP API: blueprints (one module per resource), schemas, auth middleware, error mapping, OpenAPI.

Every blueprint is served under the canonical ``/api/v1`` prefix and again under ``/api`` (DESIGN.md section 2);
the OpenAPI document lists the canonical paths only.
"""

from __future__ import annotations

from typing import Any

from apiflask import APIBlueprint, APIFlask
from sqlalchemy import text

from email_service import __version__

from . import accounts, actions, dev, folders, mailbox, message_changes, sync
from .common import SCHEMA_RULES
from .context import service_context
from .schemas import HealthOut

CANONICAL_PREFIX = "/api/v1"
ALIAS_PREFIX = "/api"
#: Operations that need no credentials (everything else answers 401 without them).
OPEN_PATHS = frozenset({"/health", f"{CANONICAL_PREFIX}/test/generate-token"})


def _health_blueprint() -> APIBlueprint:
    bp = APIBlueprint("health", __name__, tag="Health")

    @bp.get("/health")
    @bp.output(HealthOut)
    @bp.doc(summary="Liveness and database check (seed 000)", responses=[503])
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
    """Register the blueprints on ``app`` under both prefixes, the health check and the spec filter."""
    app.register_blueprint(_health_blueprint())
    blueprints = [accounts.bp, sync.bp, mailbox.bp, message_changes.bp, folders.bp, actions.bp]
    if enable_dev_endpoints:
        blueprints.append(dev.bp)
    for bp in blueprints:
        app.register_blueprint(bp, url_prefix=CANONICAL_PREFIX)
        app.register_blueprint(bp, url_prefix=ALIAS_PREFIX, name=f"{bp.name}_alias")

    @app.spec_processor
    def _canonical_paths_only(spec: dict[Any, Any] | str) -> dict[Any, Any] | str:
        if not isinstance(spec, dict):
            return spec
        spec["paths"] = {
            path: item
            for path, item in spec.get("paths", {}).items()
            if path.startswith(CANONICAL_PREFIX) or not path.startswith(ALIAS_PREFIX)
        }
        _document_input_rules(spec)
        return spec


def _document_input_rules(spec: dict[Any, Any]) -> None:
    """Add the input rules apiflask leaves out of the document: every JSON body is required (an empty POST or PUT
    is a 400), path ids are UUIDs (routes use the ``uuid`` converter; anything else is a 404), the rules schemas
    publish with :func:`~email_service.api.common.document_rules` (e.g. an update changes at least one field), and
    every operation but the open ones needs the bearer token."""
    for path, item in spec.get("paths", {}).items():
        for operation in item.values():
            if path not in OPEN_PATHS:
                operation["security"] = [{"BearerAuth": []}]
            if "requestBody" in operation:
                operation["requestBody"]["required"] = True
            for parameter in operation.get("parameters", []):
                if parameter.get("in") == "path" and parameter["name"].endswith("_id"):
                    parameter["schema"] = {"type": "string", "format": "uuid"}
    components = spec.get("components", {}).get("schemas", {})
    for name, rules in SCHEMA_RULES.items():
        if name in components:
            components[name].update(rules)
