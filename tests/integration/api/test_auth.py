"""Authentication middleware of seed 001 through HTTP: bearer JWT rules, trusted headers (only when switched on,
never a role), the admin listing, the development token endpoint and production mode."""

from __future__ import annotations

import datetime as dt
import uuid
import warnings
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from apiflask import APIFlask
from flask.testing import FlaskClient
from jwt.warnings import InsecureKeyLengthWarning

from email_service.services.context import ServiceContext
from tests.conftest import JWT_SECRET, Caller, account_body
from tests.integration.api.conftest import create_account

pytestmark = pytest.mark.integration

MISSING = {"error": "Unauthorized", "message": "Bearer token or X-Tenant-ID and X-User-ID headers required"}
NOT_ADMIN = {"error": "Forbidden", "message": "Insufficient permissions. Required role: admin"}
PRODUCTION = {
    "FLASK_ENV": "production",
    "JWT_SECRET_KEY": "p" * 48,
    "CORS_ORIGINS": "https://mail.example.com",
    "AUTH_TRUST_HEADERS": "false",
}


_DIGITS = int("1234567890" * 3 + "12")  # 32 decimal digits: str() of it would parse as a UUID
_NULL = object()  # a claim present with the JSON value null (None in _claims() means "left out")


def _epoch(hours: float = 0) -> int:
    return int((dt.datetime.now(dt.UTC) + dt.timedelta(hours=hours)).timestamp())


def _claims(caller: Caller, **overrides: Any) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC)
    claims: dict[str, Any] = {
        "tenant_id": str(caller.tenant_id),
        "user_id": str(caller.user_id),
        "role": "user",
        "iat": now,
        "exp": now + dt.timedelta(hours=1),
    }
    claims.update(overrides)
    return {k: (None if v is _NULL else v) for k, v in claims.items() if v is not None}


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _signed(claims: dict[str, Any], secret: str = JWT_SECRET, algorithm: str = "HS256") -> dict[str, str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)  # HS512 with the HS256 secret, on purpose
        return _bearer(jwt.encode(claims, secret, algorithm=algorithm))


def _assert_unauthorized(response: Any) -> None:
    assert response.status_code == 401, response.get_json()
    body = response.get_json()
    assert body["error"] == "Unauthorized" and isinstance(body["message"], str) and body["message"]
    assert "accounts" not in body


def test_valid_bearer_token_authenticates_as_its_user(client: FlaskClient, caller: Caller) -> None:
    created = create_account(client, caller)
    response = client.get("/api/v1/accounts", headers=_signed(_claims(caller)))
    assert response.status_code == 200
    assert [a["id"] for a in response.get_json()["accounts"]] == [created["id"]]
    assert created["tenantId"] == str(caller.tenant_id) and created["userId"] == str(caller.user_id)


def _expired(c: Caller) -> dict[str, str]:
    return _signed(_claims(c, exp=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)))


def _alg_none(c: Caller) -> dict[str, str]:
    return _bearer(jwt.encode(_claims(c), None, algorithm="none"))  # type: ignore[arg-type]


def _tampered(c: Caller) -> dict[str, str]:
    header, _payload, signature = jwt.encode(_claims(c), JWT_SECRET, algorithm="HS256").split(".")
    forged = jwt.encode(_claims(c, role="admin"), "other-" + "z" * 40, algorithm="HS256").split(".")[1]
    return _bearer(f"{header}.{forged}.{signature}")


BAD_CREDENTIALS: dict[str, Callable[[Caller], dict[str, str]]] = {
    "expired": _expired,
    "bad signature": lambda c: _signed(_claims(c), secret="another-secret-" + "y" * 40),
    "tampered payload": _tampered,
    "malformed": lambda c: _bearer("not.a.jwt"),
    "garbage": lambda c: _bearer("garbage"),
    "missing exp": lambda c: _signed(_claims(c, exp=None)),
    "missing tenant": lambda c: _signed(_claims(c, tenant_id=None)),
    "tenant not a uuid": lambda c: _signed(_claims(c, tenant_id="tenant-1")),
    "unknown role": lambda c: _signed(_claims(c, role="superuser")),
    # RFC 7519 claim types (issue 6 item 7): PyJWT itself takes "1796024380" for a NumericDate
    "string exp": lambda c: _signed(_claims(c, exp=str(_epoch(hours=1)))),
    "string iat": lambda c: _signed(_claims(c, iat=str(_epoch()))),
    "string nbf": lambda c: _signed(_claims(c, nbf=str(_epoch(hours=-1)))),
    "boolean iat": lambda c: _signed(_claims(c, iat=True)),
    "numeric tenant_id": lambda c: _signed(_claims(c, tenant_id=_DIGITS)),
    "numeric user_id": lambda c: _signed(_claims(c, user_id=_DIGITS)),
    "role root": lambda c: _signed(_claims(c, role="root")),
    "role null": lambda c: _signed(_claims(c, role=_NULL)),
    "role list": lambda c: _signed(_claims(c, role=["admin"])),
    "alg none": _alg_none,
    "HS512 when HS256 is configured": lambda c: _signed(_claims(c), algorithm="HS512"),
    "basic scheme": lambda c: {"Authorization": "Basic x"},
    "empty bearer": lambda c: {"Authorization": "Bearer "},
    "scheme only": lambda c: {"Authorization": "Bearer"},
}


