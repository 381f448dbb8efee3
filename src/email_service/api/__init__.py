"""HTTP API: blueprints (one module per resource), schemas, auth middleware, error mapping, OpenAPI.

Every blueprint is served under the canonical ``/api/v1`` prefix and again under ``/api`` (DESIGN.md section 2);
the OpenAPI document lists the canonical paths only.  Every blueprint is made through
:func:`email_service.api.gate.guard` (credentials, role, query parameter names, JSON body).
"""

from __future__ import annotations

from apiflask import APIFlask

from . import (
    accounts,
    actions,
    attachments,
    changes,
    compose,
    dev,
    events,
    folders,
    mailbox,
    message_changes,
    outbox,
    search,
    sync,
    webhooks,
)  # fmt: skip
from .openapi import ALIAS_PREFIX, CANONICAL_PREFIX, finish_document, install_docs_assets
from .ops import ops_blueprint


def register_api(app: APIFlask, *, enable_dev_endpoints: bool) -> None:
    """Register the blueprints on ``app`` under both prefixes, the operations endpoints (``/health``, ``/ready``,
    ``/metrics``), the docs page's assets and the spec processor."""
    app.register_blueprint(ops_blueprint())
    blueprints = [
        accounts.bp, sync.bp, search.bp, mailbox.bp, attachments.bp, message_changes.bp, folders.bp, actions.bp,
        compose.bp, outbox.bp, changes.bp, events.bp, webhooks.bp,
    ]  # fmt: skip
    if enable_dev_endpoints:
        blueprints.append(dev.bp)
    for bp in blueprints:
        app.register_blueprint(bp, url_prefix=CANONICAL_PREFIX)
        app.register_blueprint(bp, url_prefix=ALIAS_PREFIX, name=f"{bp.name}_alias")
    install_docs_assets(app)
    app.spec_processor(finish_document)
