"""The service killed (SIGKILL) after answering a change and before writing it back still applies it after a
restart (issue 8): a real ``email-service serve`` process, its IMAP connection held by a relay until it is killed.

On the PostgreSQL run the service uses a private PostgreSQL database (migrated by ``serve`` itself, the app
connecting as the non-owner role); on the SQLite run, the embedded default's SQLite file.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.writeback.conftest import raw_message, server_state
from tests.support.databases import postgres_database
from tests.support.dovecot import Dovecot
from tests.support.imap_relay import ImapRelay
from tests.support.services import ServiceProcess, free_port, wait_until

pytestmark = pytest.mark.integration
TENANT, USER = str(uuid.uuid4()), str(uuid.uuid4())
HEADERS = {"X-Tenant-ID": TENANT, "X-User-ID": USER, "Content-Type": "application/json"}


@pytest.fixture
def serve_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment of ``serve``: its own data folder (and, on the PostgreSQL run, its own database)."""
    env = {"EMAIL_SERVICE_DATA_DIR": str(tmp_path / "data"), "SCHEDULER_ENABLED": "false", "MAIL_TIMEOUT_SECONDS": "5"}
    admin_url = os.environ.get("TEST_DATABASE_URL")
    if not admin_url:
        yield env
        return
    with postgres_database(admin_url) as (owner_url, app_url):
        yield {**env, "DATABASE_URL": app_url, "DATABASE_MIGRATION_URL": owner_url}


def _call(port: int, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1{path}", data, HEADERS, method=method)
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, json.loads(response.read())


def _answers(port: int) -> bool:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).close()
        return True
    except OSError:
        return False


def _serve(env: dict[str, str], port: int, log_path: Path) -> ServiceProcess:
    process = ServiceProcess(["serve", "--port", str(port)], env, log_path).start()
    try:
        wait_until(lambda: _answers(port) or not process.running(), 60, "serve to answer")
        assert process.running(), process.output()
    except BaseException:
        process.kill()
        raise
    return process


def test_a_change_answered_before_a_kill_reaches_the_server_after_restart(
    dovecot: Dovecot, mail_user: tuple[str, str], serve_env: dict[str, str], tmp_path: Path
) -> None:
    user, password = mail_user
    dovecot.append(user, "INBOX", raw_message("read before the crash"))
    port = free_port()
    with ImapRelay(dovecot.host, dovecot.imap_port) as relay:
        process = _serve(serve_env, port, tmp_path / "serve.log")
        try:
            _status, account = _call(port, "POST", "/accounts", {
                "accountName": "Crash", "emailAddress": user, "protocol": "imap", "hostname": "127.0.0.1",
                "port": relay.port, "encryption": "none", "username": user, "password": password,
            })  # fmt: skip
            account_id = account["id"]
            _call(port, "POST", f"/accounts/{account_id}/sync")
            wait_until(lambda: _call(port, "GET", f"/accounts/{account_id}/sync")[1]["state"] == "succeeded")
            [message] = _call(port, "GET", f"/accounts/{account_id}/messages")[1]["messages"]

            relay.hold()  # the server is unreachable: the write-back cannot happen before the kill
            status, body = _call(port, "PATCH", f"/messages/{message['id']}", {"isRead": True})
            assert status == 200 and body["isRead"] is True and body["pendingChanges"] is True
            time.sleep(0.5)
        finally:
            process.kill()
        [(_subject, flags)] = server_state(dovecot, user, "INBOX").values()
        assert flags == set(), "nothing was written back before the kill"

        relay.release()
        restarted = _serve(serve_env, port, tmp_path / "restarted.log")
        try:
            wait_until(
                lambda: next(iter(server_state(dovecot, user, "INBOX").values()))[1] == {"\\Seen"},
                timeout=30,
                what="the change on the server after the restart",
            )
            wait_until(lambda: _call(port, "GET", f"/accounts/{account_id}/actions?state=pending")[1]["actions"] == [])
            [applied] = _call(port, "GET", f"/accounts/{account_id}/actions?state=applied")[1]["actions"]
            assert applied["kind"] == "flags" and applied["messageId"] == message["id"]
            after = _call(port, "GET", f"/messages/{message['id']}")[1]
            assert after["isRead"] is True and after["pendingChanges"] is False
        finally:
            restarted.stop()
