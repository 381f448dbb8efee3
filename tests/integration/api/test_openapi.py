"""The OpenAPI document (DESIGN.md section 5) and an OpenAPI-driven fuzz run of the real app with schemathesis:
no 5xx, and every response (status code, content type, body) is one the document promises."""

from __future__ import annotations

import io
import re
import uuid
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

import pytest
import schemathesis
from apiflask import APIFlask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from openapi_spec_validator import validate
from schemathesis import GenerationMode
from schemathesis.checks import ensure_resource_availability
from schemathesis.specs.openapi.checks import positive_data_acceptance

from email_service.services.context import ServiceContext
from tests.conftest import Caller
from tests.integration.api.conftest import Mailbox, create_account, seed_draft, seed_mailbox_rows

pytestmark = pytest.mark.integration

CANONICAL_PATHS = {
    "/health",
    "/ready",
    "/metrics",
    "/api/v1/accounts",
    "/api/v1/accounts/{account_id}",
    "/api/v1/accounts/{account_id}/sync",
    "/api/v1/accounts/{account_id}/test",
    "/api/v1/accounts/{account_id}/folders",
    "/api/v1/accounts/{account_id}/messages",
    "/api/v1/accounts/{account_id}/messages/search",
    "/api/v1/accounts/{account_id}/threads",
    "/api/v1/threads/{thread_id}",
    "/api/v1/admin/accounts",
    "/api/v1/messages/{message_id}",
    "/api/v1/messages/{message_id}/raw",
    "/api/v1/accounts/{account_id}/messages/batch",
    "/api/v1/accounts/{account_id}/actions",
    "/api/v1/folders/{folder_id}",
    "/api/v1/messages/{message_id}/attachments",
    "/api/v1/attachments/{attachment_id}",
    "/api/v1/attachments/{attachment_id}/download",
    "/api/v1/attachments/{attachment_id}/metadata",
    "/api/v1/test/generate-token",
    "/api/v1/compose/send",
    "/api/v1/accounts/{account_id}/send",
    "/api/v1/outbox",
    "/api/v1/outbox/{outbox_id}",
    "/api/v1/accounts/{account_id}/changes",
    "/api/v1/events",
    "/api/v1/webhooks",
    "/api/v1/webhooks/{webhook_id}",
    "/api/v1/webhooks/{webhook_id}/deliveries",
}
METHODS = {"get", "put", "post", "delete", "patch"}
#: Operations endpoints: no rate limit, no bearer token of a tenant user, no input.
OPS_PATHS = ("/health", "/ready", "/metrics")


@pytest.fixture
def spec(client: FlaskClient) -> dict[str, Any]:
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    body: dict[str, Any] = response.get_json()
    return body


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _json_schema(spec: dict[str, Any], response_or_body: dict[str, Any]) -> dict[str, Any]:
    return _resolve(spec, response_or_body["content"]["application/json"]["schema"])


def test_spec_is_openapi_3_with_the_canonical_paths_only(spec: dict[str, Any]) -> None:
    assert spec["openapi"].startswith("3.")
    assert spec["info"]["title"] and spec["info"]["version"]
    assert set(spec["paths"]) == CANONICAL_PATHS
    for path, item in spec["paths"].items():
        assert set(item) & METHODS, path
        for name in (p["name"] for op in item.values() for p in op.get("parameters", []) if p["in"] == "path"):
            assert f"{{{name}}}" in path


def test_every_operation_documents_its_bodies(spec: dict[str, Any]) -> None:
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            success = min(code for code in responses if code.startswith("2"))
            content = responses[success]["content"]
            if path.endswith("/raw"):
                assert set(content) == {"message/rfc822"}
            elif path == "/metrics":
                assert set(content) == {"text/plain"}
            elif path == "/api/v1/events":
                assert set(content) == {"text/event-stream"}
            elif path.endswith("/download"):
                assert set(content) == {"*/*"} and "206" in responses and "416" in responses  # the file's own type
            else:
                assert _json_schema(spec, responses[success]).get("properties"), f"{method} {path}"
            for code, response in responses.items():
                if code.startswith(("4", "5")):
                    error = _json_schema(spec, response)
                    assert set(error["required"]) == {"error", "message"}, f"{method} {path} {code}"
            if path not in OPS_PATHS:
                assert "429" in responses, f"{method} {path} documents the rate limit"
            if path in (*OPS_PATHS, "/api/v1/test/generate-token"):
                assert not operation.get("security"), f"{method} {path} needs no credentials"
            else:
                assert operation["security"] == [{"BearerAuth": []}], f"{method} {path}"
                assert "401" in responses
    assert spec["components"]["securitySchemes"]["BearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
    }


