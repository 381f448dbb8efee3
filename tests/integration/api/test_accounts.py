"""Accounts API of seed 000 through HTTP: create/list/get/update/delete, validation, conflicts, pagination,
content types, the ``/api`` alias prefix, and what happens to the mail password (DESIGN.md section 2)."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
from flask.testing import FlaskClient

from email_service.models import EmailAccount, now_ms
from email_service.services.context import ServiceContext
from tests.conftest import Caller, account_body
from tests.integration.api.conftest import assert_invalid, create_account, stored_credentials, stored_password

pytestmark = pytest.mark.integration

PREFIXES = ["/api/v1", "/api"]
REQUIRED = ["accountName", "emailAddress", "protocol", "hostname", "port", "username", "password"]
ACCOUNT_FIELDS = {
    "id",
    "tenantId",
    "userId",
    "accountName",
    "emailAddress",
    "protocol",
    "hostname",
    "port",
    "encryption",
    "username",
    "smtpHostname",
    "smtpPort",
    "smtpEncryption",
    "smtpUsername",
    "saveSentCopy",
    "isSyncEnabled",
    "syncInterval",
    "lastSyncAt",
    "isSyncing",
    "isEnabled",
    "createdAt",
    "updatedAt",
}


def test_create_returns_every_field_with_the_seed_defaults(client: FlaskClient, caller: Caller) -> None:
    body = account_body()
    del body["encryption"]  # isSyncEnabled and syncInterval are absent from account_body() too
    before = now_ms()
    response = client.post("/api/v1/accounts", headers=caller.headers, json=body)
    after = now_ms()

    assert response.status_code == 201
    created = response.get_json()
    assert set(created) == ACCOUNT_FIELDS
    assert uuid.UUID(created["id"])
    assert created["tenantId"] == str(caller.tenant_id) and created["userId"] == str(caller.user_id)
    for field in ("accountName", "emailAddress", "protocol", "hostname", "port", "username"):
        assert created[field] == body[field]
    assert created["encryption"] == "tls"
    assert created["isSyncEnabled"] is True and created["syncInterval"] == 300
    assert created["isSyncing"] is False and created["isEnabled"] is True and created["lastSyncAt"] is None
    for stamp in ("createdAt", "updatedAt"):
        assert type(created[stamp]) is int and before <= created[stamp] <= after
    assert client.get(f"/api/v1/accounts/{created['id']}", headers=caller.headers).get_json() == created


def test_create_keeps_the_optional_fields_given(client: FlaskClient, caller: Caller) -> None:
    body = account_body(
        encryption="starttls",
        isSyncEnabled=False,
        syncInterval=600,
        protocol="pop3",
        port=110,
        smtpHostname="smtp.company.example",
        smtpPort=587,
        smtpEncryption="starttls",
    )
    created = create_account(client, caller, **body)
    assert (created["encryption"], created["isSyncEnabled"], created["syncInterval"]) == ("starttls", False, 600)
    assert (created["protocol"], created["port"]) == ("pop3", 110)
    assert (created["smtpHostname"], created["smtpPort"], created["smtpEncryption"]) == (
        "smtp.company.example",
        587,
        "starttls",
    )


def test_answers_are_utf8_json_with_sorted_keys(client: FlaskClient, caller: Caller) -> None:
    """RFC 8259 section 8.1: the body is UTF-8 (api/json_body.py), not ``\\u`` escapes; keys sorted, one line."""
    response = client.post("/api/v1/accounts", headers=caller.headers, json=account_body(accountName="Zoë, 会議"))
    assert response.status_code == 201 and response.content_type == "application/json"
    assert '"accountName":"Zoë, 会議"'.encode() in response.data and b"\\u" not in response.data
    keys = list(json.loads(response.data))
    assert keys == sorted(keys) and response.data.count(b"\n") == 1


@pytest.mark.parametrize("field", REQUIRED)
def test_missing_required_field_is_rejected(client: FlaskClient, caller: Caller, field: str) -> None:
    body = account_body()
    del body[field]
    response = client.post("/api/v1/accounts", headers=caller.headers, json=body)
    assert_invalid(response, mentions=field)
    assert client.get("/api/v1/accounts", headers=caller.headers).get_json()["pagination"]["total"] == 0


@pytest.mark.parametrize(
    ("overrides", "mentions", "message"),
    [
        ({"port": 0}, None, "Port must be between 1 and 65535"),
        ({"port": 65536}, None, "Port must be between 1 and 65535"),
        ({"port": -1}, None, "Port must be between 1 and 65535"),
        ({"port": "abc"}, "port", None),
        ({"port": 1.5}, "port", None),
        ({"port": "993"}, "port", None),
        ({"port": None}, "port", None),
        ({"protocol": "smtp"}, "protocol", None),
        ({"protocol": ""}, "protocol", None),
        ({"encryption": "ssl"}, "encryption", None),
        ({"emailAddress": "not-an-email"}, "emailAddress", None),
        ({"emailAddress": "user@"}, "emailAddress", None),
        ({"syncInterval": "often"}, "syncInterval", None),
        ({"isSyncEnabled": "maybe"}, "isSyncEnabled", None),
        ({"accountName": ""}, "accountName", None),
        ({"nickname": "x"}, "nickname", None),
        ({"accountName": "Work\x00Email"}, "accountName", None),
        ({"username": "user\x00"}, "username", None),
    ],
)
def test_invalid_field_is_rejected(
    client: FlaskClient, caller: Caller, overrides: dict[str, Any], mentions: str | None, message: str | None
) -> None:
    response = client.post("/api/v1/accounts", headers=caller.headers, json=account_body(**overrides))
    assert_invalid(response, mentions=mentions, message=message)


def test_port_bounds_and_integral_numbers_are_accepted(client: FlaskClient, caller: Caller) -> None:
    assert create_account(client, caller, port=1)["port"] == 1
    assert create_account(client, caller, port=65535)["port"] == 65535
    same_number = create_account(client, caller, port=993.0, syncInterval=600.0)
    assert (same_number["port"], same_number["syncInterval"]) == (993, 600)


def test_duplicate_address_of_the_same_user_conflicts_case_insensitively(client: FlaskClient, caller: Caller) -> None:
    create_account(client, caller, emailAddress="Dup.User@Company.example")
    response = client.post(
        "/api/v1/accounts", headers=caller.headers, json=account_body(emailAddress="dup.user@company.EXAMPLE")
    )
    assert response.status_code == 409
    assert response.get_json() == {"error": "Conflict", "message": "Email already registered"}
    assert client.get("/api/v1/accounts", headers=caller.headers).get_json()["pagination"]["total"] == 1


def test_same_address_is_fine_for_other_users_and_after_delete(
    client: FlaskClient, ctx: ServiceContext, caller: Caller, make_caller: Any
) -> None:
    address = f"shared{uuid.uuid4().hex[:6]}@company.example"
    first = create_account(client, caller, emailAddress=address)
    create_account(client, caller.colleague(ctx), emailAddress=address)
    create_account(client, make_caller(), emailAddress=address)

    assert client.delete(f"/api/v1/accounts/{first['id']}", headers=caller.headers).status_code == 200
    again = create_account(client, caller, emailAddress=address.upper())
    assert again["id"] != first["id"]


def test_update_to_an_address_the_user_already_has_conflicts(client: FlaskClient, caller: Caller) -> None:
    taken = create_account(client, caller)
    other = create_account(client, caller)
    response = client.put(
        f"/api/v1/accounts/{other['id']}", headers=caller.headers, json={"emailAddress": taken["emailAddress"].upper()}
    )
    assert response.status_code == 409
    unchanged = client.get(f"/api/v1/accounts/{other['id']}", headers=caller.headers).get_json()
    assert unchanged["emailAddress"] == other["emailAddress"]


def test_list_paginates_and_echoes_the_bounds(client: FlaskClient, caller: Caller) -> None:
    ids = [create_account(client, caller)["id"] for _ in range(3)]

    default = client.get("/api/v1/accounts", headers=caller.headers).get_json()
    assert default["pagination"] == {"total": 3, "limit": 100, "offset": 0}
    assert [a["id"] for a in default["accounts"]] == ids, "oldest first"

    first = client.get("/api/v1/accounts?limit=2", headers=caller.headers).get_json()
    rest = client.get("/api/v1/accounts?limit=2&offset=2", headers=caller.headers).get_json()
    assert first["pagination"] == {"total": 3, "limit": 2, "offset": 0}
    assert rest["pagination"] == {"total": 3, "limit": 2, "offset": 2}
    assert [a["id"] for a in first["accounts"] + rest["accounts"]] == ids
    beyond = client.get("/api/v1/accounts?offset=10", headers=caller.headers).get_json()
    assert beyond["accounts"] == [] and beyond["pagination"]["total"] == 3
    assert len(client.get("/api/v1/accounts?limit=1", headers=caller.headers).get_json()["accounts"]) == 1
    assert client.get("/api/v1/accounts?limit=100", headers=caller.headers).status_code == 200


@pytest.mark.parametrize(
    "query", ["limit=0", "limit=101", "limit=-1", "limit=abc", "offset=-1", "offset=x", "offset=100000000000000000000"]
)
def test_invalid_pagination_is_rejected(client: FlaskClient, caller: Caller, query: str) -> None:
    assert_invalid(client.get(f"/api/v1/accounts?{query}", headers=caller.headers), mentions=query.split("=")[0])


def test_get_unknown_account_is_not_found(client: FlaskClient, caller: Caller) -> None:
    response = client.get(f"/api/v1/accounts/{uuid.uuid4()}", headers=caller.headers)
    assert response.status_code == 404
    assert response.get_json() == {"error": "Not found", "message": "Account not found"}
    assert client.get("/api/v1/accounts/not-a-uuid", headers=caller.headers).status_code == 404


def test_update_changes_the_given_fields_only(client: FlaskClient, caller: Caller) -> None:
    created = create_account(client, caller)
    time.sleep(0.002)
    response = client.put(
        f"/api/v1/accounts/{created['id']}",
        headers=caller.headers,
        json={"accountName": "Updated Name", "isSyncEnabled": False, "syncInterval": 600},
    )
    assert response.status_code == 200
    updated = response.get_json()
    assert (updated["accountName"], updated["isSyncEnabled"], updated["syncInterval"]) == ("Updated Name", False, 600)
    assert updated["updatedAt"] > created["updatedAt"] and updated["createdAt"] == created["createdAt"]
    untouched = {
        k: v for k, v in created.items() if k not in ("accountName", "isSyncEnabled", "syncInterval", "updatedAt")
    }
    assert {k: updated[k] for k in untouched} == untouched
    assert client.get(f"/api/v1/accounts/{created['id']}", headers=caller.headers).get_json() == updated


def test_update_validation_and_missing_account(client: FlaskClient, caller: Caller) -> None:
    account_id = create_account(client, caller)["id"]
    url = f"/api/v1/accounts/{account_id}"
    assert_invalid(
        client.put(url, headers=caller.headers, json={"port": 70000}), message="Port must be between 1 and 65535"
    )
    assert_invalid(client.put(url, headers=caller.headers, json={}))
    assert_invalid(client.put(url, headers=caller.headers, json={"accountName": None}), mentions="accountName")
    assert_invalid(client.put(url, headers=caller.headers, json={"smtpUsername": "x\x00"}), mentions="smtpUsername")
    assert_invalid(client.put(url, headers=caller.headers, json={"tenantId": str(uuid.uuid4())}), mentions="tenantId")
    assert client.get(url, headers=caller.headers).get_json()["tenantId"] == str(caller.tenant_id)
    missing = client.put(f"/api/v1/accounts/{uuid.uuid4()}", headers=caller.headers, json={"accountName": "x"})
    assert missing.status_code == 404


def test_delete_removes_the_account_from_get_and_list(client: FlaskClient, caller: Caller) -> None:
    kept = create_account(client, caller)
    gone = create_account(client, caller)
    url = f"/api/v1/accounts/{gone['id']}"
    response = client.delete(url, headers=caller.headers)
    assert response.status_code == 200
    assert response.get_json() == {"message": "Account deleted successfully", "id": gone["id"]}

    assert client.get(url, headers=caller.headers).status_code == 404
    listed = client.get("/api/v1/accounts", headers=caller.headers).get_json()
    assert [a["id"] for a in listed["accounts"]] == [kept["id"]] and listed["pagination"]["total"] == 1
    assert client.delete(url, headers=caller.headers).status_code == 404
    assert client.put(url, headers=caller.headers, json={"accountName": "zombie"}).status_code == 404


def test_malformed_json_is_a_bad_request(client: FlaskClient, caller: Caller) -> None:
    for data in ('{"accountName": ', "[1, 2]", "null", '"text"'):
        response = client.post("/api/v1/accounts", headers=caller.headers, data=data, content_type="application/json")
        assert_invalid(response)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml"])
def test_wrong_content_type_is_unsupported(client: FlaskClient, caller: Caller, content_type: str) -> None:
    account_id = create_account(client, caller)["id"]
    for method, url in (("post", "/api/v1/accounts"), ("put", f"/api/v1/accounts/{account_id}")):
        response = getattr(client, method)(
            url, headers=caller.headers, data=json.dumps(account_body()), content_type=content_type
        )
        assert response.status_code == 415, response.get_json()
        assert response.get_json()["error"] == "Unsupported media type"
    assert client.get("/api/v1/accounts", headers=caller.headers).get_json()["pagination"]["total"] == 1


def test_unsupported_method_is_405_with_the_allowed_methods(client: FlaskClient, caller: Caller) -> None:
    account_id = create_account(client, caller)["id"]
    response = client.patch(f"/api/v1/accounts/{account_id}", headers=caller.headers, json={"accountName": "x"})
    assert response.status_code == 405 and response.mimetype == "application/json"
    assert response.get_json()["error"] == "Method not allowed"
    assert {"GET", "PUT", "DELETE"} <= {m.strip() for m in response.headers["Allow"].split(",")}


def test_health_needs_no_auth(client: FlaskClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    body = response.get_json()
    assert (body["status"], body["service"]) == ("healthy", "email_service")
    assert isinstance(body["version"], str) and body["version"]


@pytest.mark.parametrize("prefix", PREFIXES)
def test_every_account_route_works_under_both_prefixes(client: FlaskClient, caller: Caller, prefix: str) -> None:
    created = client.post(f"{prefix}/accounts", headers=caller.headers, json=account_body())
    assert created.status_code == 201
    account_id = created.get_json()["id"]
    listed = client.get(f"{prefix}/accounts?limit=5", headers=caller.headers).get_json()
    assert [a["id"] for a in listed["accounts"]] == [account_id]
    assert listed["pagination"] == {"total": 1, "limit": 5, "offset": 0}
    assert client.get(f"{prefix}/accounts/{account_id}", headers=caller.headers).get_json() == created.get_json()
    other_prefix = next(p for p in PREFIXES if p != prefix)
    assert client.get(f"{other_prefix}/accounts/{account_id}", headers=caller.headers).status_code == 200
    put = client.put(f"{prefix}/accounts/{account_id}", headers=caller.headers, json={"accountName": "Renamed"})
    assert put.status_code == 200 and put.get_json()["accountName"] == "Renamed"
    assert_invalid(
        client.put(f"{prefix}/accounts/{account_id}", headers=caller.headers, json={"port": 0}),
        message="Port must be between 1 and 65535",
    )
    assert_invalid(client.post(f"{prefix}/accounts", headers=caller.headers, json=account_body(protocol="x")))
    deleted = client.delete(f"{prefix}/accounts/{account_id}", headers=caller.headers)
    assert deleted.get_json() == {"message": "Account deleted successfully", "id": account_id}
    assert client.get(f"{prefix}/accounts/{account_id}", headers=caller.headers).status_code == 404
    assert client.get(f"{prefix}/accounts").status_code == 401


# --- the mail password -------------------------------------------------------------------------------------


def test_password_is_stored_encrypted_and_never_returned(
    client: FlaskClient, ctx: ServiceContext, caller: Caller
) -> None:
    password = f"pw-{uuid.uuid4().hex}"
    admin = caller.colleague(ctx, "admin")
    created = client.post("/api/v1/accounts", headers=caller.headers, json=account_body(password=password))
    account_id = created.get_json()["id"]
    responses = [
        created,
        client.get(f"/api/v1/accounts/{account_id}", headers=caller.headers),
        client.get("/api/v1/accounts", headers=caller.headers),
        client.get("/api/v1/admin/accounts", headers=admin.headers),
        client.put(f"/api/v1/accounts/{account_id}", headers=caller.headers, json={"accountName": "n"}),
    ]
    for response in responses:
        assert response.status_code in (200, 201)
        assert password not in response.get_data(as_text=True)
        assert "password" not in response.get_data(as_text=True).lower()

    [credential] = stored_credentials(ctx, caller, account_id)
    assert password not in credential.ciphertext and credential.ciphertext.startswith("v1:")
    assert stored_password(ctx, caller, account_id) == password


def test_password_change_re_encrypts(client: FlaskClient, ctx: ServiceContext, caller: Caller) -> None:
    account_id = create_account(client, caller, password="old-password-1")["id"]
    [before] = stored_credentials(ctx, caller, account_id)
    response = client.put(f"/api/v1/accounts/{account_id}", headers=caller.headers, json={"password": "new-password-2"})
    assert response.status_code == 200 and "new-password-2" not in response.get_data(as_text=True)
    [after] = stored_credentials(ctx, caller, account_id)
    assert after.ciphertext != before.ciphertext and "new-password-2" not in after.ciphertext
    assert stored_password(ctx, caller, account_id) == "new-password-2"


def test_delete_destroys_the_credential(client: FlaskClient, ctx: ServiceContext, caller: Caller) -> None:
    account_id = create_account(client, caller)["id"]
    assert len(stored_credentials(ctx, caller, account_id)) == 1
    assert client.delete(f"/api/v1/accounts/{account_id}", headers=caller.headers).status_code == 200
    assert stored_credentials(ctx, caller, account_id) == []
    with ctx.db.tenant_session(caller.tenant_id) as session:
        row = session.get(EmailAccount, uuid.UUID(account_id))
        assert row is not None and row.deleted_at is not None and row.credential_id is None


@pytest.mark.parametrize(
    "hostname", ["1:2", "[::1]", "::1", "999.1.1.1", "10.0.0", "1.0.0", "mail server.example", "-mail.example", "a..b"]
)
def test_hostnames_that_are_neither_names_nor_addresses_are_refused(
    client: FlaskClient, caller: Caller, hostname: str
) -> None:
    response = client.post("/api/v1/accounts", headers=caller.headers, json=account_body(hostname=hostname))
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["message"] == "Hostname must be a DNS name or an IPv4 address"


@pytest.mark.parametrize("hostname", ["imap.example.com", "127.0.0.1", "localhost", "mail-1.example", "1und1.de"])
def test_names_and_ip_literals_are_accepted(client: FlaskClient, caller: Caller, hostname: str) -> None:
    response = client.post("/api/v1/accounts", headers=caller.headers, json=account_body(hostname=hostname))
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["hostname"] == hostname
