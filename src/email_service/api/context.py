"""Access to the process's :class:`ServiceContext` from a request."""

from __future__ import annotations

from flask import current_app

from email_service.services.context import ServiceContext

EXTENSION_KEY = "email_service"


def service_context() -> ServiceContext:
    """The context :func:`email_service.app.create_app` stored on the application."""
    ctx: ServiceContext = current_app.extensions[EXTENSION_KEY]
    return ctx
