"""Drafts on the server and sending them (issue 9), against a private Dovecot and an aiosmtpd server.

The draft appears in the server's Drafts and is replaced on edit; a sent draft reaches aiosmtpd (Bcc in the
envelope only, MIME structure, attachment bytes), its copy is in the server's Sent with \\Seen, the draft is gone.
"""

from __future__ import annotations

import base64
import email
import email.policy
import io
import uuid
from collections.abc import Callable

import pytest

from email_service.models import now_ms
from email_service.services.context import ServiceContext
from email_service.sync.drafts import republish_changed_drafts
from tests.integration.compose.conftest import Mirror, draft_body, wait_outbox
from tests.integration.smtp.conftest import SMTPServer

pytestmark = pytest.mark.integration

PDF = b"%PDF-1.4\n" + bytes(range(256)) * 8 + b"\n%%EOF\n"


def _subjects(mirror: Mirror, mailbox: str) -> list[tuple[str, set[str]]]:
    return sorted(mirror.on_server(mailbox).values(), key=lambda pair: pair[0])


def test_a_draft_is_appended_to_drafts_and_replaced_on_edit(sender: Callable[..., Mirror]) -> None:
    mirror = sender()
    body = draft_body(subject="First version")
    created = mirror.api("POST", f"/accounts/{mirror.account_id}/messages", json=body)
    assert created.status_code == 201, created.get_json()
    draft = created.get_json()
    assert draft["isDraft"] is True and draft["folderName"] == "Drafts" and draft["subject"] == "First version"
    assert [a["email"] for a in draft["bcc"]] == ["hidden@example.com"]
    assert [a["filename"] for a in draft["attachments"]] == ["report.txt"]
    mirror.settle()
    on_server = _subjects(mirror, "Drafts")
    assert [subject for subject, _ in on_server] == ["First version"]
    assert {"\\Draft", "\\Seen"} <= on_server[0][1]

    edited = mirror.api("PUT", f"/messages/{draft['id']}", json={"subject": "Second version", "textBody": "v2\n"})
    assert edited.status_code == 200, edited.get_json()
    assert edited.get_json()["subject"] == "Second version" and edited.get_json()["textBody"] == "v2\n"
    mirror.settle()
    assert [subject for subject, _ in _subjects(mirror, "Drafts")] == ["Second version"]
    assert mirror.actions("failed") == []
    # The row follows the server copy: a sync finds nothing new and keeps one draft with the new UID.
    mirror.sync()
    drafts = mirror.messages("Drafts")
    assert list(drafts) == ["Second version"] and drafts["Second version"]["id"] == draft["id"]
    with mirror.imap() as imap:
        imap.select_folder("Drafts", readonly=True)
        (uid,) = imap.search("ALL")
        raw = imap.fetch([uid], ["BODY.PEEK[]"])[uid][b"BODY[]"]
    assert b"Bcc: hidden@example.com" in raw and b"report.txt" in raw  # the draft keeps its blind recipients


def test_sending_a_draft_delivers_it_copies_it_to_sent_and_removes_the_draft(
    sender: Callable[..., Mirror], smtp: SMTPServer
) -> None:
    mirror = sender()
    pdf = {"filename": "scan.pdf", "contentType": "application/pdf", "data": base64.b64encode(PDF).decode()}
    draft = mirror.api("POST", f"/accounts/{mirror.account_id}/messages", json=draft_body(attachments=[pdf]))
    draft_id = draft.get_json()["id"]
    added = mirror.api("PUT", f"/messages/{draft_id}", json={"attachments": [draft_body()["attachments"][0]]})
    assert sorted(a["filename"] for a in added.get_json()["attachments"]) == ["report.txt", "scan.pdf"]
    subject = added.get_json()["subject"]

    accepted = mirror.api("POST", "/compose/send", json={"messageId": draft_id})
    assert accepted.status_code == 202, accepted.get_json()
    assert set(accepted.get_json()) == {"outboxId", "status", "sendAt"} and accepted.get_json()["status"] == "queued"
    item = wait_outbox(mirror, accepted.get_json()["outboxId"], ("sent", "failed", "partially_sent"))
    assert item["status"] == "sent" and item["attempts"] == 1, item
    assert item["delivery"]["smtpCode"] == 250 and item["delivery"]["messageId"] == item["messageId"]

    (received,) = smtp.handler.messages
    assert sorted(received.rcpt_tos) == ["bob@example.com", "carol@example.com", "hidden@example.com"]
    assert received.mail_from == mirror.user
    message = received.message
    assert "Bcc" not in message and b"hidden@example.com" not in received.data
    assert message["Message-ID"] == item["messageId"] and message["Subject"] == subject
    assert message.get_content_type() == "multipart/mixed"
    parts = {part.get_filename(): part.get_payload(decode=True) for part in message.iter_attachments()}
    assert parts == {"scan.pdf": PDF, "report.txt": b"Report 1\n"}
    text = message.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert text == "Hello Bob,\nthe report is attached.\n"

    mirror.settle()
    sent = mirror.on_server("Sent")
    assert [(s, "\\Seen" in flags) for s, flags in sent.values()] == [(subject, True)]
    assert mirror.on_server("Drafts") == {}
    assert mirror.api("GET", f"/messages/{draft_id}").status_code == 404
    copy = mirror.api("GET", f"/messages/{item['sentCopyId']}").get_json()
    assert copy["folderName"] == "Sent" and copy["isRead"] is True
    assert f"<{copy['messageId']}>" == item["messageId"]  # rows keep the Message-ID without brackets
    assert mirror.actions("failed") == []


