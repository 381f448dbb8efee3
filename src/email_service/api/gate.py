"""The checks every request passes before its view, in the order a caller meets them (DESIGN.md section 5):

1. credentials (401) and the role the view declares with :func:`~email_service.api.auth.verify_role` (403):
   :func:`~email_service.api.auth.require_authentication`, on blueprints that need a caller;
2. query parameter names: only those the operation documents, on every operation, also on those without query
   parameters (400 naming the unknown one; a client must not believe ``?isRead=false`` filters);
3. a request body: ``application/json`` (415), UTF-8 JSON text (RFC 8259) without ``NaN``/``Infinity``, nested at
   most :data:`MAX_JSON_DEPTH` arrays/objects deep (400 otherwise, never a parser's RecursionError); except for the
   views marked :func:`~email_service.api.uploads.streamed_upload`, whose body must be ``multipart/form-data``
   (415) and is read by the view as it streams in, bounded by the attachment limit instead of the 1 MB JSON one.

The view's input schemas then check the values (:mod:`email_service.api.fields`).  :func:`guard` installs these
checks on a blueprint; every blueprint of the API is made through it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from apiflask import APIBlueprint
from flask import current_app, request

from email_service.errors import InvalidInput, UnsupportedMediaType

from .auth import require_authentication
from .context import service_context
from .uploads import require_multipart

#: Deepest nesting of arrays and objects in a request body (``{"a": [1]}`` is 2 deep).  No request schema of the
#: API nests more than a few levels.
MAX_JSON_DEPTH = 32
BODY_METHODS = ("POST", "PUT", "PATCH")


def guard(bp: APIBlueprint, *, authenticated: bool = True) -> APIBlueprint:
    """Install the request checks of this module on ``bp`` (credentials and role first when ``authenticated``)
    and return it."""
    if authenticated:
        bp.before_request(require_authentication)
    bp.before_request(refuse_unknown_query_parameters)
    bp.before_request(check_json_body)
    return bp


def documented_query_parameters(view: Callable[..., Any]) -> frozenset[str]:
    """Names of the query parameters of a view: the fields of its ``@input(..., location="query")`` schemas, as
    apiflask records them for the OpenAPI document (so the document and this check cannot disagree)."""
    names: set[str] = set()
    for schema, location in getattr(view, "_spec", {}).get("args") or []:
        if location == "query":
            instance = schema() if isinstance(schema, type) else schema
            names.update(field.data_key or name for name, field in instance.load_fields.items())
    return frozenset(names)


def refuse_unknown_query_parameters() -> None:
    """``before_request``: a query parameter the operation does not document is a 400 naming it.

    Raises:
        InvalidInput: ``{"message": "Unknown query parameter 'q'", "details": {"q": [...]}}``.
    """
    if request.method == "OPTIONS" or not request.args:
        return
    view = current_app.view_functions.get(request.endpoint or "")
    if view is None:
        return
    unknown = sorted(set(request.args) - documented_query_parameters(view))
    if unknown:
        raise InvalidInput(
            f"Unknown query parameter '{unknown[0]}'",
            details={name: ["Unknown query parameter."] for name in unknown},
        )


def check_json_body() -> None:
    """``before_request``: a POST/PUT/PATCH body is JSON that :func:`parse_json` takes.

    Raises:
        UnsupportedMediaType: a body whose Content-Type is not ``application/json`` (or ``+json``).
        InvalidInput: see :func:`parse_json`.
    """
    if request.method not in BODY_METHODS:
        return
    view = current_app.view_functions.get(request.endpoint or "")
    if getattr(view, "streamed_upload", False):
        require_multipart(service_context().settings.max_attachment_size)
        return
    raw = request.get_data(cache=True)
    if not raw:
        return
    if not request.is_json:
        raise UnsupportedMediaType("Content-Type must be application/json")
    parse_json(raw)


def parse_json(raw: bytes) -> Any:
    """Parse a request body as JSON text (RFC 8259): UTF-8, no ``NaN``/``Infinity``, at most
    :data:`MAX_JSON_DEPTH` levels of arrays/objects.

    Raises:
        InvalidInput: "Invalid JSON body." or "JSON body is nested deeper than 32 levels".
    """
    try:
        value = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except RecursionError:  # the C scanner's own bound (about 1,000 levels) is reached before ours is checked
        raise _too_deep() from None
    except ValueError:  # JSONDecodeError, UnicodeDecodeError, NaN/Infinity, an integer over 4,300 digits
        raise InvalidInput("Invalid JSON body.") from None
    if _deeper_than(value, MAX_JSON_DEPTH):
        raise _too_deep()
    return value


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _too_deep() -> InvalidInput:
    return InvalidInput(f"JSON body is nested deeper than {MAX_JSON_DEPTH} levels")


def _deeper_than(value: Any, limit: int) -> bool:
    """True if arrays/objects in ``value`` nest more than ``limit`` levels (iterative: no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False