@pytest.mark.parametrize("case", list(BAD_CREDENTIALS))
def test_bad_bearer_credentials_are_unauthorized(client: FlaskClient, caller: Caller, case: str) -> None:
    create_account(client, caller)
    headers = BAD_CREDENTIALS[case](caller)
    _assert_unauthorized(client.get("/api/v1/accounts", headers=headers))
    _assert_unauthorized(client.post("/api/v1/accounts", headers=headers, json={"accountName": "x"}))


def test_numeric_dates_may_be_integers_or_fractions(client: FlaskClient, caller: Caller) -> None:
    """RFC 7519 section 2: a NumericDate is any JSON number of seconds, not only an integer."""
    claims = _claims(caller, exp=_epoch(hours=1) + 0.5, iat=_epoch() - 0.25, nbf=_epoch(hours=-1))
    assert client.get("/api/v1/accounts", headers=_signed(claims)).status_code == 200


def test_an_invalid_token_never_falls_back_to_headers(client: FlaskClient, caller: Caller) -> None:
    headers = {**caller.header_auth, **_expired(caller)}
    _assert_unauthorized(client.get("/api/v1/accounts", headers=headers))


def test_header_auth_works_when_trusted(client: FlaskClient, caller: Caller) -> None:
    created = client.post("/api/v1/accounts", headers=caller.header_auth, json=account_body())
    assert created.status_code == 201
    assert created.get_json()["tenantId"] == str(caller.tenant_id)
    assert created.get_json()["userId"] == str(caller.user_id)
    listed = client.get("/api/v1/accounts", headers=caller.headers).get_json()
    assert [a["id"] for a in listed["accounts"]] == [created.get_json()["id"]], "same user either way"


@pytest.mark.parametrize(("header", "what"), [("X-Tenant-ID", "Tenant ID"), ("X-User-ID", "User ID")])
def test_header_that_is_not_a_uuid_is_a_bad_request(
    client: FlaskClient, caller: Caller, header: str, what: str
) -> None:
    for bad in ("not-a-uuid", "", "1234"):
        response = client.get("/api/v1/accounts", headers={**caller.header_auth, header: bad})
        assert response.status_code == 400
        assert response.get_json() == {"error": "Invalid request", "message": f"{what} must be valid UUID"}


@pytest.mark.parametrize("kept", [[], ["X-Tenant-ID"], ["X-User-ID"]])
def test_missing_credentials_are_unauthorized(client: FlaskClient, caller: Caller, kept: list[str]) -> None:
    headers = {k: v for k, v in caller.header_auth.items() if k in kept}
    for response in (
        client.get("/api/v1/accounts", headers=headers),
        client.get(f"/api/v1/accounts/{uuid.uuid4()}", headers=headers),
        client.post("/api/v1/accounts", headers=headers, json=account_body()),
        client.delete(f"/api/accounts/{uuid.uuid4()}", headers=headers),
    ):
        assert response.status_code == 401
        assert response.get_json() == MISSING


def test_headers_alone_are_refused_when_header_auth_is_off(app_with: Callable[..., APIFlask], caller: Caller) -> None:
    client = app_with(AUTH_TRUST_HEADERS="false").test_client()
    response = client.get("/api/v1/accounts", headers=caller.header_auth)
    assert response.status_code == 401 and response.get_json() == MISSING
    refused = client.post("/api/v1/accounts", headers=caller.header_auth, json=account_body())
    assert refused.status_code == 401
    assert client.get("/api/v1/accounts", headers=caller.headers).get_json()["pagination"]["total"] == 0
    assert client.get("/api/v1/accounts", headers=caller.headers).status_code == 200


