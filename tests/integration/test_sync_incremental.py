"""Incremental IMAP sync against Dovecot with and without CONDSTORE/QRESYNC (RFC 7162), through the HTTP API.

Expunges at the top of a folder are seen (every UID range the service sends has an explicit upper bound, never
``*``: RFC 3501 section 9); folder counts follow the server through new mail, flag changes and expunges without a
recount, and repair themselves when they disagree with EXISTS; a sync that finds nothing costs one EXAMINE per
folder and reads no stored message (the commands are taken from Dovecot's own rawlog of the session).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import event, update

from email_service.models import EmailFolder
from email_service.services.context import ServiceContext
from tests.conftest import Caller, create_imap_account
from tests.support.dovecot import Dovecot
from tests.support.mirror import folder_messages, folders_by_name, sync_now

pytestmark = pytest.mark.integration


@pytest.fixture(params=["condstore-qresync", "no-condstore"])
def server(request: pytest.FixtureRequest) -> Dovecot:
    """The session's Dovecot (CONDSTORE and QRESYNC), then one offering neither."""
    name = "dovecot" if request.param == "condstore-qresync" else "dovecot_without_condstore"
    found: Dovecot = request.getfixturevalue(name)
    return found


def _raw(subject: str) -> bytes:
    message_id = f"<{uuid.uuid4().hex}@example.com>"
    return f"From: a@example.com\r\nSubject: {subject}\r\nMessage-ID: {message_id}\r\n\r\nbody\r\n".encode()


def _account(client: FlaskClient, caller: Caller, server: Dovecot) -> tuple[str, str]:
    user, password = server.new_user()
    return user, create_imap_account(client, caller, server.host, server.imap_port, user, password)


def _server_counts(server: Dovecot, user: str, mailbox: str) -> tuple[int, int]:
    with server.imap(user) as imap:
        status = imap.folder_status(mailbox, ["MESSAGES", "UNSEEN"])
    return int(status[b"MESSAGES"]), int(status[b"UNSEEN"])


def _local_counts(client: FlaskClient, caller: Caller, account_id: str, mailbox: str) -> tuple[int, int]:
    folder = folders_by_name(client, caller, account_id)[mailbox]
    return folder["totalCount"], folder["unreadCount"]


def _uids(client: FlaskClient, caller: Caller, account_id: str, mailbox: str) -> set[int]:
    folder = folders_by_name(client, caller, account_id)[mailbox]
    return {m["uid"] for m in folder_messages(client, caller, account_id, folder["id"])}


def _unbounded(commands: list[str]) -> list[str]:
    """UID commands (FETCH, SEARCH ...) that use ``*`` anywhere."""
    return [c for c in commands if c.upper().startswith("UID ") and "*" in c]


def test_the_last_message_of_a_folder_expunged_is_removed(client: FlaskClient, caller: Caller, server: Dovecot) -> None:
    user, account_id = _account(client, caller, server)
    uids = [server.append(user, "INBOX", _raw(f"m{n}")) for n in range(3)]
    assert sync_now(client, caller, account_id)["counts"]["messagesAdded"] == 3
    server.record_imap(user)

    server.expunge(user, "INBOX", uids[-1])  # the top UID: "*" now means uids[1]
    status = sync_now(client, caller, account_id)
    assert (status["counts"]["messagesRemoved"], status["counts"]["messagesAdded"]) == (1, 0), status
    assert _uids(client, caller, account_id, "INBOX") == set(uids[:2])

    server.expunge(user, "INBOX", uids[1])  # the top again, and new mail: UIDNEXT moves, EXISTS stays 2
    new_uid = server.append(user, "INBOX", _raw("new"))
    status = sync_now(client, caller, account_id)
    assert (status["counts"]["messagesRemoved"], status["counts"]["messagesAdded"]) == (1, 1), status
    assert _uids(client, caller, account_id, "INBOX") == {uids[0], new_uid}
    assert _local_counts(client, caller, account_id, "INBOX") == _server_counts(server, user, "INBOX")
    commands = server.imap_commands(user)
    assert any(c.upper().startswith("UID ") for c in commands)
    assert _unbounded(commands) == []


