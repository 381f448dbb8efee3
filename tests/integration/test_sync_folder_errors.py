"""No single folder stops a sync (issue 8, "Sync defects found by outside runs"), through the HTTP API.

A folder Dovecot lists but refuses to open (ACL: lookup right without read right, so EXAMINE answers
``NO [NOPERM]``) gets its error recorded on it and every other folder is synced, on that run and on later ones; a
folder deleted between LIST and SELECT is treated as gone; a broken connection still ends the run, keeping what
was stored before it broke.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from flask.testing import FlaskClient

from email_service.models import now_ms
from email_service.protocols.imap import ImapSession, MailboxInfo, MailboxStatus
from tests.conftest import Caller, create_imap_account
from tests.support.dovecot import Dovecot
from tests.support.mirror import folder_messages, folders_by_name, sync_now

pytestmark = pytest.mark.integration


def _raw(subject: str) -> bytes:
    message_id = f"<{uuid.uuid4().hex}@example.com>"
    return f"From: a@example.com\r\nSubject: {subject}\r\nMessage-ID: {message_id}\r\n\r\nbody\r\n".encode()


def _subjects(client: FlaskClient, caller: Caller, account_id: str, folder: dict[str, Any]) -> list[str]:
    return sorted(m["subject"] for m in folder_messages(client, caller, account_id, folder["id"]))


def test_a_folder_the_server_refuses_to_open_is_recorded_on_it_and_the_others_sync(
    client: FlaskClient, caller: Caller, dovecot: Dovecot, mail_user: tuple[str, str]
) -> None:
    user, password = mail_user
    dovecot.append(user, "INBOX", _raw("in the inbox"))
    dovecot.create_mailbox(user, "Aardvark")  # synced right after INBOX: every other folder comes after it
    dovecot.append(user, "Aardvark", _raw("behind an ACL"))
    dovecot.create_mailbox(user, "Zebra")
    dovecot.append(user, "Zebra", _raw("after the refused folder"))
    dovecot.set_acl(user, "Aardvark", "l")  # RFC 4314: lookup (LIST shows it) without read (EXAMINE refused)
    account_id = create_imap_account(client, caller, dovecot.host, dovecot.imap_port, user, password)
    before = now_ms()

    for _ in range(2):  # the refused folder stops neither this run nor the next one
        status = sync_now(client, caller, account_id)
        assert status["state"] == "succeeded" and status["lastError"] is None, status
        assert status["counts"]["foldersFailed"] == 1
        [error] = status["folderErrors"]
        assert (error["name"], error["kind"]) == ("Aardvark", "MailboxError")
        assert "NOPERM" in error["message"] and error["at"] >= before
        folders = folders_by_name(client, caller, account_id)
        assert error["folderId"] == folders["Aardvark"]["id"]
        assert folders["Aardvark"]["syncError"] == {k: error[k] for k in ("kind", "message", "at")}
        assert folders["Aardvark"]["totalCount"] == 0
        assert all(f["syncError"] is None for name, f in folders.items() if name != "Aardvark")
        assert _subjects(client, caller, account_id, folders["Zebra"]) == ["after the refused folder"]
        assert _subjects(client, caller, account_id, folders["INBOX"]) == ["in the inbox"]
        assert status["progress"]["foldersDone"] == status["progress"]["foldersTotal"] == len(folders)

    dovecot.set_acl(user, "Aardvark", None)  # read right back: the next sync reads it and clears the error
    status = sync_now(client, caller, account_id)
    assert status["state"] == "succeeded" and status["folderErrors"] == []
    assert status["counts"]["foldersFailed"] == 0 and status["counts"]["messagesAdded"] == 1
    folders = folders_by_name(client, caller, account_id)
    assert folders["Aardvark"]["syncError"] is None
    assert _subjects(client, caller, account_id, folders["Aardvark"]) == ["behind an ACL"]


def test_a_folder_deleted_between_list_and_select_is_treated_as_gone(
    client: FlaskClient,
    caller: Caller,
    dovecot: Dovecot,
    mail_user: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    user, password = mail_user
    dovecot.create_mailbox(user, "Ephemeral")
    dovecot.append(user, "Ephemeral", _raw("about to go"))
    dovecot.create_mailbox(user, "Zebra")
    account_id = create_imap_account(client, caller, dovecot.host, dovecot.imap_port, user, password)
    sync_now(client, caller, account_id)
    folders = folders_by_name(client, caller, account_id)
    [doomed] = folder_messages(client, caller, account_id, folders["Ephemeral"]["id"])
    dovecot.append(user, "Zebra", _raw("new in a later folder"))

    listed_by_the_sync = ImapSession.list_mailboxes

    def list_then_delete(session: ImapSession) -> list[MailboxInfo]:
        mailboxes = listed_by_the_sync(session)
        with dovecot.imap(user) as other:  # another client deletes it right after the sync's LIST
            other.delete_folder("Ephemeral")
        return mailboxes

    monkeypatch.setattr(ImapSession, "list_mailboxes", list_then_delete)
    status = sync_now(client, caller, account_id)
    assert status["state"] == "succeeded", status
    assert status["folderErrors"] == [] and status["counts"]["foldersFailed"] == 0
    folders = folders_by_name(client, caller, account_id)
    assert "Ephemeral" not in folders
    assert client.get(f"/api/v1/messages/{doomed['id']}", headers=caller.headers).status_code == 404
    assert _subjects(client, caller, account_id, folders["Zebra"]) == ["new in a later folder"]


def test_a_broken_connection_ends_the_run_and_keeps_what_was_stored(
    client: FlaskClient,
    caller: Caller,
    dovecot: Dovecot,
    mail_user: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    user, password = mail_user
    for number in range(3):
        dovecot.append(user, "INBOX", _raw(f"inbox {number}"))
    dovecot.create_mailbox(user, "Zebra")
    dovecot.append(user, "Zebra", _raw("never reached"))
    account_id = create_imap_account(client, caller, dovecot.host, dovecot.imap_port, user, password)
    select = ImapSession.select

    def kicked_before_zebra(session: ImapSession, name: str, readonly: bool = True) -> MailboxStatus:
        if name == "Zebra":
            dovecot.kick(user)  # the server drops the connection
        return select(session, name, readonly)

    monkeypatch.setattr(ImapSession, "select", kicked_before_zebra)
    status = sync_now(client, caller, account_id)
    assert status["state"] == "failed" and status["lastError"]["kind"] == "ConnectionFailed", status
    assert status["counts"]["messagesAdded"] == 3 and status["folderErrors"] == []
    assert status["progress"]["foldersDone"] == status["progress"]["foldersTotal"] - 1
    folders = folders_by_name(client, caller, account_id)
    assert folders["INBOX"]["totalCount"] == 3 and folders["Zebra"]["totalCount"] == 0

    monkeypatch.setattr(ImapSession, "select", select)
    status = sync_now(client, caller, account_id)
    assert status["state"] == "succeeded" and status["counts"]["messagesAdded"] == 1
    folders = folders_by_name(client, caller, account_id)
    assert folders["INBOX"]["totalCount"] == 3 and folders["Zebra"]["totalCount"] == 1
