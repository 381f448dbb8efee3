"""The OpenAPI document and its docs page (DESIGN.md section 5).

* :func:`finish_document` -- apiflask spec processor: canonical paths only, one entry per tag, the input rules
  apiflask leaves out, the rate-limit headers, bearer security.
* :func:`install_docs_assets` -- Swagger UI's JS, CSS and icon served by the app itself from the installed
  ``flask-swagger-ui`` distribution, so ``/api/v1/docs`` renders with no internet.
* :func:`account_links`, :data:`MESSAGE_LINKS` -- OpenAPI links (OpenAPI 3.0.3 section 4.7.20) from a response to
  the operations on the resource it names; clients and schemathesis' stateful phase follow them.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any

from apiflask import APIFlask
from flask import Blueprint, Response, send_from_directory

from .gate import MAX_JSON_DEPTH
from .schemas import SCHEMA_RULES
from .uploads import STREAMED_BODIES

CANONICAL_PREFIX = "/api/v1"
ALIAS_PREFIX = "/api"
#: Operations that need no credentials (everything else answers 401 without them).
OPEN_PATHS = frozenset({"/health", f"{CANONICAL_PREFIX}/test/generate-token"})
DOCS_ASSETS_PATH = f"{CANONICAL_PREFIX}/docs/assets"
DESCRIPTION = (
    "Multi-tenant email backend: accounts, mirrored IMAP mailboxes, messages, attachments.\n\n"
    "Every route is also served under `/api/...`. Requests are refused with 400 when they hold what this document "
    "does not allow: query parameters an operation does not list, JSON bodies nested deeper than "
    f"{MAX_JSON_DEPTH} levels or with `NaN`/`Infinity`, text with NUL or lone surrogates (U+D800-U+DFFF), "
    "booleans other than `true`/`false`, unknown body fields. Authenticated responses carry `X-RateLimit-Limit`, "
    "`X-RateLimit-Remaining` and `X-RateLimit-Reset` (epoch seconds); a 429 carries `Retry-After` (seconds)."
)
_RATE_HEADERS = {
    "X-RateLimit-Limit": ("Requests allowed per window (per user)", "integer"),
    "X-RateLimit-Remaining": ("Requests left in the current window", "integer"),
    "X-RateLimit-Reset": ("When the window resets, epoch seconds", "integer"),
}
_RETRY_AFTER = {"Retry-After": ("Seconds to wait before the next request (RFC 9110 section 10.2.3)", "integer")}
ACCOUNT_OPERATIONS = (
    "getAccount",
    "updateAccount",
    "deleteAccount",
    "startSync",
    "getSyncStatus",
    "testConnection",
    "listFolders",
    "listMessages",
)


def account_links(account_id: str) -> dict[str, Any]:
    """Links to every operation on one account, whose id is at the runtime expression ``account_id`` (e.g.
    ``$response.body#/id``)."""
    return {name: {"operationId": name, "parameters": {"account_id": account_id}} for name in ACCOUNT_OPERATIONS}


#: Links from a message list to the first message, its raw form and its attachments.
MESSAGE_LINKS = {
    name: {"operationId": name, "parameters": {"message_id": "$response.body#/messages/0/id"}}
    for name in ("getMessage", "getRawMessage", "listAttachments")
}
#: Links from an attachment list to the first attachment's operations.
ATTACHMENT_LINKS = {
    name: {"operationId": name, "parameters": {"attachment_id": "$response.body#/data/0/id"}}
    for name in ("downloadAttachment", "getAttachmentMetadata")
}


def finish_document(spec: dict[Any, Any] | str) -> dict[Any, Any] | str:
    """Spec processor: keep the canonical paths (not the ``/api`` aliases) and one entry per tag, then add what
    apiflask leaves out (:func:`_document_input_rules`, :func:`_document_rate_limit_headers`)."""
    if not isinstance(spec, dict):
        return spec
    spec["paths"] = {
        path: item
        for path, item in spec.get("paths", {}).items()
        if path.startswith(CANONICAL_PREFIX) or not path.startswith(ALIAS_PREFIX)
    }
    tags: dict[str, Any] = {}
    for tag in spec.get("tags", []):  # each blueprint is registered twice (canonical and alias prefix)
        tags.setdefault(tag["name"], tag)
    spec["tags"] = list(tags.values())
    spec.setdefault("info", {})["description"] = DESCRIPTION
    _document_streamed_bodies(spec)
    _document_input_rules(spec)
    _document_rate_limit_headers(spec)
    return spec


def _document_streamed_bodies(spec: dict[Any, Any]) -> None:
    """The multipart bodies of the streamed-upload operations (:func:`email_service.api.uploads.streamed_upload`),
    which apiflask cannot see because the view reads its body itself."""
    for item in spec.get("paths", {}).values():
        for operation in item.values():
            body = STREAMED_BODIES.get(operation.get("operationId", ""))
            if body is not None:
                operation["requestBody"] = body


def _document_input_rules(spec: dict[Any, Any]) -> None:
    """Every JSON body is required (an empty POST or PUT is a 400), path ids are UUIDs (routes use the ``uuid``
    converter; anything else is a 404), the body rules of :data:`SCHEMA_RULES`, and every operation but the open
    ones needs the bearer token."""
    for path, item in spec.get("paths", {}).items():
        for operation in item.values():
            if path not in OPEN_PATHS:
                operation["security"] = [{"BearerAuth": []}]
            if "requestBody" in operation:
                operation["requestBody"]["required"] = True
            for parameter in operation.get("parameters", []):
                if parameter.get("in") == "path" and parameter["name"].endswith("_id"):
                    parameter["schema"] = {"type": "string", "format": "uuid"}
    schemas = spec.get("components", {}).get("schemas", {})
    for name, rules in SCHEMA_RULES.items():
        if name in schemas:
            schemas[name].update(rules)


def _document_rate_limit_headers(spec: dict[Any, Any]) -> None:
    """``X-RateLimit-*`` on the success responses and ``Retry-After`` on the 429 of every rate-limited operation."""
    headers = {**_RATE_HEADERS, **_RETRY_AFTER}
    spec.setdefault("components", {})["headers"] = {
        name: {"description": text, "schema": {"type": kind}} for name, (text, kind) in headers.items()
    }
    for path, item in spec.get("paths", {}).items():
        if path == "/health":
            continue
        for operation in item.values():
            for code, response in operation.get("responses", {}).items():
                names = _RATE_HEADERS if code.startswith("2") else _RETRY_AFTER if code == "429" else {}
                if names:
                    refs = {name: {"$ref": f"#/components/headers/{name}"} for name in names}
                    response["headers"] = {**response.get("headers", {}), **refs}


def _swagger_ui_dist() -> Path:
    return Path(str(files("flask_swagger_ui") / "dist"))


def install_docs_assets(app: APIFlask) -> None:
    """Serve Swagger UI's assets (from the ``flask-swagger-ui`` distribution) under :data:`DOCS_ASSETS_PATH` and
    point apiflask's docs page at them instead of a CDN."""
    dist = _swagger_ui_dist()
    app.config.update(
        SWAGGER_UI_CSS=f"{DOCS_ASSETS_PATH}/swagger-ui.css",
        SWAGGER_UI_BUNDLE_JS=f"{DOCS_ASSETS_PATH}/swagger-ui-bundle.js",
        SWAGGER_UI_STANDALONE_PRESET_JS=f"{DOCS_ASSETS_PATH}/swagger-ui-standalone-preset.js",
        DOCS_FAVICON=f"{DOCS_ASSETS_PATH}/favicon-32x32.png",
    )
    assets = Blueprint("docs_assets", __name__)

    @assets.get(f"{DOCS_ASSETS_PATH}/<path:filename>")
    def docs_asset(filename: str) -> Response:
        response = send_from_directory(dist, filename, max_age=86400)
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    app.register_blueprint(assets)
