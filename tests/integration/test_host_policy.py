"""Mail-host rules at connect time, through HTTP against the real service and database (issue 6 item 1).

An account registered while its host was allowed (allow-list) must not be dialled once the rules refuse it
(allow-list changed, production policy): sync ends ``failed`` with ``HostNotAllowed``, ``/test`` reports it, and
a listening socket on the account's port sees no connection attempt at all.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from email_service.app import create_app
from email_service.services.context import ServiceContext, build_context
from email_service.tasks.runner import InProcessJobRunner
from tests.conftest import Caller, account_body, make_settings, wait_for_sync

pytestmark = pytest.mark.integration

PRODUCTION_RULE = {"ALLOW_PRIVATE_MAIL_HOSTS": "false"}


@contextlib.contextmanager
def _listener() -> Iterator[socket.socket]:
    """A listening loopback socket that never accepts on its own: any connect lands in its backlog."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.setblocking(False)
        yield server


def _connection_attempts(server: socket.socket) -> int:
    attempts = 0
    while True:
        try:
            connection, _ = server.accept()
        except BlockingIOError:
            return attempts
        connection.close()
        attempts += 1


@contextlib.contextmanager
def _service(
    data_dir: Path, database_urls: tuple[str, str], **env: str
) -> Iterator[tuple[FlaskClient, ServiceContext]]:
    """The service with these settings over the session's database, with its own in-process job runner."""
    runner = InProcessJobRunner(workers=1)
    ctx = build_context(make_settings(data_dir, database_urls, **env), jobs=runner)
    runner.bind(ctx)
    try:
        yield create_app(context=ctx).test_client(), ctx
    finally:
        runner.shutdown(wait=True)
        ctx.db.dispose()


def _create(client: FlaskClient, caller: Caller, **fields: Any) -> str:
    body = account_body(encryption="none", isSyncEnabled=False, **fields)
    response = client.post("/api/v1/accounts", headers=caller.headers, json=body)
    assert response.status_code == 201, response.get_json()
    return str(response.get_json()["id"])


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_sync_and_test_of_a_host_no_longer_allowed_dial_nothing(
    data_dir: Path, database_urls: tuple[str, str], host: str
) -> None:
    with _listener() as server:
        port = server.getsockname()[1]
        with _service(data_dir, database_urls, MAIL_HOST_ALLOWLIST=host, **PRODUCTION_RULE) as (client, ctx):
            caller = Caller(ctx)
            account_id = _create(client, caller, hostname=host, port=port)
        with _service(data_dir, database_urls, **PRODUCTION_RULE) as (client, ctx):
            started = client.post(f"/api/v1/accounts/{account_id}/sync", headers=caller.headers)
            assert started.status_code == 202
            status = wait_for_sync(client, account_id, caller.headers)
            assert status["state"] == "failed" and status["isSyncing"] is False
            assert status["lastError"]["kind"] == "HostNotAllowed"
            assert f"{host!r}" in status["lastError"]["message"] and "loopback" in status["lastError"]["message"]
            report = client.post(f"/api/v1/accounts/{account_id}/test", headers=caller.headers).get_json()
            assert report["success"] is False and report["errorKind"] == "HostNotAllowed"
            assert "127.0.0.1" in report["error"]
        assert _connection_attempts(server) == 0


def test_pop3_test_of_a_host_no_longer_allowed_dials_nothing(data_dir: Path, database_urls: tuple[str, str]) -> None:
    with _listener() as server:
        port = server.getsockname()[1]
        with _service(data_dir, database_urls, MAIL_HOST_ALLOWLIST="127.0.0.0/8", **PRODUCTION_RULE) as (client, ctx):
            caller = Caller(ctx)
            account_id = _create(client, caller, protocol="pop3", hostname="localhost", port=port)
        with _service(data_dir, database_urls, MAIL_HOST_ALLOWLIST="10.0.0.0/8", **PRODUCTION_RULE) as (client, _):
            report = client.post(f"/api/v1/accounts/{account_id}/test", headers=caller.headers).get_json()
        assert report == {**report, "success": False, "protocol": "pop3", "errorKind": "HostNotAllowed"}
        assert _connection_attempts(server) == 0


def test_the_same_policy_still_dials_an_allowed_host(data_dir: Path, database_urls: tuple[str, str]) -> None:
    """Control for the tests above: under the allow-list the very same account is dialled (and the listener,
    which speaks no IMAP, sees the attempt)."""
    with _listener() as server:
        port = server.getsockname()[1]
        env = {"MAIL_HOST_ALLOWLIST": "localhost", "MAIL_TIMEOUT_SECONDS": "1", **PRODUCTION_RULE}
        with _service(data_dir, database_urls, **env) as (client, ctx):
            caller = Caller(ctx)
            account_id = _create(client, caller, hostname="localhost", port=port)
            report = client.post(f"/api/v1/accounts/{account_id}/test", headers=caller.headers).get_json()
        assert report["success"] is False and report["errorKind"] == "ConnectionFailed"
        assert _connection_attempts(server) == 1


@pytest.mark.parametrize("field", ["hostname", "smtpHostname"])
def test_create_and_update_refuse_a_host_the_connector_would_refuse(
    data_dir: Path, database_urls: tuple[str, str], field: str
) -> None:
    with _service(data_dir, database_urls, MAIL_HOST_ALLOWLIST="10.9.0.0/16", **PRODUCTION_RULE) as (client, ctx):
        caller = Caller(ctx)
        refused = client.post(
            "/api/v1/accounts", headers=caller.headers, json=account_body(**{field: "192.168.1.25"})
        ).get_json()
        assert refused["error"] == "Invalid request" and refused["message"].startswith(f"{field}: ")
        assert (
            "'192.168.1.25' is a non-public address: private (RFC 1918)" in refused["message"]
            and field in refused["details"]
        )
        account_id = _create(client, caller, **{field: "10.9.8.7"})
        response = client.put(f"/api/v1/accounts/{account_id}", headers=caller.headers, json={field: "10.8.0.1"})
        assert response.status_code == 400 and response.get_json()["message"].startswith(f"{field}: ")