def test_account_schemas_match_the_seed(spec: dict[str, Any]) -> None:
    create = spec["paths"]["/api/v1/accounts"]["post"]
    body = _json_schema(spec, create["requestBody"])
    assert set(body["required"]) == {
        "accountName", "emailAddress", "protocol", "hostname", "port", "username", "password"}  # fmt: skip
    assert body["properties"]["port"]["minimum"] == 1 and body["properties"]["port"]["maximum"] == 65535
    assert body["properties"]["protocol"]["enum"] == ["imap", "pop3"]
    assert body["properties"]["encryption"]["default"] == "tls"
    assert body["properties"]["syncInterval"]["default"] == 300
    assert body["properties"]["isSyncEnabled"]["default"] is True
    assert body.get("additionalProperties") is False, "unknown fields are refused"
    created = _json_schema(spec, create["responses"]["201"])
    assert "password" not in created["properties"]
    assert {"id", "tenantId", "userId", "createdAt", "updatedAt", "isSyncing"} <= set(created["properties"])
    update = _json_schema(spec, spec["paths"]["/api/v1/accounts/{account_id}"]["put"]["requestBody"])
    assert not update.get("required") and "password" in update["properties"]
    listed = _json_schema(spec, spec["paths"]["/api/v1/accounts"]["get"]["responses"]["200"])
    assert set(listed["properties"]) == {"accounts", "pagination"}
    params = {p["name"]: p for p in spec["paths"]["/api/v1/accounts"]["get"]["parameters"]}
    assert (params["limit"]["schema"]["default"], params["limit"]["schema"]["maximum"]) == (100, 100)


def test_the_document_is_valid_openapi(spec: dict[str, Any], app_with: Callable[..., APIFlask]) -> None:
    validate(spec)  # openapi-spec-validator: OpenAPI 3.0 schema, unique tags and operationIds, path parameters
    production = {
        "FLASK_ENV": "production",
        "JWT_SECRET_KEY": "p" * 48,
        "AUTH_TRUST_HEADERS": "false",
        "CELERY_BROKER_URL": "redis://127.0.0.1:6379/13",  # production runs jobs on Celery
    }
    validate(app_with(**production).test_client().get("/api/v1/openapi.json").get_json())
    names = [tag["name"] for tag in spec["tags"]]
    assert len(names) == len(set(names)) and all(tag.get("description") for tag in spec["tags"])


def _operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield method, path, operation


def test_every_operation_has_a_summary_a_description_and_an_example(spec: dict[str, Any]) -> None:
    for method, path, operation in _operations(spec):
        assert operation.get("summary") and operation.get("description"), f"{method} {path}"
        assert operation.get("operationId"), f"{method} {path}"
        bodies = [*operation.get("requestBody", {}).get("content", {}).values()]
        bodies += [media for r in operation["responses"].values() for media in r.get("content", {}).values()]
        assert any("example" in media or "examples" in media for media in bodies), f"{method} {path}"


def _is_text(schema: dict[str, Any]) -> bool:
    kind = schema.get("type")
    return "string" in (kind if isinstance(kind, list) else [kind]) and schema.get("format") not in ("uuid", "binary")