def test_a_role_never_comes_from_a_header(client: FlaskClient, ctx: ServiceContext, caller: Caller) -> None:
    colleague_account = create_account(client, caller.colleague(ctx))
    forged = {**caller.header_auth, "X-User-Role": "admin", "X-Role": "admin"}
    response = client.get("/api/v1/admin/accounts", headers=forged)
    assert response.status_code == 403 and response.get_json() == NOT_ADMIN
    with_token = client.get("/api/v1/admin/accounts", headers={**caller.headers, "X-User-Role": "admin"})
    assert with_token.status_code == 403
    other = client.get(f"/api/v1/accounts/{colleague_account['id']}", headers=forged)
    assert other.status_code == 403 and "emailAddress" not in other.get_json()


def test_admin_lists_the_whole_tenant_and_users_may_not(
    client: FlaskClient, ctx: ServiceContext, caller: Caller, make_caller: Callable[..., Caller]
) -> None:
    colleague = caller.colleague(ctx)
    admin = caller.colleague(ctx, "admin")
    mine = [create_account(client, caller)["id"] for _ in range(2)]
    theirs = create_account(client, colleague)["id"]
    outsider = make_caller()
    create_account(client, outsider)
    create_account(client, make_caller(outsider.tenant_id, "admin"))

    for prefix in ("/api/v1", "/api"):
        response = client.get(f"{prefix}/admin/accounts", headers=admin.headers)
        assert response.status_code == 200
        body = response.get_json()
        assert sorted(a["id"] for a in body["accounts"]) == sorted([*mine, theirs])
        assert {a["tenantId"] for a in body["accounts"]} == {str(caller.tenant_id)}
        assert body["pagination"] == {"total": 3, "limit": 100, "offset": 0}
    page = client.get("/api/v1/admin/accounts?limit=2&offset=2", headers=admin.headers).get_json()
    assert len(page["accounts"]) == 1 and page["pagination"] == {"total": 3, "limit": 2, "offset": 2}

    for user in (caller, colleague):
        denied = client.get("/api/v1/admin/accounts", headers=user.headers)
        assert denied.status_code == 403 and denied.get_json() == NOT_ADMIN
        probing = client.get("/api/v1/admin/accounts?limit=0&offset=-1", headers=user.headers)
        assert probing.status_code == 403, "the role is checked before the query string"
    assert client.get("/api/v1/admin/accounts?limit=0", headers=admin.headers).status_code == 400
    assert client.get("/api/v1/admin/accounts").get_json() == MISSING
    own = client.get("/api/v1/accounts", headers=admin.headers).get_json()
    assert own["accounts"] == [], "an admin's own list holds only the admin's accounts"


def test_generated_token_works(client: FlaskClient, ctx: ServiceContext, caller: Caller) -> None:
    create_account(client, caller.colleague(ctx))
    account = create_account(client, caller)
    for role in ("user", "admin"):
        minted = client.post(
            "/api/v1/test/generate-token",
            json={"tenant_id": str(caller.tenant_id), "user_id": str(caller.user_id), "role": role},
        )
        assert minted.status_code == 200
        body = minted.get_json()
        assert body["tokenType"] == "Bearer" and body["expiresIn"] > 0
        headers = _bearer(body["token"])
        listed = client.get("/api/v1/accounts", headers=headers)
        assert [a["id"] for a in listed.get_json()["accounts"]] == [account["id"]]
        admin_status = client.get("/api/v1/admin/accounts", headers=headers).status_code
        assert admin_status == (200 if role == "admin" else 403)

    alias = client.post(
        "/api/test/generate-token", json={"tenant_id": str(caller.tenant_id), "user_id": str(caller.user_id)}
    )
    assert alias.status_code == 200
    bad = client.post("/api/v1/test/generate-token", json={"tenant_id": "x", "user_id": str(caller.user_id)})
    assert bad.status_code == 400 and bad.get_json()["error"] == "Invalid request"
    ids = {"tenant_id": str(caller.tenant_id), "user_id": str(caller.user_id)}
    assert client.post("/api/v1/test/generate-token", json={**ids, "expires_in_hours": 1.5}).status_code == 400
    two_hours = client.post("/api/v1/test/generate-token", json={**ids, "expires_in_hours": 2})
    assert two_hours.get_json()["expiresIn"] == 7200
    root = client.post(
        "/api/v1/test/generate-token",
        json={"tenant_id": str(caller.tenant_id), "user_id": str(caller.user_id), "role": "root"},
    )
    assert root.status_code == 400


