"""Helpers shared by the blueprints: JSON body rules, the documented error responses, camelCase mapping."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

from flask import request

from email_service.errors import UnsupportedMediaType

#: Error responses documented on every authenticated operation.
AUTH_ERRORS = [400, 401, 403, 404, 429]
_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")
#: JSON Schema keywords the OpenAPI document adds to a schema component, by schema class name: rules a schema's
#: validators enforce that marshmallow cannot describe (at least one field; either this or that).
SCHEMA_RULES: dict[str, dict[str, Any]] = {}
S = TypeVar("S", bound=type)


def document_rules(**rules: Any) -> Callable[[S], S]:
    """Class decorator: publish ``rules`` (JSON Schema keywords) on the schema's component in the OpenAPI document,
    so that the document refuses what the schema's validators refuse."""

    def register(schema: S) -> S:
        SCHEMA_RULES[schema.__name__] = rules
        return schema

    return register


def require_json_body() -> None:
    """A write with a body must be ``application/json`` (415 otherwise, DESIGN.md section 5)."""
    has_body = request.method in ("POST", "PUT", "PATCH") and bool(request.content_length or request.data)
    if has_body and not request.is_json:
        raise UnsupportedMediaType("Content-Type must be application/json")


def snake(data: dict[str, Any]) -> dict[str, Any]:
    """``{"accountName": x}`` -> ``{"account_name": x}`` for the service layer."""
    return {_CAMEL.sub("_", key).lower(): value for key, value in data.items()}


def pagination(page: Any) -> dict[str, int]:
    """The ``pagination`` object of a list body from a services ``Page``: ``{"total", "limit", "offset"}``."""
    return {"total": page.total, "limit": page.limit, "offset": page.offset}
