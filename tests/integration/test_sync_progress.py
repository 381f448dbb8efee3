"""Sync progress (issue 7): ``GET /accounts/{id}/sync`` while a sync runs, and the ``sync`` command's display.

The sync is held at a known point (its second ``UID FETCH`` batch waits for the test) so the figures can be read
while it runs; the server, the database and the API are the real ones.
"""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from flask.testing import FlaskClient

from email_service.cli import main
from email_service.config import Settings
from email_service.protocols.imap import FetchedMessage, ImapSession
from email_service.services.context import ServiceContext
from tests.conftest import Caller, cli_env, create_imap_account, wait_for_sync
from tests.support.dovecot import Dovecot

pytestmark = pytest.mark.integration


def _status(client: FlaskClient, caller: Caller, account_id: str) -> dict[str, Any]:
    body: dict[str, Any] = client.get(f"/api/v1/accounts/{account_id}/sync", headers=caller.headers).get_json()
    return body


def test_progress_is_visible_while_a_sync_runs(
    client: FlaskClient,
    caller: Caller,
    dovecot: Dovecot,
    mail_user: tuple[str, str],
    ctx: ServiceContext,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    user, password = mail_user
    batch = ctx.settings.sync_batch_size
    total = 2 * batch + 50
    dovecot.write_maildir(user, "INBOX", (f"Subject: n{i}\n\nbody {i}\n".encode() for i in range(total)))
    account_id = create_imap_account(client, caller, dovecot.host, dovecot.imap_port, user, password)
    assert _status(client, caller, account_id)["progress"] is None  # no run yet

    second_batch, release = threading.Event(), threading.Event()
    fetch = ImapSession.fetch_messages
    calls: list[int] = []

    def held(session: ImapSession, uids: Sequence[int], batch_size: int = 200) -> Iterator[FetchedMessage]:
        calls.append(len(uids))
        if len(calls) == 2:  # the first batch went to the writer; hold the sync here
            second_batch.set()
            assert release.wait(60)
        yield from fetch(session, uids, batch_size)

    monkeypatch.setattr(ImapSession, "fetch_messages", held)
    assert client.post(f"/api/v1/accounts/{account_id}/sync", headers=caller.headers).status_code == 202
    try:
        assert second_batch.wait(60)
        deadline = time.monotonic() + 30
        status = _status(client, caller, account_id)
        while status["progress"]["folderMessagesFetched"] < batch and time.monotonic() < deadline:
            time.sleep(0.05)  # the writer thread commits the first batch
            status = _status(client, caller, account_id)
    finally:
        release.set()
    assert status["state"] == "running" and status["isSyncing"] is True
    progress = status["progress"]
    folders = 6  # INBOX and the five SPECIAL-USE mailboxes
    assert progress == {
        "foldersDone": 0,
        "foldersTotal": folders,
        "currentFolder": "INBOX",
        "folderMessagesFetched": batch,
        "folderMessagesExpected": total,
        "messagesFetched": batch,
        "percent": round(100 * batch / total / folders, 1),
    }
    assert status["counts"]["messagesAdded"] == batch

    final = wait_for_sync(client, account_id, caller.headers)
    assert final["state"] == "succeeded"
    assert final["progress"] == {
        **final["progress"],
        "foldersDone": folders,
        "currentFolder": None,
        "messagesFetched": total,
        "percent": 100.0,
    }


def _cli_env(settings: Settings) -> dict[str, str]:
    return {**cli_env(settings), "SYNC_BATCH_SIZE": "50"}


def test_sync_command_prints_progress_lines_and_one_json_line(
    client: FlaskClient,
    caller: Caller,
    dovecot: Dovecot,
    mail_user: tuple[str, str],
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    user, password = mail_user
    dovecot.write_maildir(user, "INBOX", (f"Subject: n{i}\n\nbody {i}\n".encode() for i in range(120)))
    account_id = create_imap_account(client, caller, dovecot.host, dovecot.imap_port, user, password)
    for name, value in _cli_env(settings).items():
        monkeypatch.setenv(name, value)
    capsys.readouterr()
    assert main(["sync", account_id]) == 0
    captured = capsys.readouterr()
    [line] = captured.out.splitlines()  # stdout: the outcome only
    assert json.loads(line)["messagesAdded"] == 120
    progress = [text for text in captured.err.splitlines() if text.startswith("sync: ")]
    assert progress[0] == "sync: INBOX: 0/0 new messages (folder 1/6, 0%)"
    assert "sync: INBOX: 0/120 new messages (folder 1/6, 0%)" in progress
    assert any(text.startswith("sync: Trash: ") for text in progress)


def test_sync_command_draws_a_progress_bar_on_a_terminal(
    client: FlaskClient, caller: Caller, dovecot: Dovecot, mail_user: tuple[str, str], settings: Settings
) -> None:
    user, password = mail_user
    dovecot.write_maildir(user, "INBOX", (f"Subject: n{i}\n\nbody {i}\n".encode() for i in range(120)))
    account_id = create_imap_account(client, caller, dovecot.host, dovecot.imap_port, user, password)
    terminal, terminal_side = pty.openpty()
    chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: chunks.extend(iter(lambda: _read(terminal), b"")), daemon=True)
    try:
        with subprocess.Popen(
            [sys.executable, "-m", "email_service.cli", "sync", account_id],
            env={**os.environ, **_cli_env(settings)},
            stdout=subprocess.PIPE,
            stderr=terminal_side,
        ) as process:
            os.close(terminal_side)
            reader.start()
            stdout, _ = process.communicate(timeout=120)
        reader.join(timeout=10)
    finally:
        os.close(terminal)
    drawn = b"".join(chunks)
    assert process.returncode == 0, drawn
    assert json.loads(stdout.decode().strip())["messagesAdded"] == 120
    screen = drawn.decode(errors="replace")
    assert "\r" in screen and "100%" in screen and "█" in screen  # a redrawn bar, not lines
    assert "new messages, folder 6/6" in screen  # the bar's postfix (tqdm redraws at most every 0.1 s)
    assert "new messages (folder" not in screen  # not the plain lines


def _read(descriptor: int) -> bytes:
    try:
        return os.read(descriptor, 65536)
    except OSError:  # EIO: the other side is closed and everything was read
        return b""