def test_save_sent_copy_false_leaves_sent_alone(sender: Callable[..., Mirror], smtp: SMTPServer) -> None:
    mirror = sender()
    changed = mirror.api("PUT", f"/accounts/{mirror.account_id}", json={"saveSentCopy": False})
    assert changed.status_code == 200 and changed.get_json()["saveSentCopy"] is False
    accepted = mirror.api("POST", f"/accounts/{mirror.account_id}/send", json=draft_body())
    item = wait_outbox(mirror, accepted.get_json()["outboxId"], ("sent", "failed"))
    assert item["status"] == "sent" and item["sentCopyId"] is None
    mirror.settle()
    assert mirror.on_server("Sent") == {} and len(smtp.handler.messages) == 1


def test_an_inline_send_keeps_no_draft(sender: Callable[..., Mirror], smtp: SMTPServer) -> None:
    mirror = sender()
    subject = f"Inline {uuid.uuid4().hex[:6]}"
    accepted = mirror.api("POST", f"/accounts/{mirror.account_id}/send", json=draft_body(subject=subject, cc=[]))
    assert accepted.status_code == 202, accepted.get_json()
    item = wait_outbox(mirror, accepted.get_json()["outboxId"], ("sent", "failed"))
    assert item["status"] == "sent" and item["draftId"] is None
    assert sorted(item["recipients"]) == ["bob@example.com", "hidden@example.com"]
    mirror.settle()
    assert [s for s, _ in mirror.on_server("Sent").values()] == [subject]
    assert mirror.on_server("Drafts") == {}
    assert smtp.handler.messages[0].message["Subject"] == subject


def test_an_attachment_uploaded_to_a_draft_reaches_its_server_copy(
    sender: Callable[..., Mirror], ctx: ServiceContext
) -> None:
    mirror = sender()
    body = draft_body(subject="Needs a scan", attachments=[])
    draft = mirror.api("POST", f"/accounts/{mirror.account_id}/messages", json=body).get_json()
    mirror.settle()
    upload = {"file": (io.BytesIO(PDF), "scan.pdf")}
    uploaded = mirror.api("POST", f"/messages/{draft['id']}/attachments", data=upload)
    assert uploaded.status_code == 201, uploaded.get_json()
    later = now_ms() + 60_000
    assert republish_changed_drafts(ctx, now=later, tenant_ids=[mirror.tenant_id]) == 1
    assert republish_changed_drafts(ctx, now=later, tenant_ids=[mirror.tenant_id]) == 0  # its append is pending
    mirror.settle()
    with mirror.imap() as imap:
        imap.select_folder("Drafts", readonly=True)
        (uid,) = imap.search("ALL")
        raw = imap.fetch([uid], ["BODY.PEEK[]"])[uid][b"BODY[]"]
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert [(p.get_filename(), p.get_payload(decode=True)) for p in parsed.iter_attachments()] == [("scan.pdf", PDF)]
    assert republish_changed_drafts(ctx, now=now_ms() + 120_000, tenant_ids=[mirror.tenant_id]) == 0  # current