def test_folder_counts_follow_the_server_without_a_recount(
    client: FlaskClient, caller: Caller, server: Dovecot
) -> None:
    user, account_id = _account(client, caller, server)
    uids = [server.append(user, "INBOX", _raw(f"m{n}"), flags=["\\Seen"] if n % 2 else []) for n in range(20)]
    sync_now(client, caller, account_id)
    assert _local_counts(client, caller, account_id, "INBOX") == _server_counts(server, user, "INBOX") == (20, 10)

    with server.imap(user) as imap:
        imap.select_folder("INBOX")
        imap.add_flags(uids[0:6:2], ["\\Seen"])  # 3 unread -> read
        imap.remove_flags(uids[1:5:2], ["\\Seen"])  # 2 read -> unread
        imap.add_flags(uids[10:14], ["\\Deleted"])  # 2 read, 2 unread expunged
        imap.uid_expunge(uids[10:14])
    for n in range(5):
        server.append(user, "INBOX", _raw(f"new {n}"), flags=["\\Seen"] if n == 0 else [])
    status = sync_now(client, caller, account_id)
    assert status["counts"] == {**status["counts"], "messagesAdded": 5, "messagesRemoved": 4, "messagesUpdated": 5}
    assert _local_counts(client, caller, account_id, "INBOX") == _server_counts(server, user, "INBOX") == (21, 11)


def test_counts_that_disagree_with_the_server_are_repaired(
    client: FlaskClient, caller: Caller, server: Dovecot, ctx: ServiceContext
) -> None:
    user, account_id = _account(client, caller, server)
    for n in range(4):
        server.append(user, "INBOX", _raw(f"m{n}"))
    sync_now(client, caller, account_id)
    inbox_id = folders_by_name(client, caller, account_id)["INBOX"]["id"]
    with ctx.db.tenant_session(caller.tenant_id) as session:  # damage the stored counts
        session.execute(
            update(EmailFolder).where(EmailFolder.id == uuid.UUID(inbox_id)).values(total_count=9, unread_count=0)
        )
    status = sync_now(client, caller, account_id)
    assert (status["counts"]["messagesAdded"], status["counts"]["messagesRemoved"]) == (0, 0)
    assert _local_counts(client, caller, account_id, "INBOX") == _server_counts(server, user, "INBOX") == (4, 4)


@pytest.fixture
def message_queries(ctx: ServiceContext) -> Iterator[list[str]]:
    """SQL statements that touch ``email_messages``, recorded while the test runs (any thread)."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "email_messages" in statement:
            seen.append(statement)

    event.listen(ctx.db.engine, "before_cursor_execute", record)
    yield seen
    event.remove(ctx.db.engine, "before_cursor_execute", record)


def test_a_sync_that_finds_nothing_costs_one_examine_per_folder(
    client: FlaskClient,
    caller: Caller,
    dovecot: Dovecot,
    mail_user: tuple[str, str],
    message_queries: list[str],
) -> None:
    user, password = mail_user
    dovecot.write_maildir(user, "INBOX", (f"Subject: n{i}\n\nbody {i}\n".encode() for i in range(300)))
    dovecot.append(user, "Sent", _raw("sent"))
    account_id = create_imap_account(client, caller, dovecot.host, dovecot.imap_port, user, password)
    sync_now(client, caller, account_id)
    folders = folders_by_name(client, caller, account_id)
    dovecot.record_imap(user)
    message_queries.clear()

    status = sync_now(client, caller, account_id)
    assert status["counts"] == {**status["counts"], "messagesAdded": 0, "messagesUpdated": 0, "messagesRemoved": 0}
    commands = dovecot.imap_commands(user)
    examined = sorted(c.split(" ", 1)[1].strip('"') for c in commands if c.upper().startswith("EXAMINE "))
    assert examined == sorted(folders)
    assert {c.split(" ")[0].upper() for c in commands} <= {"ENABLE", "LIST", "EXAMINE", "LOGOUT"}, commands
    assert message_queries == []  # no stored UID loaded, nothing recounted
    assert folders_by_name(client, caller, account_id)["INBOX"]["lastSyncedAt"] > folders["INBOX"]["lastSyncedAt"]

    inbox = folders["INBOX"]
    first = folder_messages(client, caller, account_id, inbox["id"])[0]
    dovecot.set_flags(user, "INBOX", first["uid"], ["\\Flagged"])  # one flag change: work for that one only
    dovecot.imap_commands(user)  # drop the recording of that session
    message_queries.clear()
    status = sync_now(client, caller, account_id)
    assert status["counts"]["messagesUpdated"] == 1
    commands = dovecot.imap_commands(user)
    assert len([c for c in commands if c.upper().startswith("UID ")]) <= 2, commands  # CHANGEDSINCE (+ VANISHED)
    assert not any("SELECT" in query.upper() and " IN (" not in query.upper() for query in message_queries)