def test_generate_token_takes_camel_case_and_the_seed_names(client: FlaskClient, caller: Caller) -> None:
    tenant, user = str(caller.tenant_id), str(caller.user_id)
    account = create_account(client, caller)
    for body in (
        {"tenantId": tenant, "userId": user, "role": "admin", "expiresInHours": 2},
        {"tenant_id": tenant, "user_id": user, "role": "admin", "expires_in_hours": 2},  # seed 001
        {"tenantId": tenant, "user_id": user, "role": "admin", "expires_in_hours": 2},
    ):
        minted = client.post("/api/v1/test/generate-token", json=body)
        assert minted.status_code == 200, minted.get_json()
        assert set(minted.get_json()) == {"token", "tokenType", "expiresIn"}
        assert (minted.get_json()["tokenType"], minted.get_json()["expiresIn"]) == ("Bearer", 7200)
        claims = jwt.decode(minted.get_json()["token"], JWT_SECRET, algorithms=["HS256"])
        assert (claims["tenant_id"], claims["user_id"], claims["role"]) == (tenant, user, "admin")
        assert claims["exp"] - claims["iat"] == 7200
        listed = client.get("/api/v1/admin/accounts", headers=_bearer(minted.get_json()["token"]))
        assert [a["id"] for a in listed.get_json()["accounts"]] == [account["id"]]
    other = str(uuid.uuid4())
    for body, field in (
        ({"tenantId": tenant, "tenant_id": other, "userId": user}, "tenantId"),
        ({"tenantId": tenant, "userId": user, "user_id": user}, "userId"),
        ({"tenantId": tenant, "userId": user, "expiresInHours": 1, "expires_in_hours": 1}, "expiresInHours"),
        ({"userId": user}, "tenantId"),
        ({"tenant_id": tenant}, "userId"),
        ({"tenantId": tenant, "userId": user, "tenantID": tenant}, "tenantID"),
    ):
        refused = client.post("/api/v1/test/generate-token", json=body)
        assert refused.status_code == 400 and field in refused.get_json()["message"], refused.get_json()


def test_production_has_no_token_endpoint_and_no_header_auth(app_with: Callable[..., APIFlask], caller: Caller) -> None:
    client = app_with(**PRODUCTION).test_client()
    for path in ("/api/v1/test/generate-token", "/api/test/generate-token"):
        response = client.post(path, json={"tenant_id": str(caller.tenant_id), "user_id": str(caller.user_id)})
        assert response.status_code == 404
        assert "token" not in response.get_json()
    assert client.get("/api/v1/accounts", headers=caller.header_auth).get_json() == MISSING
    production_token = _signed(_claims(caller), secret=PRODUCTION["JWT_SECRET_KEY"])
    assert client.get("/api/v1/accounts", headers=production_token).status_code == 200
    _assert_unauthorized(client.get("/api/v1/accounts", headers=caller.headers))  # signed with the dev secret
    spec_paths = client.get("/api/v1/openapi.json").get_json()["paths"]
    assert "/api/v1/test/generate-token" not in spec_paths


def test_issuer_and_audience_are_checked_when_configured(app_with: Callable[..., APIFlask], caller: Caller) -> None:
    client = app_with(JWT_ISSUER="https://auth.example.com", JWT_AUDIENCE="email-service").test_client()
    good = _claims(caller, iss="https://auth.example.com", aud="email-service")
    assert client.get("/api/v1/accounts", headers=_signed(good)).status_code == 200
    for claims in (
        _claims(caller),
        _claims(caller, iss="https://evil.example.com", aud="email-service"),
        _claims(caller, iss="https://auth.example.com", aud="another-service"),
        _claims(caller, iss="https://auth.example.com"),
        _claims(caller, aud="email-service"),
    ):
        _assert_unauthorized(client.get("/api/v1/accounts", headers=_signed(claims)))
    minted = client.post(
        "/api/v1/test/generate-token", json={"tenant_id": str(caller.tenant_id), "user_id": str(caller.user_id)}
    )
    decoded = jwt.decode(minted.get_json()["token"], options={"verify_signature": False})
    assert (decoded["iss"], decoded["aud"]) == ("https://auth.example.com", "email-service")
    assert client.get("/api/v1/accounts", headers=_bearer(minted.get_json()["token"])).status_code == 200
