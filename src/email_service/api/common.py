"""Helpers shared by the blueprints: the documented error responses, camelCase mapping."""

from __future__ import annotations

import re
from typing import Any

#: Error responses documented on every authenticated operation.
AUTH_ERRORS = [400, 401, 403, 404, 429]
_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


def snake(data: dict[str, Any]) -> dict[str, Any]:
    """``{"accountName": x}`` -> ``{"account_name": x}`` for the service layer."""
    return {_CAMEL.sub("_", key).lower(): value for key, value in data.items()}


def pagination(page: Any) -> dict[str, int]:
    """The ``pagination`` object of a list body from a services ``Page``: ``{"total", "limit", "offset"}``."""
    return {"total": page.total, "limit": page.limit, "offset": page.offset}
