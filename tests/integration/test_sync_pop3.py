"""POP3 mirroring (RFC 1939) through the HTTP API against Dovecot's POP3 service (issue 8, "POP3 mirroring").

New messages arrive by UIDL and RETR into INBOX, messages gone from the server are removed locally, and the mail
stays on the server.  POP3S/STLS with verified TLS are in ``test_mail_tls.py``.  Dovecot always offers UIDL, so the
server without it is a tiny scripted POP3 peer (the one case no real server here produces).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import pytest
from flask.testing import FlaskClient

from email_service.tasks.runner import InProcessJobRunner
from tests.conftest import Caller, wait_for_sync
from tests.support.dovecot import Dovecot
from tests.support.mirror import create_pop3_account, folder_messages, folders_by_name, sync_now

pytestmark = pytest.mark.integration


def _raw(subject: str, body: str = "hello") -> bytes:
    return f"From: a@example.com\r\nTo: b@example.com\r\nSubject: {subject}\r\n\r\n{body}\r\n".encode()


def _maildrop_size(dovecot: Dovecot, user: str) -> int:
    with dovecot.imap(user) as imap:
        return int(imap.folder_status("INBOX", ["MESSAGES"])[b"MESSAGES"])


def test_pop3_mirrors_new_and_removed_messages_and_leaves_the_mail_on_the_server(
    client: FlaskClient, caller: Caller, dovecot: Dovecot, mail_user: tuple[str, str]
) -> None:
    user, password = mail_user
    dots = "a line\r\n.starts with a dot\r\n..and two"  # POP3 dot-stuffing must come back undone
    uids = [dovecot.append(user, "INBOX", _raw(f"pop {n}", dots if n == 0 else "hello")) for n in range(3)]
    account_id = create_pop3_account(client, caller, dovecot.host, dovecot.pop3_port, user, password)

    status = sync_now(client, caller, account_id)
    assert status["state"] == "succeeded", status
    assert status["counts"] == {**status["counts"], "messagesAdded": 3, "foldersSynced": 1, "messagesRemoved": 0}
    assert status["progress"] == {**status["progress"], "foldersDone": 1, "foldersTotal": 1, "percent": 100.0}
    folders = folders_by_name(client, caller, account_id)
    assert list(folders) == ["INBOX"]
    inbox = folders["INBOX"]
    assert (inbox["role"], inbox["totalCount"], inbox["unreadCount"]) == ("inbox", 3, 3)
    first = {m["subject"]: m for m in folder_messages(client, caller, account_id, inbox["id"])}
    assert set(first) == {"pop 0", "pop 1", "pop 2"}
    raw = client.get(f"/api/v1/messages/{first['pop 0']['id']}/raw", headers=caller.headers).data
    assert raw.replace(b"\r\n", b"\n") == _raw("pop 0", dots).replace(b"\r\n", b"\n")
    assert _maildrop_size(dovecot, user) == 3  # mirroring never deletes on the server

    dovecot.expunge(user, "INBOX", uids[1])
    dovecot.append(user, "INBOX", _raw("pop 3"))
    status = sync_now(client, caller, account_id)
    assert (status["counts"]["messagesAdded"], status["counts"]["messagesRemoved"]) == (1, 1)
    second = {m["subject"]: m for m in folder_messages(client, caller, account_id, inbox["id"])}
    assert set(second) == {"pop 0", "pop 2", "pop 3"}
    assert second["pop 0"]["id"] == first["pop 0"]["id"], "a message keeps its id (identity: account + UIDL)"
    assert folders_by_name(client, caller, account_id)["INBOX"]["totalCount"] == 3

    status = sync_now(client, caller, account_id)
    assert (status["counts"]["messagesAdded"], status["counts"]["messagesRemoved"]) == (0, 0)
    assert _maildrop_size(dovecot, user) == 3


class NoUidlPeer:
    """A scripted POP3 server that logs anyone in, has one message and answers ``-ERR`` to UIDL (and CAPA)."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.commands: list[str] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        answers = {"USER": "+OK", "PASS": "+OK logged in", "STAT": "+OK 1 40", "QUIT": "+OK bye"}
        with contextlib.suppress(OSError):
            while True:
                connection, _ = self.listener.accept()
                with connection, connection.makefile("rwb") as stream:
                    stream.write(b"+OK scripted POP3 peer\r\n")
                    stream.flush()
                    for line in stream:
                        verb = line.decode(errors="replace").split(" ")[0].strip().upper()
                        self.commands.append(verb)
                        stream.write(f"{answers.get(verb, '-ERR not supported')}\r\n".encode())
                        stream.flush()
                        if verb == "QUIT":
                            break

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self.thread.join(timeout=5)


@pytest.fixture
def no_uidl_peer() -> Iterator[NoUidlPeer]:
    peer = NoUidlPeer()
    yield peer
    peer.close()


def test_a_pop3_server_without_uidl_gets_a_clean_error(
    client: FlaskClient, caller: Caller, no_uidl_peer: NoUidlPeer
) -> None:
    account_id = create_pop3_account(
        client, caller, "127.0.0.1", no_uidl_peer.port, "someone@example.test", "secret-pass"
    )
    status = sync_now(client, caller, account_id)
    assert status["state"] == "failed", status
    assert status["lastError"]["kind"] == "CapabilityMissing"
    assert "UIDL" in status["lastError"]["message"] and "secret-pass" not in status["lastError"]["message"]
    assert folders_by_name(client, caller, account_id) == {}
    assert "UIDL" in no_uidl_peer.commands and "RETR" not in no_uidl_peer.commands
    assert "DELE" not in no_uidl_peer.commands and no_uidl_peer.commands[-1] == "QUIT"


def test_the_scheduler_syncs_pop3_accounts(
    client: FlaskClient, caller: Caller, dovecot: Dovecot, mail_user: tuple[str, str], runner: InProcessJobRunner
) -> None:
    user, password = mail_user
    dovecot.append(user, "INBOX", _raw("scheduled"))
    account_id = create_pop3_account(client, caller, dovecot.host, dovecot.pop3_port, user, password)
    assert runner.schedule_due([caller.tenant_id]) == 1
    status = wait_for_sync(client, account_id, caller.headers)
    assert (status["state"], status["trigger"], status["counts"]["messagesAdded"]) == ("succeeded", "scheduler", 1)
