"""Compose without I/O (issue 9): reply headers (RFC 5322 section 3.6.4), subjects, recipients, the retry
schedule of the outbox, field limits and the draft/sent MIME (Bcc kept in a draft only)."""

from __future__ import annotations

import email
import email.policy
import uuid
from datetime import UTC, datetime

import pytest

from email_service.errors import InvalidInput
from email_service.models import EmailMessage
from email_service.services.compose_mime import (
    ComposeFields,
    Envelope,
    NewAttachment,
    Recipient,
    build_raw,
    check_fields,
    check_recipients,
    prefixed_subject,
    reply_headers,
)
from email_service.services.idempotency import check_key, request_hash
from email_service.sync.send import retry_delay


def _message(**fields: object) -> EmailMessage:
    return EmailMessage(id=uuid.uuid4(), **fields)


def test_reply_references_are_the_parents_references_then_its_message_id() -> None:
    parent = _message(message_id="c@x", references=["a@x", "b@x"], in_reply_to="b@x")
    assert reply_headers(parent) == ("c@x", ["a@x", "b@x", "c@x"])


def test_without_references_the_parents_single_in_reply_to_starts_the_list() -> None:
    assert reply_headers(_message(message_id="c@x", references=[], in_reply_to="b@x")) == ("c@x", ["b@x", "c@x"])
    assert reply_headers(_message(message_id="c@x", references=[], in_reply_to="a@x b@x")) == ("c@x", ["c@x"])
    assert reply_headers(_message(message_id=None, references=[], in_reply_to=None)) == (None, [])


def test_subject_prefixes_are_not_doubled() -> None:
    assert prefixed_subject("Re:", "Lunch") == "Re: Lunch"
    assert prefixed_subject("Re:", "RE: Lunch") == "RE: Lunch"
    assert prefixed_subject("Fwd:", "") == "Fwd:"


def test_display_names_are_quoted_and_escaped() -> None:
    assert Recipient("bob@example.com").header_value() == "bob@example.com"
    assert Recipient("bob@example.com", 'Bob "B" \\ Co').header_value() == '"Bob \\"B\\" \\\\ Co" <bob@example.com>'


def test_the_retry_schedule_is_1_5_30_then_doubling_up_to_an_hour() -> None:
    assert [retry_delay(n) for n in range(1, 9)] == [1, 5, 30, 60, 120, 240, 480, 960]
    assert retry_delay(40) == 3600


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        (ComposeFields(to=(Recipient("no-tld@localhost"),)), "to"),
        (ComposeFields(cc=tuple(Recipient(f"r{i}@example.com") for i in range(101))), "to"),
        (ComposeFields(subject="s" * 999), "subject"),
        (ComposeFields(subject="a\nb"), "subject"),
        (ComposeFields(text_body="\x00"), "textBody"),
        (ComposeFields(forward_mode="sideways"), "forwardMode"),
        (ComposeFields(attachments=(NewAttachment("a.bin", "application/octet-stream", b"x" * 11),)), "attachments"),
    ],
)
def test_limits_name_the_field(fields: ComposeFields, field: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        check_fields(fields, max_size=10, max_count=20)
    assert field in (raised.value.details or {})


def test_sending_needs_a_recipient() -> None:
    with pytest.raises(InvalidInput, match="At least one recipient"):
        check_recipients(ComposeFields(subject="x"), sending=True)
    check_recipients(ComposeFields(subject="x"), sending=False)


def test_a_draft_keeps_bcc_a_sent_message_never_has_it() -> None:
    fields = ComposeFields(
        to=(Recipient("bob@example.com", "Bob"),),
        bcc=(Recipient("hidden@example.com"),),
        subject="Grüße",
        text_body="Hallo\n",
    )
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    for keep_bcc in (True, False):
        raw = build_raw(fields, Envelope("Me <me@example.com>", "<id-1@example.com>", when, keep_bcc=keep_bcc), [])
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        assert parsed["Message-ID"] == "<id-1@example.com>" and parsed["Subject"] == "Grüße"
        assert b"\r\n" in raw and ("Bcc" in parsed) is keep_bcc


def test_request_fingerprints_and_keys() -> None:
    assert request_hash("r", {"a": 1, "b": [1, 2]}) == request_hash("r", {"b": [1, 2], "a": 1})
    assert request_hash("r", {"a": 1}) != request_hash("s", {"a": 1})
    assert check_key(None) is None and check_key("abc-123") == "abc-123"
    for bad in ("", "x" * 256, "tab\there", "ünïcode"):
        with pytest.raises(InvalidInput):
            check_key(bad)
