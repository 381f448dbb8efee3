"""Seeds 000/001 cross-cutting rules through HTTP: 50 requests per minute per user (Redis, or memory when Redis is
down), CORS for the configured frontend origin, and one request log line with the caller, never a secret."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from apiflask import APIFlask
from flask.testing import FlaskClient

from email_service.services.context import ServiceContext
from tests.conftest import Caller, account_body, wait_for_sync
from tests.integration.api.conftest import create_account
from tests.support.dovecot import Dovecot

pytestmark = pytest.mark.integration

LIMIT = 50
REDIS_DB_URL = "redis://127.0.0.1:6379/15"
ORIGIN = "http://localhost:3000"


def _assert_rate_limited(response: Any) -> None:
    assert response.status_code == 429, response.get_json()
    body = response.get_json()
    assert set(body) == {"error", "message"} and body["error"] == "Rate limit exceeded" and body["message"]
    assert int(response.headers["Retry-After"]) > 0


def _spend(client: FlaskClient, caller: Caller, account_id: str, count: int) -> list[int]:
    """``count`` requests spread over several endpoints; their status codes."""
    urls = [
        "/api/v1/accounts",
        f"/api/v1/accounts/{account_id}",
        f"/api/accounts/{account_id}/sync",
        f"/api/v1/accounts/{account_id}/folders",
    ]
    return [client.get(urls[i % len(urls)], headers=caller.headers).status_code for i in range(count)]


def test_the_51st_request_of_a_user_in_a_minute_is_refused(client: FlaskClient, caller: Caller) -> None:
    account_id = create_account(client, caller)["id"]  # request 1
    assert set(_spend(client, caller, account_id, LIMIT - 1)) == {200}
    _assert_rate_limited(client.get("/api/v1/accounts", headers=caller.headers))
    _assert_rate_limited(client.post("/api/v1/accounts", headers=caller.headers, json=account_body()))
    assert client.get("/api/v1/accounts", headers=caller.header_auth).status_code == 429, "same user, other auth"


def test_successful_responses_carry_the_rate_limit_headers_and_no_retry_after(
    client: FlaskClient, caller: Caller
) -> None:
    account_id = create_account(client, caller)["id"]  # request 1
    for used in range(2, LIMIT + 1):
        response = client.get(f"/api/v1/accounts/{account_id}", headers=caller.headers)
        assert response.status_code == 200
        assert "Retry-After" not in response.headers, "a success must not tell the client to wait"
        assert int(response.headers["X-RateLimit-Limit"]) == LIMIT
        assert int(response.headers["X-RateLimit-Remaining"]) == LIMIT - used
        assert int(response.headers["X-RateLimit-Reset"]) > time.time() - 1  # epoch seconds
    refused = client.get("/api/v1/accounts", headers=caller.headers)
    _assert_rate_limited(refused)
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    assert 0 < int(refused.headers["Retry-After"]) <= 60
    assert int(refused.headers["X-RateLimit-Reset"]) - time.time() <= int(refused.headers["Retry-After"]) + 1


def test_errors_other_than_429_carry_no_retry_after(client: FlaskClient, caller: Caller) -> None:
    for response in (
        client.get(f"/api/v1/accounts/{uuid.uuid4()}", headers=caller.headers),
        client.get("/api/v1/accounts?limit=0", headers=caller.headers),
        client.get("/api/v1/accounts"),
    ):
        assert response.status_code in (400, 401, 404)
        assert "Retry-After" not in response.headers and "X-RateLimit-Limit" in response.headers
    health = client.get("/health")
    assert "Retry-After" not in health.headers and "X-RateLimit-Limit" not in health.headers, "not rate limited"


def test_other_users_and_health_are_not_affected(client: FlaskClient, ctx: ServiceContext, caller: Caller) -> None:
    account_id = create_account(client, caller)["id"]
    _spend(client, caller, account_id, LIMIT + 5)
    _assert_rate_limited(client.get("/api/v1/accounts", headers=caller.headers))

    colleague = caller.colleague(ctx)
    assert client.get("/api/v1/accounts", headers=colleague.headers).status_code == 200
    assert all(client.get("/health").status_code == 200 for _ in range(LIMIT + 5))


@pytest.fixture
def redis_db() -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(REDIS_DB_URL)
    yield connection
    connection.close()


def test_the_counter_lives_in_redis_when_configured(
    app_with: Callable[..., APIFlask], caller: Caller, redis_db: redis.Redis
) -> None:
    first = app_with(REDIS_URL=REDIS_DB_URL).test_client()
    account_id = create_account(first, caller)["id"]
    _spend(first, caller, account_id, LIMIT - 11)
    keys = [k.decode() for k in redis_db.scan_iter(match=f"*{caller.user_id}*")]
    assert keys, "a rate-limit counter for the user is in Redis"
    try:
        second = app_with(REDIS_URL=REDIS_DB_URL).test_client()  # another process sharing the counter
        assert set(_spend(second, caller, account_id, 10)) == {200}
        _assert_rate_limited(second.get("/api/v1/accounts", headers=caller.headers))
        _assert_rate_limited(first.get("/api/v1/accounts", headers=caller.headers))
    finally:
        redis_db.delete(*keys)


def test_unreachable_redis_falls_back_to_memory(app_with: Callable[..., APIFlask], caller: Caller) -> None:
    client = app_with(REDIS_URL="redis://127.0.0.1:1/0").test_client()
    account_id = create_account(client, caller)["id"]
    assert set(_spend(client, caller, account_id, LIMIT - 1)) == {200}
    _assert_rate_limited(client.get("/api/v1/accounts", headers=caller.headers))


# --- CORS --------------------------------------------------------------------------------------------------


def _preflight(client: FlaskClient, path: str, origin: str, method: str = "POST") -> Any:
    return client.options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "Authorization, Content-Type",
        },
    )


@pytest.mark.parametrize("path", ["/api/v1/accounts", "/api/accounts", f"/api/v1/accounts/{uuid.uuid4()}"])
def test_preflight_from_the_frontend_origin_is_allowed_without_auth(client: FlaskClient, path: str) -> None:
    response = _preflight(client, path, ORIGIN, method="PUT")
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    methods = {m.strip() for m in response.headers["Access-Control-Allow-Methods"].split(",")}
    assert {"GET", "POST", "PUT", "DELETE"} <= methods
    headers = {h.strip().lower() for h in response.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"authorization", "content-type"} <= headers


def test_preflight_from_another_origin_gets_no_cors_headers(client: FlaskClient, caller: Caller) -> None:
    response = _preflight(client, "/api/v1/accounts", "https://evil.example.com")
    assert "Access-Control-Allow-Origin" not in response.headers
    plain = client.get("/api/v1/accounts", headers={**caller.headers, "Origin": "https://evil.example.com"})
    assert "Access-Control-Allow-Origin" not in plain.headers


def test_responses_to_the_frontend_expose_the_rate_limit_headers(client: FlaskClient, caller: Caller) -> None:
    response = client.get("/api/v1/accounts", headers={**caller.headers, "Origin": ORIGIN})
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    exposed = {h.strip().lower() for h in response.headers["Access-Control-Expose-Headers"].split(",")}
    assert "retry-after" in exposed


DEV_SERVERS = [f"http://{host}:{port}" for port in (3000, 5173, 8080, 4200) for host in ("localhost", "127.0.0.1")]


def test_the_development_default_allows_the_local_dev_servers(app_with: Callable[..., APIFlask]) -> None:
    client = app_with(CORS_ORIGINS=None).test_client()
    for origin in DEV_SERVERS:
        response = _preflight(client, "/api/v1/accounts", origin)
        assert response.headers.get("Access-Control-Allow-Origin") == origin, origin
    for origin in ("http://localhost:5174", "https://localhost:5173", "http://evil.example:5173"):
        assert "Access-Control-Allow-Origin" not in _preflight(client, "/api/v1/accounts", origin).headers


def test_production_allows_only_its_configured_origins(app_with: Callable[..., APIFlask]) -> None:
    production = {
        "FLASK_ENV": "production",
        "JWT_SECRET_KEY": "p" * 48,
        "AUTH_TRUST_HEADERS": "false",
        "CORS_ORIGINS": "https://mail.example.com",
    }
    client = app_with(**production).test_client()
    allowed = _preflight(client, "/api/v1/accounts", "https://mail.example.com")
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://mail.example.com"
    for env in (production, {**production, "CORS_ORIGINS": None}):
        client = app_with(**env).test_client()
        for origin in ("http://localhost:5173", "http://127.0.0.1:8080", "http://localhost:4200"):
            assert "Access-Control-Allow-Origin" not in _preflight(client, "/api/v1/accounts", origin).headers


def test_preflights_do_not_use_up_the_rate_limit(client: FlaskClient, caller: Caller) -> None:
    for _ in range(LIMIT + 5):
        assert _preflight(client, "/api/v1/accounts", ORIGIN).status_code == 200
    assert client.get("/api/v1/accounts", headers=caller.headers).status_code == 200


# --- request log -------------------------------------------------------------------------------------------


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    for name in ("email_service", "werkzeug", "flask-limiter", "imapclient"):
        caplog.set_level(logging.DEBUG, logger=name)
    caplog.set_level(logging.DEBUG)
    return caplog


def _request_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "email_service.request"]


def _everything_logged(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(f"{r.getMessage()} {r.exc_text or ''} {r.args!r}" for r in caplog.records)


def test_each_request_is_logged_with_the_caller(
    client: FlaskClient, ctx: ServiceContext, caller: Caller, logs: pytest.LogCaptureFixture
) -> None:
    admin = caller.colleague(ctx, "admin")
    create_account(client, caller)
    client.get("/api/v1/admin/accounts", headers=admin.headers)
    client.get("/api/v1/accounts")
    created, admin_list, anonymous = _request_lines(logs)[-3:]
    for part in (
        "method=POST",
        "endpoint=/api/v1/accounts ",
        "status=201",
        f"user_id={caller.user_id}",
        f"tenant_id={caller.tenant_id}",
        "role=user",
    ):
        assert part in created
    for part in (
        "method=GET",
        "endpoint=/api/v1/admin/accounts",
        "status=200",
        "role=admin",
        f"user_id={admin.user_id}",
    ):
        assert part in admin_list
    assert "status=401" in anonymous and "user_id=-" in anonymous


def test_no_secret_is_ever_logged(client: FlaskClient, caller: Caller, logs: pytest.LogCaptureFixture) -> None:
    password = f"Hunter2-{uuid.uuid4().hex}"
    token = caller.headers["Authorization"].split()[1]
    account_id = client.post(
        "/api/v1/accounts",
        headers=caller.headers,
        json=account_body(password=password, hostname="127.0.0.1", port=1, encryption="none"),
    ).get_json()["id"]
    client.put(
        f"/api/v1/accounts/{account_id}?password={password}", headers=caller.headers, json={"password": password + "x"}
    )
    client.post(f"/api/v1/accounts/{account_id}/test", headers=caller.headers)
    client.post("/api/v1/accounts", headers=caller.headers, json=account_body(password=password, port=0))
    client.get("/api/v1/accounts", headers={"Authorization": f"Bearer {token}x"})
    logged = _everything_logged(logs)
    assert _request_lines(logs), "the requests were logged"
    for secret in (password, token, token[:40]):
        assert secret not in logged


def test_a_failed_login_reports_the_server_error_without_the_password(
    client: FlaskClient,
    caller: Caller,
    dovecot: Dovecot,
    mail_user: tuple[str, str],
    logs: pytest.LogCaptureFixture,
) -> None:
    user, _right = mail_user
    wrong = f"Wrong-{uuid.uuid4().hex}"
    account_id = client.post(
        "/api/v1/accounts",
        headers=caller.headers,
        json=account_body(
            emailAddress=user,
            hostname=dovecot.host,
            port=dovecot.imap_port,
            encryption="none",
            username=user,
            password=wrong,
        ),
    ).get_json()["id"]
    tested = client.post(f"/api/v1/accounts/{account_id}/test", headers=caller.headers)
    assert tested.status_code == 200
    report = tested.get_json()
    assert report["success"] is False and report["errorKind"] == "AuthenticationFailed" and report["error"]
    assert client.post(f"/api/v1/accounts/{account_id}/sync", headers=caller.headers).status_code == 202
    status = wait_for_sync(client, account_id, caller.headers)
    assert status["state"] == "failed" and status["lastError"]["kind"] == "AuthenticationFailed"
    for text in (tested.get_data(as_text=True), str(status), _everything_logged(logs)):
        assert wrong not in text


def test_a_browser_frontend_may_call_health(client: FlaskClient) -> None:
    response = client.get("/health", headers={"Origin": ORIGIN})
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert (
        "Access-Control-Allow-Origin" not in client.get("/health", headers={"Origin": "https://evil.example"}).headers
    )
