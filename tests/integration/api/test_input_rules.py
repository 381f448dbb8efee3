"""Issue 6 items 2, 3 and 8 through HTTP: the API refuses what its document forbids, on every endpoint, with a 400
naming the field or parameter, and keeps nothing of a refused request.

* JSON bodies the parser cannot take: nested deeper than 32 levels (a 200 KB run of brackets was a RecursionError
  and a 500), ``NaN``, invalid UTF-8, an integer of 5,000 digits;
* text the database cannot store: a lone surrogate (``"\\ud800"``, was a 500 in ``password``) or NUL in any text
  field of any endpoint, and their percent-encoded forms in query strings;
* booleans other than ``true``/``false`` (``"isSyncEnabled": 0`` was stored as false);
* query parameters an operation does not document (``?isRead=false`` returned every message).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient

from email_service.services.context import ServiceContext
from tests.conftest import Caller, account_body
from tests.integration.api.conftest import Mailbox, assert_invalid, create_account

pytestmark = pytest.mark.integration

SURROGATE = "\ud800"


def _send(client: FlaskClient, method: str, url: str, raw: bytes | str, headers: dict[str, str]) -> Any:
    return client.open(url, method=method, headers=headers, data=raw, content_type="application/json")


def _json(value: Any) -> str:
    """JSON text with ``\\uXXXX`` escapes, so a lone surrogate travels as ``"\\ud800"`` (RFC 8259 section 7)."""
    return json.dumps(value, ensure_ascii=True)


def _accounts_total(client: FlaskClient, caller: Caller) -> int:
    total: int = client.get("/api/v1/accounts", headers=caller.headers).get_json()["pagination"]["total"]
    return total


def _nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    return value


# --- JSON bodies ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/api/v1/accounts"), ("PUT", "/api/v1/accounts/{id}"), ("POST", "/api/v1/test/generate-token")],
)
def test_200_kb_of_nested_brackets_is_a_400_not_a_server_error(
    client: FlaskClient, caller: Caller, method: str, path: str
) -> None:
    account_id = create_account(client, caller)["id"]
    url = path.format(id=account_id)
    for raw in ("[" * 200_000, "[" * 100_000 + "]" * 100_000, '{"a":' * 50_000 + "1" + "}" * 50_000):
        response = _send(client, method, url, raw, caller.headers)
        assert_invalid(response, message="JSON body is nested deeper than 32 levels")


def test_nesting_is_bounded_at_32_levels(client: FlaskClient, caller: Caller) -> None:
    at_bound = client.post("/api/v1/accounts", headers=caller.headers, json=account_body(accountName=_nested(31)))
    assert_invalid(at_bound, mentions="accountName")  # 32 levels parse; the field then refuses a list
    too_deep = client.post("/api/v1/accounts", headers=caller.headers, json=account_body(accountName=_nested(32)))
    assert_invalid(too_deep, message="JSON body is nested deeper than 32 levels")


@pytest.mark.parametrize(
    "raw",
    [
        b'{"accountName": "x", "port": NaN}',
        b'{"port": Infinity}',
        b'{"accountName": "\xff\xfe"}',
        b'{"port": ' + b"9" * 5000 + b"}",
        b'{"accountName": "x",}',
    ],
    ids=["NaN", "Infinity", "invalid UTF-8", "5000-digit integer", "trailing comma"],
)
def test_a_body_that_is_not_json_text_is_a_400(client: FlaskClient, caller: Caller, raw: bytes) -> None:
    before = _accounts_total(client, caller)
    assert_invalid(_send(client, "POST", "/api/v1/accounts", raw, caller.headers), message="Invalid JSON body.")
    assert _accounts_total(client, caller) == before


# --- text fields ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [SURROGATE, "\udfff", "Work\x00Email", f"a{SURROGATE}b"], ids=repr)
@pytest.mark.parametrize("field", ["accountName", "username", "password", "smtpUsername", "emailAddress"])
def test_text_the_database_cannot_store_is_refused_in_any_body_field(
    client: FlaskClient, caller: Caller, field: str, bad: str
) -> None:
    before = _accounts_total(client, caller)
    raw = _json(account_body(**{field: f"user{bad}@company.example" if field == "emailAddress" else bad}))
    assert_invalid(_send(client, "POST", "/api/v1/accounts", raw, caller.headers), mentions=field)
    assert _accounts_total(client, caller) == before


def test_a_refused_update_changes_nothing(client: FlaskClient, caller: Caller) -> None:
    account = create_account(client, caller)
    url = f"/api/v1/accounts/{account['id']}"
    for field in ("accountName", "username", "password", "smtpUsername", "hostname", "encryption"):
        raw = _json({"accountName": "Renamed", field: SURROGATE})
        assert_invalid(_send(client, "PUT", url, raw, caller.headers), mentions=field)
    assert client.get(url, headers=caller.headers).get_json() == account


def test_a_surrogate_in_the_token_request_is_refused(client: FlaskClient, caller: Caller) -> None:
    ids = {"tenantId": str(caller.tenant_id), "userId": str(caller.user_id)}
    for body, field in (({**ids, "role": SURROGATE}, "role"), ({**ids, "tenantId": SURROGATE}, "tenantId")):
        assert_invalid(_send(client, "POST", "/api/v1/test/generate-token", _json(body), {}), mentions=field)


def test_text_beyond_the_basic_plane_is_kept(client: FlaskClient, caller: Caller) -> None:
    """A surrogate *pair* in JSON is one character above U+FFFF: stored and returned as sent."""
    raw = _json(account_body(accountName="Work \U0001f4e7 Mail"))
    assert '"Work \\ud83d\\udce7 Mail"' in raw
    created = _send(client, "POST", "/api/v1/accounts", raw, caller.headers)
    assert created.status_code == 201 and created.get_json()["accountName"] == "Work \U0001f4e7 Mail"


@pytest.mark.parametrize("encoded", ["%ED%A0%80", "%00", "1%00"], ids=["UTF-8 of U+D800", "NUL", "1 NUL"])
def test_query_values_the_database_cannot_store_are_refused(
    client: FlaskClient, make_mailbox: Callable[[Caller], Mailbox], caller: Caller, encoded: str
) -> None:
    mailbox = make_mailbox(caller)
    base = f"/api/v1/accounts/{mailbox.account_id}"
    for url, name in (
        (f"{base}/messages?folderId={encoded}", "folderId"),
        (f"{base}/messages?limit={encoded}", "limit"),
        (f"{base}/folders?offset={encoded}", "offset"),
        (f"/api/v1/accounts?limit={encoded}", "limit"),
    ):
        assert_invalid(client.get(url, headers=caller.headers), mentions=name)


# --- booleans ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, 1, "true", "false", "", None, [True]], ids=repr)
def test_a_boolean_is_true_or_false_and_nothing_else(client: FlaskClient, caller: Caller, value: Any) -> None:
    account = create_account(client, caller)
    url = f"/api/v1/accounts/{account['id']}"
    before = _accounts_total(client, caller)
    response = client.post("/api/v1/accounts", headers=caller.headers, json=account_body(isSyncEnabled=value))
    assert_invalid(response, mentions="isSyncEnabled")
    assert _accounts_total(client, caller) == before
    for field in ("isSyncEnabled", "isEnabled"):
        assert_invalid(client.put(url, headers=caller.headers, json={field: value}), mentions=field)
    assert client.get(url, headers=caller.headers).get_json() == account


def test_true_and_false_are_booleans(client: FlaskClient, caller: Caller) -> None:
    account = create_account(client, caller, isSyncEnabled=False)
    assert account["isSyncEnabled"] is False
    url = f"/api/v1/accounts/{account['id']}"
    updated = client.put(url, headers=caller.headers, json={"isSyncEnabled": True, "isEnabled": False}).get_json()
    assert (updated["isSyncEnabled"], updated["isEnabled"]) == (True, False)


# --- query parameter names -----------------------------------------------------------------------------------


def _assert_unknown_parameter(response: Any, name: str) -> None:
    assert_invalid(response, message=f"Unknown query parameter '{name}'")
    assert response.get_json()["details"] == {name: ["Unknown query parameter."]}


def test_unknown_query_parameters_are_refused_on_every_endpoint(
    client: FlaskClient, make_mailbox: Callable[[Caller], Mailbox], caller: Caller
) -> None:
    mailbox = make_mailbox(caller)
    account = f"/api/v1/accounts/{mailbox.account_id}"
    for method, url, name in (
        ("GET", "/api/v1/accounts?q=invoice", "q"),
        ("GET", "/api/accounts?limit=10&sort=name", "sort"),
        ("GET", f"{account}/messages?unread=true", "unread"),
        ("GET", f"{account}/messages?folderId={mailbox.folder_id}&q=x", "q"),
        ("GET", f"{account}/folders?role=inbox", "role"),
        ("GET", f"{account}?fields=id", "fields"),
        ("PUT", f"{account}?password=secret", "password"),
        ("GET", f"{account}/sync?verbose=1", "verbose"),
        ("POST", f"{account}/test?timeout=1", "timeout"),
        ("GET", f"/api/v1/messages/{mailbox.message_id}?format=full", "format"),
        ("GET", f"/api/v1/messages/{mailbox.message_id}/raw?download=0", "download"),
        ("DELETE", f"{account}?hard=true", "hard"),
        ("GET", "/health?verbose=true", "verbose"),
    ):
        body = {"accountName": "x"} if method == "PUT" else None
        _assert_unknown_parameter(client.open(url, method=method, headers=caller.headers, json=body), name)
    kept = client.get(account, headers=caller.headers)
    assert kept.status_code == 200 and kept.get_json() == mailbox.account, "the PUT and the DELETE were refused"
    assert client.get(f"{account}/messages?limit=1&offset=0", headers=caller.headers).status_code == 200


def test_a_sync_with_an_unknown_parameter_starts_nothing(client: FlaskClient, caller: Caller) -> None:
    account_id = create_account(client, caller, hostname="127.0.0.1", port=1, encryption="none")["id"]
    _assert_unknown_parameter(client.post(f"/api/v1/accounts/{account_id}/sync?full=1", headers=caller.headers), "full")
    assert client.get(f"/api/v1/accounts/{account_id}/sync", headers=caller.headers).get_json()["syncId"] is None


def test_unknown_parameters_of_the_token_endpoint_are_refused(client: FlaskClient, caller: Caller) -> None:
    body = {"tenantId": str(caller.tenant_id), "userId": str(caller.user_id)}
    _assert_unknown_parameter(client.post("/api/v1/test/generate-token?admin=1", json=body), "admin")


def test_credentials_and_role_come_before_the_query_string(
    client: FlaskClient, ctx: ServiceContext, caller: Caller
) -> None:
    assert client.get("/api/v1/accounts?q=x").status_code == 401
    assert client.get(f"/api/v1/accounts/{uuid.uuid4()}?q=x").status_code == 401
    assert client.get("/api/v1/admin/accounts?q=x", headers=caller.headers).status_code == 403
    admin = caller.colleague(ctx, "admin")
    _assert_unknown_parameter(client.get("/api/v1/admin/accounts?q=x", headers=admin.headers), "q")