def _text_properties(spec: dict[str, Any], schema: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, prop in _resolve(spec, schema).get("properties", {}).items():
        if _is_text(prop):
            yield name, prop
        elif prop.get("type") == "array" and _is_text(prop["items"]):
            yield f"{name}[]", prop["items"]
        elif "$ref" in prop or "properties" in prop:  # a nested object (e.g. keywords {add, remove})
            yield from ((f"{name}.{inner}", p) for inner, p in _text_properties(spec, prop))


def test_every_text_input_documents_the_text_rule(spec: dict[str, Any]) -> None:
    """Text fields of request bodies and query strings carry a pattern refusing NUL (or a stricter one); the rule
    on lone surrogates is in the document's description.  A plain String in a request schema fails here."""
    assert "lone surrogates" in spec["info"]["description"] and "32 levels" in spec["info"]["description"]
    checked = 0
    for method, path, operation in _operations(spec):
        texts = [(p["name"], p["schema"]) for p in operation.get("parameters", []) if p["in"] == "query"]
        texts = [(name, schema) for name, schema in texts if _is_text(schema)]
        for media in operation.get("requestBody", {}).get("content", {}).values():  # JSON and multipart bodies
            texts += list(_text_properties(spec, media["schema"]))
        for name, prop in texts:
            checked += 1
            assert prop.get("pattern"), f"{method} {path} {name}"
            assert not re.search(prop["pattern"], "a\x00b"), f"{method} {path} {name} admits NUL"
    # 10 text fields of each account body, the token's role, an upload's filename, a folder's name (create,
    # rename), the actions' state filter, and keywords.add[] and keywords.remove[] of PATCH, PUT and the batch;
    # the message list's from, to, sortBy, sortOrder and cursor, the search's q and sort, the thread list's cursor;
    # issue 9: subject, textBody, htmlBody of PUT, of a new draft and of an inline send, forwardMode of both, the
    # outbox's status filter; issue 12: the since of /changes, and a webhook's url, events[], secret and scope.
    assert checked == 56


def test_links_lead_from_a_new_account_to_its_operations(spec: dict[str, Any]) -> None:
    operation_ids = {operation["operationId"] for _, _, operation in _operations(spec)}
    created = spec["paths"]["/api/v1/accounts"]["post"]["responses"]["201"]["links"]
    assert set(created) == {
        "getAccount", "updateAccount", "deleteAccount", "startSync", "getSyncStatus", "testConnection",
        "listFolders", "listMessages"}  # fmt: skip
    assert {link["parameters"]["account_id"] for link in created.values()} == {"$response.body#/id"}
    listed = spec["paths"]["/api/v1/accounts/{account_id}/messages"]["get"]["responses"]["200"]["links"]
    assert listed["getMessage"]["parameters"] == {"message_id": "$response.body#/messages/0/id"}
    for _, _, operation in _operations(spec):
        for response in operation["responses"].values():
            assert {link["operationId"] for link in response.get("links", {}).values()} <= operation_ids


def test_rate_limit_headers_are_documented(spec: dict[str, Any]) -> None:
    for method, path, operation in _operations(spec):
        if path in OPS_PATHS:
            continue
        for code, response in operation["responses"].items():
            headers = set(response.get("headers", {}))
            if code.startswith("2"):
                assert {"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"} <= headers, path
                assert "Retry-After" not in headers
            elif code == "429":
                assert "Retry-After" in headers, f"{method} {path}"


class _Assets(HTMLParser):
    """The URLs a page loads: stylesheets, scripts and icons."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        url = found.get("src") if tag == "script" else found.get("href") if tag == "link" else None
        if url:
            self.urls.append(url)


def test_the_docs_page_and_every_asset_it_loads_come_from_the_app(client: FlaskClient) -> None:
    """The docs page renders with the network unplugged: everything it references is served by the app itself."""
    page = client.get("/api/v1/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert "/api/v1/openapi.json" in html
    parser = _Assets()
    parser.feed(html)
    expected = {".css": "text/css", ".js": "text/javascript", ".png": "image/png"}
    assert sorted(url.rsplit(".", 1)[1] for url in parser.urls) == ["css", "js", "js", "png"]
    for url in parser.urls:
        assert urlsplit(url).netloc == "" and url.startswith("/"), f"{url} would need the network"
        asset = client.get(url)
        assert asset.status_code == 200, url
        assert asset.mimetype == expected["." + url.rsplit(".", 1)[1]], (url, asset.mimetype)
        assert len(asset.get_data()) > 500 and asset.headers["X-Content-Type-Options"] == "nosniff"
    assert client.get("/api/v1/docs/assets/../../openapi.json").status_code == 404
    assert client.get("/api/v1/docs/assets/no-such-file.js").status_code == 404


# --- fuzzing -----------------------------------------------------------------------------------------------


class FuzzTarget:
    """The fuzzed app, a user owning a mailbox, and fresh resources for operations that need a real id."""

    def __init__(self, app: APIFlask, ctx: ServiceContext, owner: Caller) -> None:
        self.app, self.ctx, self.owner = app, ctx, owner
        self.client = app.test_client()
        account = create_account(self.client, owner, hostname="127.0.0.1", port=1, encryption="none")
        account_id = uuid.UUID(account["id"])
        folder_id, message_id, attachment_id = seed_mailbox_rows(ctx, owner.tenant_id, account_id)
        self.mailbox = Mailbox(owner, account, folder_id, message_id, attachment_id)
        self.draft_id = seed_draft(ctx, owner.tenant_id, account_id)

    def fresh_draft_id(self) -> uuid.UUID:
        """A new empty draft of the owner."""
        return seed_draft(self.ctx, self.owner.tenant_id, uuid.UUID(self.mailbox.account_id))

    def fresh_draft_attachment_id(self) -> str:
        """An attachment uploaded to the draft that no earlier example has deleted."""
        data = {"file": (io.BytesIO(f"note {uuid.uuid4()}".encode()), "note.txt")}
        response = self.client.post(
            f"/api/v1/messages/{self.draft_id}/attachments", headers=self.owner.headers, data=data
        )
        assert response.status_code == 201, response.get_json()
        return str(response.get_json()["id"])

    def fresh_account_id(self) -> str:
        """An account of the owner that no earlier example has changed or deleted."""
        return str(create_account(self.client, self.owner, hostname="127.0.0.1", port=1, encryption="none")["id"])


@pytest.fixture
def fuzz_target(app_with: Callable[..., APIFlask], ctx: ServiceContext, caller: Caller) -> Iterator[FuzzTarget]:
    yield FuzzTarget(app_with(RATE_LIMIT="100000 per minute"), ctx, caller)


OPERATIONS = [
    ("GET", "/health"),
    ("GET", "/ready"),
    ("GET", "/metrics"),
    ("GET", "/api/v1/accounts"),
    ("POST", "/api/v1/accounts"),
    ("GET", "/api/v1/accounts/{account_id}"),
    ("PUT", "/api/v1/accounts/{account_id}"),
    ("DELETE", "/api/v1/accounts/{account_id}"),
    ("GET", "/api/v1/accounts/{account_id}/sync"),
    ("POST", "/api/v1/accounts/{account_id}/sync"),
    ("POST", "/api/v1/accounts/{account_id}/test"),
    ("GET", "/api/v1/accounts/{account_id}/folders"),
    ("GET", "/api/v1/accounts/{account_id}/messages"),
    ("GET", "/api/v1/accounts/{account_id}/messages/search"),
    ("GET", "/api/v1/accounts/{account_id}/threads"),
    ("GET", "/api/v1/threads/{thread_id}"),
    ("GET", "/api/v1/admin/accounts"),
    ("GET", "/api/v1/messages/{message_id}"),
    ("GET", "/api/v1/messages/{message_id}/raw"),
    ("PATCH", "/api/v1/messages/{message_id}"),
    ("PUT", "/api/v1/messages/{message_id}"),
    ("DELETE", "/api/v1/messages/{message_id}"),
    ("POST", "/api/v1/accounts/{account_id}/messages/batch"),
    ("GET", "/api/v1/accounts/{account_id}/actions"),
    ("POST", "/api/v1/accounts/{account_id}/folders"),
    ("GET", "/api/v1/folders/{folder_id}"),
    ("PATCH", "/api/v1/folders/{folder_id}"),
    ("DELETE", "/api/v1/folders/{folder_id}"),
    ("GET", "/api/v1/messages/{message_id}/attachments"),
    ("POST", "/api/v1/messages/{message_id}/attachments"),
    ("GET", "/api/v1/attachments/{attachment_id}/download"),
    ("GET", "/api/v1/attachments/{attachment_id}/metadata"),
    ("DELETE", "/api/v1/attachments/{attachment_id}"),
    ("POST", "/api/v1/test/generate-token"),
    ("POST", "/api/v1/accounts/{account_id}/messages"),
    ("POST", "/api/v1/compose/send"),
    ("POST", "/api/v1/accounts/{account_id}/send"),
    ("GET", "/api/v1/outbox"),
    ("GET", "/api/v1/outbox/{outbox_id}"),
    ("DELETE", "/api/v1/outbox/{outbox_id}"),
    ("GET", "/api/v1/accounts/{account_id}/changes"),
    ("GET", "/api/v1/events"),
    ("POST", "/api/v1/webhooks"),
    ("GET", "/api/v1/webhooks"),
    ("DELETE", "/api/v1/webhooks/{webhook_id}"),
    ("GET", "/api/v1/webhooks/{webhook_id}/deliveries"),
]
#: Endless text/event-stream answers: a fuzzer reading the body would never finish; tests/integration/changes/
#: test_events.py checks their refusals (credentials, unknown parameters, a bad Last-Event-ID) instead.
STREAMS = {("GET", "/api/v1/events")}


def test_every_operation_is_fuzzed(spec: dict[str, Any]) -> None:
    documented = {(m.upper(), path) for path, item in spec["paths"].items() for m in item if m in METHODS}
    assert documented == set(OPERATIONS)


def _point_at_real_resources(case: Any, target: FuzzTarget) -> None:
    """Replace about half of the generated ids (those with an even value) by the owner's real ones, so that the
    fuzzer reaches the code behind the 404 too; odd ones stay unknown ids (404), and non-ids stay as generated."""
    params = case.path_parameters or {}
    for name, value in list(params.items()):
        try:
            generated = uuid.UUID(str(value))
        except ValueError:
            continue
        if generated.int % 2:
            continue
        if name == "account_id":
            params[name] = target.fresh_account_id() if case.method in ("PUT", "DELETE") else target.mailbox.account_id
        elif name == "message_id":  # uploads go to the draft; the other operations read the mirrored message
            params[name] = str(target.draft_id if case.method == "POST" else target.mailbox.message_id)
        elif name == "attachment_id":  # deletes take a draft's attachment; the others read the mirrored one
            params[name] = (
                target.fresh_draft_attachment_id() if case.method == "DELETE" else str(target.mailbox.attachment_id)
            )
        elif name == "folder_id":
            params[name] = str(target.mailbox.folder_id)


FUZZ_CASES = [
    pytest.param(method, path, mode, id=f"{method} {path} {mode.value}")
    for method, path in OPERATIONS
    for mode in GenerationMode
    if not (path in OPS_PATHS and mode is GenerationMode.NEGATIVE)  # no input to make invalid
    and (method, path) not in STREAMS
]


#: Operations whose schema-valid input may rightly get a 400: an upload's file is judged by its bytes (libmagic
#: type, emptiness, the draft's room); a draft's or a message's addresses by seed 002's address rules (a top-level
#: domain of letters, a dot-atom local part), stricter than ``format: email``; the search query language (unknown
#: operator, unbalanced quote); the message list's and the thread list's opaque cursors (one this service made, for
#: the same sort, not with offset); a well-formed state may be one the change log cannot answer from (410); a user's
#: 21st webhook is refused (at most 20 each).
_JUDGED_BEYOND_THE_SCHEMA = {
    ("POST", "/api/v1/messages/{message_id}/attachments"),
    ("POST", "/api/v1/accounts/{account_id}/messages"),
    ("POST", "/api/v1/accounts/{account_id}/send"),
    ("GET", "/api/v1/accounts/{account_id}/messages/search"),
    ("GET", "/api/v1/accounts/{account_id}/messages"),
    ("GET", "/api/v1/accounts/{account_id}/threads"),
    ("GET", "/api/v1/accounts/{account_id}/changes"),
    ("POST", "/api/v1/webhooks"),
}


def _excluded_checks(method: str, path: str) -> list[Any]:
    """ "Valid data is accepted" is not checked for :data:`_JUDGED_BEYOND_THE_SCHEMA`."""
    return [positive_data_acceptance] if (method, path) in _JUDGED_BEYOND_THE_SCHEMA else []


@pytest.mark.parametrize(("method", "path", "mode"), FUZZ_CASES)
def test_fuzzed_requests_get_documented_answers_and_never_a_server_error(
    fuzz_target: FuzzTarget, method: str, path: str, mode: GenerationMode
) -> None:
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", fuzz_target.app)
    operation = schema[path][method]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=25, derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def exchange(case: Any) -> None:
        _point_at_real_resources(case, fuzz_target)
        # Negative cases may drop the bearer token on purpose (the document says it is required): keep it dropped.
        headers = {} if schema.is_security_param_negated(case) else fuzz_target.owner.headers
        case.call_and_validate(headers=headers, excluded_checks=_excluded_checks(method, path))

    exchange()


# --- stateful phase: follow the document's links -------------------------------------------------------------


def _keep_mail_hosts_local(case: Any) -> None:
    """Point every mail server a generated account body names at 127.0.0.1:1 (closed), so that the connection
    tests and syncs the links lead to never dial a generated host."""
    if not isinstance(case.body, dict):
        return
    for host, port in (("hostname", "port"), ("smtpHostname", "smtpPort")):
        if isinstance(case.body.get(host), str):
            case.body[host] = "127.0.0.1"
        if isinstance(case.body.get(port), int | float):
            case.body[port] = 1


def _created_resources_are_available(ctx: Any, response: Any, case: Any) -> bool | None:
    """Schemathesis' ``ensure_resource_availability`` (a resource created in the sequence answers 404 on a
    linked operation), except for the 404 of a folder named in the body (``folderId``, ``parentId``): the
    account in the path was found, the folder the fuzzer made up was not."""
    if response.status_code == 404 and "names no folder" in response.text:
        return None
    result: bool | None = ensure_resource_availability(ctx, response, case)
    return result


def test_stateful_sequences_along_the_links_get_documented_answers(fuzz_target: FuzzTarget) -> None:
    """Schemathesis' stateful phase: create an account, then follow the document's links to read, change, sync,
    test, list and delete it (and from a message list to its messages); no 5xx, every response as documented."""
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", fuzz_target.app)
    seen: set[str] = set()

    class Links(schema.as_state_machine()):  # type: ignore[misc]
        def setup(self) -> None:
            # Hypothesis replays the beginnings of earlier sequences and needs the same answers again: each sequence
            # gets an owner of its own (a new tenant with one seeded mailbox), so what earlier sequences created,
            # changed or deleted never shows.
            self.target = FuzzTarget(fuzz_target.app, fuzz_target.ctx, Caller(fuzz_target.ctx))

        def before_call(self, case: Any) -> None:
            _keep_mail_hosts_local(case)
            if case.operation.label == "POST /api/v1/messages/{message_id}/attachments":
                # A fresh draft every time: a replayed upload is then created again (201), not found as a
                # duplicate of itself (200), so Hypothesis sees the same sequence when it replays an example.
                case.path_parameters["message_id"] = str(self.target.fresh_draft_id())
            if not schema.is_security_param_negated(case):  # the owner's token, unless the case drops it on purpose
                case.headers = {**(case.headers or {}), **self.target.owner.headers}

        def after_call(self, response: Any, case: Any) -> None:
            super().after_call(response, case)
            seen.add(case.operation.label)

        def validate_response(self, response: Any, case: Any, additional_checks: Any = None, **kwargs: Any) -> None:
            excluded = _excluded_checks(case.method.upper(), case.operation.path)
            case.validate_response(
                response,
                additional_checks=[*(additional_checks or []), _created_resources_are_available],
                excluded_checks=[ensure_resource_availability, *excluded],
                transport_kwargs=kwargs or None,
                recorder=self.recorder,
            )

    Links.run(
        settings=settings(
            max_examples=60,  # 40 operations by now: 30 sequences no longer reached every link followed below
            stateful_step_count=5,
            derandomize=True,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
    )
    assert {"POST /api/v1/accounts", "GET /api/v1/accounts/{account_id}"} <= seen, seen
    assert len(seen) >= 8, seen
