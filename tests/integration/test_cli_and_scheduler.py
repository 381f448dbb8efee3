"""The ``email-service`` command and the periodic scheduler (issue 2 section 1 and 6).

``serve`` is started as a real process on the embedded default (nothing but a data folder), exactly as the README
tells a new user; ``sync`` and ``token`` run through :func:`email_service.cli.main`.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import update

from email_service.cli import main
from email_service.config import Settings
from email_service.models import EmailAccount, SyncRun
from email_service.security.tokens import decode_jwt_token
from email_service.services.context import ServiceContext
from email_service.tasks.runner import InProcessJobRunner
from tests.conftest import Caller, cli_env, create_imap_account, wait_for_sync
from tests.support.dovecot import Dovecot

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.status, json.loads(response.read())


def _serve_env(data_dir: Path) -> dict[str, str]:
    """The environment of a user who configured nothing but the data folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "JWT_", "CREDENTIAL_", "TEST_"))}
    env["EMAIL_SERVICE_DATA_DIR"] = str(data_dir)
    return env


def _start_serve(data_dir: Path, port: int, **env: str) -> subprocess.Popen[bytes]:
    """``email-service serve`` as a real process, started with the common umask 022 (``env``: extra settings)."""
    return subprocess.Popen(
        [sys.executable, "-m", "email_service.cli", "serve", "--port", str(port)],
        env={**_serve_env(data_dir), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=lambda: os.umask(0o022),
    )


def _wait_healthy(process: subprocess.Popen[bytes], port: int) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        try:
            status, body = _get(f"http://127.0.0.1:{port}/health")
            assert status == 200
            return dict(body)
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                output = process.stdout.read().decode() if process.stdout and process.poll() is not None else ""
                raise AssertionError(f"serve did not answer: {output}") from None
            time.sleep(0.2)


def _stop(process: subprocess.Popen[bytes]) -> str:
    process.terminate()
    output, _ = process.communicate(timeout=10)
    return output.decode()


def test_serve_starts_on_the_embedded_default_with_nothing_configured(tmp_path: Path) -> None:
    port = _free_port()
    process = _start_serve(tmp_path / "instance", port)
    try:
        body = _wait_healthy(process, port)
        assert body["status"] == "healthy" and body["database"] == "ok"
        assert body["version"] == importlib.metadata.version("email-service")  # one version: the package's
        assert (tmp_path / "instance" / "email_service.db").exists()
        assert (tmp_path / "instance" / "secrets.json").stat().st_mode & 0o777 == 0o600
        headers = {"X-Tenant-ID": str(uuid.uuid4()), "X-User-ID": str(uuid.uuid4())}
        status, listing = _get(f"http://127.0.0.1:{port}/api/v1/accounts", headers)
        assert status == 200 and listing == {"accounts": [], "pagination": {"total": 0, "limit": 100, "offset": 0}}
    finally:
        output = _stop(process)
    assert "Context impl" not in output and "Will assume" not in output  # no Alembic chatter on start


def _create_dovecot_account(
    port: int, dovecot: Dovecot, user: str, password: str
) -> tuple[dict[str, str], str, dict[str, Any]]:
    """Register a Dovecot account with a served process, as a new user: ``(headers, accounts url, account)``."""
    headers = {"X-Tenant-ID": str(uuid.uuid4()), "X-User-ID": str(uuid.uuid4())}
    base = f"http://127.0.0.1:{port}/api/v1/accounts"
    account = _post(base, headers, {"accountName": "a", "emailAddress": user, "protocol": "imap",
                                    "hostname": dovecot.host, "port": dovecot.imap_port, "encryption": "none",
                                    "username": user, "password": password})  # fmt: skip
    return headers, base, account


def test_data_at_rest_is_private_whatever_the_umask(
    tmp_path: Path, dovecot: Dovecot, mail_user: tuple[str, str]
) -> None:
    """Issue 6 item 6: started with umask 022, the service keeps its folders 0700 and files 0600: the data
    folder, the SQLite database and its WAL/SHM files, the secrets, the blob store and every raw message."""
    user, password = mail_user
    dovecot.append(user, "INBOX", b"From: a@example.com\r\nSubject: private\r\n\r\nbody\r\n")
    data_dir, port = tmp_path / "instance", _free_port()
    process = _start_serve(data_dir, port)
    try:
        _wait_healthy(process, port)
        headers, base, account = _create_dovecot_account(port, dovecot, user, password)
        _post(f"{base}/{account['id']}/sync", headers, None)
        deadline = time.monotonic() + 30
        while _get(f"{base}/{account['id']}/sync", headers)[1]["state"] not in ("succeeded", "failed"):
            assert time.monotonic() < deadline, "sync did not finish"
            time.sleep(0.2)
        assert _get(f"{base}/{account['id']}/sync", headers)[1]["state"] == "succeeded"
        folders = [data_dir, *(p for p in data_dir.rglob("*") if p.is_dir())]
        files = [p for p in data_dir.rglob("*") if p.is_file()]
        assert any(p.name.endswith("-wal") for p in files) and any(
            p.parent.parent.parent.name == "blobs" and p.parent.parent.name == headers["X-Tenant-ID"] for p in files
        )
        assert {str(p): oct(p.stat().st_mode & 0o777) for p in folders} == {str(p): "0o700" for p in folders}
        assert {str(p): oct(p.stat().st_mode & 0o777) for p in files} == {str(p): "0o600" for p in files}
    finally:
        _stop(process)


def test_serve_pushes_new_mail_with_idle_without_any_scheduled_sync(
    tmp_path: Path, dovecot: Dovecot, mail_user: tuple[str, str]
) -> None:
    """The embedded default watches the account's INBOX with IDLE in the serve process itself (issue 8): with the
    scheduler off and no sync requested, delivered mail is listed by the API, through runs triggered by push."""
    user, password = mail_user
    port = _free_port()
    # leases of 8 s: the watchers are reconciled every 2 s, so the new account is watched soon
    process = _start_serve(tmp_path / "instance", port, SCHEDULER_ENABLED="false", PUSH_LEASE_SECONDS="8")
    try:
        _wait_healthy(process, port)
        headers, base, account = _create_dovecot_account(port, dovecot, user, password)
        deadline = time.monotonic() + 30
        while _get(f"{base}/{account['id']}/sync", headers)[1]["state"] != "succeeded":  # the watcher's catch-up
            assert time.monotonic() < deadline, "no push run after the watcher connected"
            time.sleep(0.5)
        dovecot.deliver(user, b"From: a@example.com\r\nSubject: pushed to serve\r\n\r\nbody\r\n")
        deadline = time.monotonic() + 30
        messages = f"{base}/{account['id']}/messages"
        while not any(m["subject"] == "pushed to serve" for m in _get(messages, headers)[1]["messages"]):
            assert time.monotonic() < deadline, "pushed mail not listed"
            time.sleep(0.5)
        assert _get(f"{base}/{account['id']}/sync", headers)[1]["trigger"] == "push"
    finally:
        _stop(process)


def test_serve_on_a_taken_port_says_so_in_one_line_and_exits_1(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = _start_serve(tmp_path / "instance", port)
        output, _ = process.communicate(timeout=30)
    lines = [line for line in output.decode().splitlines() if line.strip()]
    assert process.returncode == 1
    assert lines == [f"email-service: cannot listen on 127.0.0.1:{port}: address already in use"]


def _post(url: str, headers: dict[str, str], body: Any) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, method="POST", headers={**headers, "Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_token_command_mints_a_token_the_service_accepts(
    settings: Settings, ctx: ServiceContext, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JWT_SECRET_KEY", settings.jwt_secret_key)
    monkeypatch.setenv("EMAIL_SERVICE_DATA_DIR", str(settings.data_dir))
    tenant, user = uuid.uuid4(), uuid.uuid4()
    assert main(["token", "--tenant", str(tenant), "--user", str(user), "--role", "admin"]) == 0
    principal = decode_jwt_token(ctx.tokens, capsys.readouterr().out.strip())
    assert (principal.tenant_id, principal.user_id, principal.role) == (tenant, user, "admin")
    assert main(["token", "--tenant", "not-a-uuid", "--user", str(user)]) == 2


def _create(client: FlaskClient, caller: Caller, dovecot: Dovecot, user: str, password: str) -> str:
    return create_imap_account(client, caller, dovecot.host, dovecot.imap_port, user, password)


def test_sync_command_runs_one_sync_and_reports_it(
    client: FlaskClient,
    caller: Caller,
    dovecot: Dovecot,
    mail_user: tuple[str, str],
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    user, password = mail_user
    dovecot.append(user, "INBOX", b"From: a@example.com\r\nSubject: cli\r\n\r\nbody\r\n")
    account_id = _create(client, caller, dovecot, user, password)
    for name, value in cli_env(settings).items():
        monkeypatch.setenv(name, value)
    capsys.readouterr()
    assert main(["sync", account_id]) == 0
    outcome = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert outcome["state"] == "succeeded" and outcome["messagesAdded"] == 1
    status = client.get(f"/api/v1/accounts/{account_id}/sync", headers=caller.headers).get_json()
    assert status["syncId"] == outcome["syncId"] and status["trigger"] == "cli"
    assert main(["sync", str(uuid.uuid4())]) == 2


def _age(ctx: ServiceContext, caller: Caller, account_id: str, by_ms: int) -> None:
    """Move the account's last sync and every sync attempt ``by_ms`` into the past."""
    with ctx.db.tenant_session(caller.tenant_id) as session:
        account = session.get(EmailAccount, uuid.UUID(account_id))
        assert account is not None
        account.last_sync_at = (account.last_sync_at or 0) - by_ms
        session.execute(
            update(SyncRun).where(SyncRun.account_id == account.id).values(created_at=SyncRun.created_at - by_ms)
        )


def test_scheduler_queues_due_accounts_only(
    client: FlaskClient,
    caller: Caller,
    dovecot: Dovecot,
    mail_user: tuple[str, str],
    ctx: ServiceContext,
    runner: InProcessJobRunner,
) -> None:
    user, password = mail_user
    account_id = _create(client, caller, dovecot, user, password)
    assert runner.schedule_due([caller.tenant_id]) >= 1  # never synced: due at once
    status = wait_for_sync(client, account_id, caller.headers)
    assert status["state"] == "succeeded" and status["trigger"] == "scheduler"
    assert status["lastSyncAt"] is not None and status["isSyncing"] is False

    before = status["syncId"]
    runner.schedule_due([caller.tenant_id])  # synced a moment ago, interval 300 s: not due
    assert client.get(f"/api/v1/accounts/{account_id}/sync", headers=caller.headers).get_json()["syncId"] == before

    _age(ctx, caller, account_id, 301_000)
    runner.schedule_due([caller.tenant_id])
    status = wait_for_sync(client, account_id, caller.headers)
    assert status["syncId"] != before and status["trigger"] == "scheduler"

    client.put(f"/api/v1/accounts/{account_id}", headers=caller.headers, json={"isSyncEnabled": False})
    _age(ctx, caller, account_id, 10**9)
    latest = status["syncId"]
    runner.schedule_due([caller.tenant_id])
    assert client.get(f"/api/v1/accounts/{account_id}/sync", headers=caller.headers).get_json()["syncId"] == latest


def test_a_second_sync_request_while_one_is_active_returns_the_same_run(
    client: FlaskClient, caller: Caller, dovecot: Dovecot, mail_user: tuple[str, str]
) -> None:
    user, password = mail_user
    dovecot.write_maildir(user, "INBOX", (f"Subject: m{i}\n\nbody {i}\n".encode() for i in range(300)))
    account_id = _create(client, caller, dovecot, user, password)
    first = client.post(f"/api/v1/accounts/{account_id}/sync", headers=caller.headers).get_json()
    second = client.post(f"/api/v1/accounts/{account_id}/sync", headers=caller.headers).get_json()
    if second["created"] is False:
        assert second["syncId"] == first["syncId"]
    status = wait_for_sync(client, account_id, caller.headers)
    assert status["state"] == "succeeded"
    folders = client.get(f"/api/v1/accounts/{account_id}/folders", headers=caller.headers).get_json()["folders"]
    inbox = next(f for f in folders if f["role"] == "inbox")
    assert inbox["totalCount"] == 300


def test_scheduler_retries_a_failing_account_once_per_interval_not_every_tick(
    client: FlaskClient,
    caller: Caller,
    dovecot: Dovecot,
    mail_user: tuple[str, str],
    ctx: ServiceContext,
    runner: InProcessJobRunner,
) -> None:
    user, _password = mail_user
    account_id = _create(client, caller, dovecot, user, "wrong password")
    assert runner.schedule_due([caller.tenant_id]) == 1
    failed = wait_for_sync(client, account_id, caller.headers)
    assert failed["state"] == "failed" and failed["lastSyncAt"] is None
    assert runner.schedule_due([caller.tenant_id]) == 0  # attempted a moment ago: not again before 300 s
    _age(ctx, caller, account_id, 300_000)
    assert runner.schedule_due([caller.tenant_id]) == 1
    assert wait_for_sync(client, account_id, caller.headers)["syncId"] != failed["syncId"]
