"""Replies and forwards (issue 9): In-Reply-To / References (RFC 5322 section 3.6.4), ``Re:``/``Fwd:``, \\Answered
on the original written back to the server, forwards as message/rfc822 or inline with the original's attachments."""

from __future__ import annotations

import email
import email.policy
import uuid
from collections.abc import Callable
from email.message import EmailMessage

import pytest

from tests.integration.compose.conftest import Mirror, wait_outbox
from tests.integration.smtp.conftest import SMTPServer

pytestmark = pytest.mark.integration


def _original(references: str | None = None) -> tuple[bytes, str]:
    """A message from Alice with a PNG attachment; returns ``(raw, Message-ID)``."""
    message = EmailMessage()
    message["From"] = "Alice <alice@example.com>"
    message["To"] = "me@example.test"
    message["Subject"] = "Lunch plans"
    message_id = f"<{uuid.uuid4().hex}@example.com>"
    message["Message-ID"] = message_id
    if references:
        message["References"] = references
        message["In-Reply-To"] = references.split()[-1]
    message.set_content("Shall we meet at noon?\n")
    message.add_attachment(b"\x89PNG\r\n\x1a\n" + b"pixels" * 50, maintype="image", subtype="png", filename="map.png")
    return bytes(message), message_id


def _seeded(sender: Callable[..., Mirror], raw: bytes) -> tuple[Mirror, dict]:
    mirror = sender()
    mirror.server.append(mirror.user, "INBOX", raw)
    mirror.sync()
    (original,) = mirror.messages("INBOX").values()
    return mirror, original


def _send(mirror: Mirror, body: dict) -> dict:
    accepted = mirror.api("POST", f"/accounts/{mirror.account_id}/send", json=body)
    assert accepted.status_code == 202, accepted.get_json()
    item = wait_outbox(mirror, accepted.get_json()["outboxId"], ("sent", "failed"))
    assert item["status"] == "sent", item
    return item


def test_a_reply_carries_in_reply_to_and_references_and_answers_the_original(
    sender: Callable[..., Mirror], smtp: SMTPServer
) -> None:
    earlier = f"<{uuid.uuid4().hex}@example.com>"
    raw, original_id = _original(references=earlier)
    mirror, original = _seeded(sender, raw)
    draft = mirror.api(
        "POST", f"/accounts/{mirror.account_id}/messages", json={"inReplyTo": original["id"], "textBody": "Yes!\n"}
    )
    assert draft.status_code == 201, draft.get_json()
    body = draft.get_json()
    assert body["subject"] == "Re: Lunch plans"
    assert [a["email"] for a in body["to"]] == ["alice@example.com"]  # the original's sender by default
    accepted = mirror.api("POST", "/compose/send", json={"messageId": body["id"]})
    item = wait_outbox(mirror, accepted.get_json()["outboxId"], ("sent", "failed"))
    assert item["status"] == "sent", item

    message = smtp.handler.messages[0].message
    assert message["In-Reply-To"] == original_id
    assert message["References"].split() == [earlier, original_id]
    assert message["Subject"] == "Re: Lunch plans"
    mirror.settle()
    ((subject, flags),) = mirror.on_server("INBOX").values()
    assert subject == "Lunch plans" and "\\Answered" in flags
    assert mirror.api("GET", f"/messages/{original['id']}").get_json()["isAnswered"] is True


def test_a_forward_as_attachment_carries_the_original_as_message_rfc822(
    sender: Callable[..., Mirror], smtp: SMTPServer
) -> None:
    raw, original_id = _original()
    mirror, original = _seeded(sender, raw)
    body = {"to": [{"email": "dave@example.com"}], "forwardOf": original["id"], "textBody": "FYI\n"}
    _send(mirror, {**body, "forwardMode": "attachment"})
    message = smtp.handler.messages[0].message
    assert message["Subject"] == "Fwd: Lunch plans" and "In-Reply-To" not in message
    (attached,) = list(message.iter_attachments())
    assert attached.get_content_type() == "message/rfc822"
    inner = attached.get_content()
    assert inner["Message-ID"] == original_id and inner["Subject"] == "Lunch plans"
    forwarded = email.message_from_bytes(bytes(inner), policy=email.policy.default)
    assert [p.get_filename() for p in forwarded.iter_attachments()] == ["map.png"]  # type: ignore[attr-defined]


def test_an_inline_forward_quotes_the_original_and_carries_its_attachments(
    sender: Callable[..., Mirror], smtp: SMTPServer
) -> None:
    raw, _original_id = _original()
    mirror, original = _seeded(sender, raw)
    draft = mirror.api(
        "POST",
        f"/accounts/{mirror.account_id}/messages",
        json={"to": [{"email": "dave@example.com"}], "forwardOf": original["id"], "forwardMode": "inline"},
    )
    assert draft.status_code == 201, draft.get_json()
    assert [a["filename"] for a in draft.get_json()["attachments"]] == ["map.png"]
    accepted = mirror.api("POST", "/compose/send", json={"messageId": draft.get_json()["id"]})
    assert wait_outbox(mirror, accepted.get_json()["outboxId"], ("sent", "failed"))["status"] == "sent"
    message = smtp.handler.messages[0].message
    text = message.get_body(("plain",)).get_content()
    assert "Forwarded message" in text and "Shall we meet at noon?" in text and "alice@example.com" in text
    (png,) = list(message.iter_attachments())
    original_png = email.message_from_bytes(raw, policy=email.policy.default)
    expected = next(original_png.iter_attachments()).get_payload(decode=True)  # type: ignore[attr-defined]
    assert png.get_filename() == "map.png" and png.get_payload(decode=True) == expected
