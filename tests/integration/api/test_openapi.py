"""The OpenAPI document (DESIGN.md section 5) and an OpenAPI-driven fuzz run of the real app with schemathesis:
no 5xx, and every response (status code, content type, body) is one the document promises."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import schemathesis
from apiflask import APIFlask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from email_service.services.context import ServiceContext
from tests.conftest import Caller
from tests.integration.api.conftest import Mailbox, create_account, seed_mailbox

pytestmark = pytest.mark.integration

CANONICAL_PATHS = {
    "/health",
    "/api/v1/accounts",
    "/api/v1/accounts/{account_id}",
    "/api/v1/accounts/{account_id}/sync",
    "/api/v1/accounts/{account_id}/test",
    "/api/v1/accounts/{account_id}/folders",
    "/api/v1/accounts/{account_id}/messages",
    "/api/v1/admin/accounts",
    "/api/v1/messages/{message_id}",
    "/api/v1/messages/{message_id}/raw",
    "/api/v1/accounts/{account_id}/messages/batch",
    "/api/v1/accounts/{account_id}/actions",
    "/api/v1/folders/{folder_id}",
    "/api/v1/test/generate-token",
}
METHODS = {"get", "put", "post", "delete", "patch"}


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
            [success] = [code for code in responses if code.startswith("2")]
            content = responses[success]["content"]
            if path.endswith("/raw"):
                assert set(content) == {"message/rfc822"}
            else:
                assert _json_schema(spec, responses[success]).get("properties"), f"{method} {path}"
            for code, response in responses.items():
                if code.startswith(("4", "5")):
                    error = _json_schema(spec, response)
                    assert set(error["required"]) == {"error", "message"}, f"{method} {path} {code}"
            if path != "/health":
                assert "429" in responses, f"{method} {path} documents the rate limit"
            if path in ("/health", "/api/v1/test/generate-token"):
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


def test_docs_page_is_html(client: FlaskClient) -> None:
    response = client.get("/api/v1/docs")
    assert response.status_code == 200 and response.mimetype == "text/html"
    assert "/api/v1/openapi.json" in response.get_data(as_text=True)


# --- fuzzing -----------------------------------------------------------------------------------------------


class FuzzTarget:
    """The fuzzed app, a user owning a mailbox, and fresh resources for operations that need a real id."""

    def __init__(self, app: APIFlask, ctx: ServiceContext, owner: Caller) -> None:
        self.app, self.ctx, self.owner = app, ctx, owner
        self.client = app.test_client()
        account = create_account(self.client, owner, hostname="127.0.0.1", port=1, encryption="none")
        folder_id, message_id = seed_mailbox(ctx, owner.tenant_id, uuid.UUID(account["id"]))
        self.mailbox = Mailbox(owner, account, folder_id, message_id)

    def fresh_account_id(self) -> str:
        """An account of the owner that no earlier example has changed or deleted."""
        return str(create_account(self.client, self.owner, hostname="127.0.0.1", port=1, encryption="none")["id"])


@pytest.fixture
def fuzz_target(app_with: Callable[..., APIFlask], ctx: ServiceContext, caller: Caller) -> Iterator[FuzzTarget]:
    yield FuzzTarget(app_with(RATE_LIMIT="100000 per minute"), ctx, caller)


OPERATIONS = [
    ("GET", "/health"),
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
    ("POST", "/api/v1/test/generate-token"),
]


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
        elif name == "message_id":
            params[name] = str(target.mailbox.message_id)
        elif name == "folder_id":
            params[name] = str(target.mailbox.folder_id)


FUZZ_CASES = [
    pytest.param(method, path, mode, id=f"{method} {path} {mode.value}")
    for method, path in OPERATIONS
    for mode in GenerationMode
    if not (path == "/health" and mode is GenerationMode.NEGATIVE)  # no input to make invalid
]


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
        case.call_and_validate(headers=headers)

    exchange()
