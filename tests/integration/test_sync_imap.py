"""Mailbox mirroring against a real Dovecot, through the HTTP API (issue 2 sections 6-7).

A mailbox with several folders, multipart messages, attachments, non-ASCII headers and broken MIME is synced;
what the API returns is compared with what the server holds.  Then: an incremental run picks up only new mail,
flag changes and expunges arrive, a UIDVALIDITY change refetches the folder, a wrong password is reported cleanly.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

import pytest
from flask.testing import FlaskClient

from email_service.protocols.imap import ImapSession
from tests.conftest import Caller, create_imap_account
from tests.support.dovecot import Dovecot
from tests.support.mirror import folder_messages, folders_by_name, sync_now

pytestmark = pytest.mark.integration

SENT_AT = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
PDF = b"%PDF-1.4\n" + bytes(range(256)) * 8
BROKEN_MULTIPART = (
    b"From: Broken <broken@example.com>\r\nTo: me@example.com\r\nSubject: broken mime\r\n"
    b"Message-ID: <broken-1@example.com>\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="never-closed"\r\n\r\n'
    b"--never-closed\r\nContent-Type: text/plain\r\n\r\nthe text survives\r\n"
    b"--never-closed\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
    b"Content-Disposition: attachment; filename=bad.bin\r\n\r\n@@@not base64@@@\r\n"
)


def _message(
    subject: str,
    *,
    sender: str = "Alice <alice@example.com>",
    body: str = "hello",
    html: str | None = None,
    attachment: tuple[str, bytes] | None = None,
    message_id: str | None = None,
    in_reply_to: str | None = None,
) -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = "Bob Example <bob@example.com>, carol@example.com"
    message["Cc"] = "Dave <dave@example.com>"
    message["Subject"] = subject
    message["Date"] = format_datetime(SENT_AT)
    message["Message-ID"] = message_id or f"<{uuid.uuid4().hex}@example.com>"
    if in_reply_to:
        message["In-Reply-To"] = in_reply_to
        message["References"] = in_reply_to
    message.set_content(body)
    if html:
        message.add_alternative(html, subtype="html")
    if attachment:
        name, data = attachment
        message.add_attachment(data, maintype="application", subtype="pdf", filename=name)
    return bytes(message)


@pytest.fixture
def mailbox(dovecot: Dovecot, mail_user: tuple[str, str]) -> dict[str, Any]:
    """A seeded mailbox: INBOX (4 messages, one broken), Sent (1), Work/Projects (1 with a non-ASCII filename)."""
    user, _password = mail_user
    dovecot.append(user, "INBOX", _message("Plain hello", message_id="<root@example.com>"), flags=["\\Seen"])
    dovecot.append(
        user,
        "INBOX",
        _message(
            "Grüße aus Köln — ünïcödé",
            sender="Jürgen Groß <jg@example.de>",
            html="<p>Hallo <b>Welt</b></p>",
            in_reply_to="<root@example.com>",
        ),
    )
    dovecot.append(user, "INBOX", _message("With attachment", attachment=("report.pdf", PDF)), flags=["\\Flagged"])
    dovecot.append(user, "INBOX", BROKEN_MULTIPART)
    dovecot.append(user, "Sent", _message("Sent by me", sender="Bob <bob@example.com>"), flags=["\\Seen"])
    dovecot.create_mailbox(user, "Work/Projects")
    dovecot.append(user, "Work/Projects", _message("Résumé attached", attachment=("résumé 2026.pdf", PDF)))
    return {"user": user}


def _create_account(client: FlaskClient, caller: Caller, dovecot: Dovecot, user: str, password: str) -> str:
    return create_imap_account(client, caller, dovecot.host, dovecot.imap_port, user, password, syncInterval=60)


def test_first_sync_mirrors_folders_messages_and_fields(
    client: FlaskClient, caller: Caller, dovecot: Dovecot, mail_user: tuple[str, str], mailbox: dict[str, Any]
) -> None:
    user, password = mail_user
    account_id = _create_account(client, caller, dovecot, user, password)
    status = sync_now(client, caller, account_id)
    assert status["state"] == "succeeded", status
    assert status["counts"]["messagesAdded"] == 6
    assert status["isSyncing"] is False and status["lastSyncAt"] is not None

    folders = folders_by_name(client, caller, account_id)
    assert folders["INBOX"]["role"] == "inbox"
    assert folders["Sent"]["role"] == "sent"
    assert folders["Work/Projects"]["role"] == "custom"
    assert (folders["INBOX"]["totalCount"], folders["INBOX"]["unreadCount"]) == (4, 3)
    assert folders["Sent"]["totalCount"] == 1 and folders["Sent"]["unreadCount"] == 0

    inbox = folder_messages(client, caller, account_id, folders["INBOX"]["id"])
    by_subject = {m["subject"]: m for m in inbox}
    assert set(by_subject) == {"Plain hello", "Grüße aus Köln — ünïcödé", "With attachment", "broken mime"}
    german = by_subject["Grüße aus Köln — ünïcödé"]
    assert german["from"] == {"name": "Jürgen Groß", "email": "jg@example.de"}
    assert german["to"] == [
        {"name": "Bob Example", "email": "bob@example.com"},
        {"name": "", "email": "carol@example.com"},
    ]
    assert german["isRead"] is False and by_subject["Plain hello"]["isRead"] is True
    assert by_subject["With attachment"]["isFlagged"] is True
    assert by_subject["With attachment"]["hasAttachments"] is True
    assert german["preview"].startswith("hello")

    full = client.get(f"/api/v1/messages/{german['id']}", headers=caller.headers).get_json()
    assert full["htmlBody"].strip() == "<p>Hallo <b>Welt</b></p>"
    assert full["textBody"].strip() == "hello"
    assert full["inReplyTo"] == "root@example.com"
    assert full["cc"] == [{"name": "Dave", "email": "dave@example.com"}]
    assert full["sentAt"] == int(SENT_AT.timestamp() * 1000)

    attached = client.get(f"/api/v1/messages/{by_subject['With attachment']['id']}", headers=caller.headers)
    [attachment] = attached.get_json()["attachments"]
    assert attachment["filename"] == "report.pdf" and attachment["mimeType"] == "application/pdf"
    assert attachment["size"] == len(PDF)
    assert attachment["contentHash"] == hashlib.sha256(PDF).hexdigest()

    projects = folder_messages(client, caller, account_id, folders["Work/Projects"]["id"])
    detail = client.get(f"/api/v1/messages/{projects[0]['id']}", headers=caller.headers).get_json()
    assert [a["filename"] for a in detail["attachments"]] == ["résumé 2026.pdf"]


def test_broken_mime_is_stored_with_its_defects_and_raw_bytes(
    client: FlaskClient, caller: Caller, dovecot: Dovecot, mail_user: tuple[str, str], mailbox: dict[str, Any]
) -> None:
    user, password = mail_user
    account_id = _create_account(client, caller, dovecot, user, password)
    assert sync_now(client, caller, account_id)["state"] == "succeeded"
    inbox = folder_messages(client, caller, account_id, folders_by_name(client, caller, account_id)["INBOX"]["id"])
    broken = next(m for m in inbox if m["subject"] == "broken mime")
    full = client.get(f"/api/v1/messages/{broken['id']}", headers=caller.headers).get_json()
    assert full["defects"], "the parser's defects must be recorded"
    assert "the text survives" in (full["textBody"] or "")
    raw = client.get(f"/api/v1/messages/{broken['id']}/raw", headers=caller.headers)
    assert raw.status_code == 200 and raw.mimetype == "message/rfc822"
    assert raw.data.replace(b"\r\n", b"\n") == BROKEN_MULTIPART.replace(b"\r\n", b"\n")


def test_incremental_sync_fetches_only_new_mail_and_applies_flags_and_expunges(
    client: FlaskClient, caller: Caller, dovecot: Dovecot, mail_user: tuple[str, str], mailbox: dict[str, Any]
) -> None:
    user, password = mail_user
    account_id = _create_account(client, caller, dovecot, user, password)
    assert sync_now(client, caller, account_id)["counts"]["messagesAdded"] == 6
    again = sync_now(client, caller, account_id)
    assert again["counts"] == {
        "foldersSynced": again["counts"]["foldersSynced"],
        "foldersFailed": 0,
        "messagesAdded": 0,
        "messagesUpdated": 0,
        "messagesRemoved": 0,
    }

    new_uid = dovecot.append(user, "INBOX", _message("Fresh news"))
    inbox_id = folders_by_name(client, caller, account_id)["INBOX"]["id"]
    before = {m["uid"]: m for m in folder_messages(client, caller, account_id, inbox_id)}
    plain_uid = next(uid for uid, m in before.items() if m["subject"] == "Plain hello")
    attach_uid = next(uid for uid, m in before.items() if m["subject"] == "With attachment")
    dovecot.set_flags(user, "INBOX", plain_uid, [])  # mark unread on the server
    dovecot.expunge(user, "INBOX", attach_uid)

    third = sync_now(client, caller, account_id)
    assert third["counts"]["messagesAdded"] == 1
    assert third["counts"]["messagesUpdated"] == 1
    assert third["counts"]["messagesRemoved"] == 1
    after = {m["uid"]: m for m in folder_messages(client, caller, account_id, inbox_id)}
    assert new_uid in after and after[new_uid]["subject"] == "Fresh news"
    assert attach_uid not in after
    assert after[plain_uid]["isRead"] is False
    assert after[plain_uid]["id"] == before[plain_uid]["id"], "unchanged messages keep their ids"
    assert folders_by_name(client, caller, account_id)["INBOX"]["totalCount"] == 4


def test_uidvalidity_change_refetches_the_folder(
    client: FlaskClient, caller: Caller, dovecot: Dovecot, mail_user: tuple[str, str], mailbox: dict[str, Any]
) -> None:
    user, password = mail_user
    account_id = _create_account(client, caller, dovecot, user, password)
    sync_now(client, caller, account_id)
    sent_id = folders_by_name(client, caller, account_id)["Sent"]["id"]
    old_ids = {m["id"] for m in folder_messages(client, caller, account_id, sent_id)}
    dovecot.change_uidvalidity(user, "Sent")
    status = sync_now(client, caller, account_id)
    assert status["state"] == "succeeded"
    assert status["counts"]["messagesRemoved"] == 1 and status["counts"]["messagesAdded"] == 1
    messages = folder_messages(client, caller, account_id, sent_id)
    assert [m["subject"] for m in messages] == ["Sent by me"]
    assert {m["id"] for m in messages}.isdisjoint(old_ids)


def test_wrong_password_gives_a_clean_error_on_the_sync_state(
    client: FlaskClient, caller: Caller, dovecot: Dovecot, mail_user: tuple[str, str]
) -> None:
    user, _password = mail_user
    account_id = _create_account(client, caller, dovecot, user, "not-the-password")
    status = sync_now(client, caller, account_id)
    assert status["state"] == "failed"
    assert status["lastError"]["kind"] == "AuthenticationFailed"
    assert "not-the-password" not in status["lastError"]["message"]
    assert status["isSyncing"] is False and status["lastSyncAt"] is None
    test = client.post(f"/api/v1/accounts/{account_id}/test", headers=caller.headers).get_json()
    assert test["success"] is False and test["errorKind"] == "AuthenticationFailed"


def test_connection_test_reports_folder_count(
    client: FlaskClient, caller: Caller, dovecot: Dovecot, mail_user: tuple[str, str], mailbox: dict[str, Any]
) -> None:
    user, password = mail_user
    account_id = _create_account(client, caller, dovecot, user, password)
    report = client.post(f"/api/v1/accounts/{account_id}/test", headers=caller.headers).get_json()
    assert report["success"] is True and report["protocol"] == "imap"
    with dovecot.imap(user) as imap:
        assert report["folderCount"] == len(imap.list_folders())


def test_another_user_cannot_read_the_mirror(
    client: FlaskClient,
    caller: Caller,
    make_caller: Any,
    dovecot: Dovecot,
    mail_user: tuple[str, str],
    mailbox: dict[str, Any],
    ctx: Any,
) -> None:
    user, password = mail_user
    account_id = _create_account(client, caller, dovecot, user, password)
    sync_now(client, caller, account_id)
    inbox_id = folders_by_name(client, caller, account_id)["INBOX"]["id"]
    message_id = folder_messages(client, caller, account_id, inbox_id)[0]["id"]
    colleague = caller.colleague(ctx)
    stranger = make_caller()
    for other, code in ((colleague, 403), (stranger, 404)):
        for path in (
            f"/api/v1/accounts/{account_id}/folders",
            f"/api/v1/accounts/{account_id}/messages",
            f"/api/v1/messages/{message_id}",
            f"/api/v1/messages/{message_id}/raw",
            f"/api/v1/accounts/{account_id}/sync",
        ):
            response = client.get(path, headers=other.headers)
            assert response.status_code == code, (path, response.get_json())
            assert "subject" not in response.get_data(as_text=True)
    admin = caller.colleague(ctx, role="admin")
    assert client.get(f"/api/v1/messages/{message_id}", headers=admin.headers).status_code == 200


def test_on_a_qresync_server_polls_never_list_every_uid(
    client: FlaskClient,
    caller: Caller,
    dovecot: Dovecot,
    mail_user: tuple[str, str],
    mailbox: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    user, password = mail_user
    account_id = _create_account(client, caller, dovecot, user, password)
    sync_now(client, caller, account_id)
    inbox_id = folders_by_name(client, caller, account_id)["INBOX"]["id"]
    first_uid = min(m["uid"] for m in folder_messages(client, caller, account_id, inbox_id))
    dovecot.expunge(user, "INBOX", first_uid)
    new_uid = dovecot.append(user, "INBOX", _message("After the first sync"))

    def no_full_listing(self: ImapSession) -> list[int]:
        raise AssertionError("a poll on a QRESYNC server must use VANISHED and UID ranges")

    monkeypatch.setattr(ImapSession, "all_uids", no_full_listing)
    status = sync_now(client, caller, account_id)
    assert status["state"] == "succeeded", status
    assert (status["counts"]["messagesAdded"], status["counts"]["messagesRemoved"]) == (1, 1)
    uids = {m["uid"] for m in folder_messages(client, caller, account_id, inbox_id)}
    assert new_uid in uids and first_uid not in uids


def test_many_flag_changes_in_one_poll(
    client: FlaskClient, caller: Caller, dovecot: Dovecot, mail_user: tuple[str, str]
) -> None:
    user, password = mail_user
    dovecot.write_maildir(user, "INBOX", (f"Subject: n{i}\n\nbody {i}\n".encode() for i in range(650)))
    account_id = _create_account(client, caller, dovecot, user, password)
    assert sync_now(client, caller, account_id)["counts"]["messagesAdded"] == 650
    assert folders_by_name(client, caller, account_id)["INBOX"]["unreadCount"] == 650
    with dovecot.imap(user) as imap:
        imap.select_folder("INBOX")
        imap.add_flags(imap.search("ALL"), ["\\Seen"])
    status = sync_now(client, caller, account_id)
    assert status["counts"]["messagesUpdated"] == 650
    assert folders_by_name(client, caller, account_id)["INBOX"]["unreadCount"] == 0
