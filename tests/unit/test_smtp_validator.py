"""SMTPMessageValidator (seed 002 limits table), envelope recipients, SMTPEncryption and DeliveryResult.

Pure: no I/O.  Every limit is checked at its boundary and just past it.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest

from email_service.protocols.smtp import (
    DeliveryResult,
    SMTPDeliveryStatus,
    SMTPEncryption,
    SMTPMessageValidator,
)
from email_service.protocols.smtp_validate import MB, envelope_recipients

V = SMTPMessageValidator


@pytest.mark.parametrize(
    "address",
    [
        "user@example.com",
        "test.user@example.co.uk",
        "user+tag@sub.example.com",
        "o'brien@example.ie",
        "x@a.io",
        "first.last-name_99@my-domain.example",
        "user@xn--bcher-kva.example",
        "user@example.xn--p1ai",
        "Ann Smith <ann@example.com>",
        '"Smith, Ann" <ann@example.com>',
        "Jörg Müller <joerg@example.de>",
        "  padded@example.com  ",
        "!#$%&'*+/=?^_`{|}~-@example.com",
    ],
)
def test_valid_addresses(address: str) -> None:
    assert V.validate_email_address(address) == (True, None)


@pytest.mark.parametrize(
    "address",
    [
        "",
        "   ",
        "user@example",  # no TLD
        "@example.com",  # no local part
        "user@@example.com",
        "user@",
        "userexample.com",
        "user@example.c",  # one-letter TLD
        "user@example.123",
        ".user@example.com",
        "user.@example.com",
        "us..er@example.com",
        "user@-example.com",
        "user@example-.com",
        "user@exa_mple.com",
        "user@.example.com",
        "user@example..com",
        "us er@example.com",
        '"quoted"@example.com',
        "user@[127.0.0.1]",
        "jörg@example.de",  # SMTPUTF8 local part
        "user@bücher.example",  # U-label domain
        "user@example.com\r\nBcc: evil@example.com",
        "user@example.com\n",
        "Name\r\n <user@example.com>",
        "user@exam\x00ple.com",
        "a <b> <user@example.com>",
        "user@" + "a" * 64 + ".com",  # label of 64
    ],
)
def test_invalid_addresses(address: str) -> None:
    ok, error = V.validate_email_address(address)
    assert ok is False and error


def test_non_string_address_is_invalid() -> None:
    assert V.validate_email_address(None)[0] is False  # type: ignore[arg-type]
    assert V.validate_email_address(42)[0] is False  # type: ignore[arg-type]


def _address_of_length(length: int) -> str:
    domain = ".".join(["a" * 63] * 3) + ".com"  # 195 characters, labels of 63
    local = "l" * (length - len(domain) - 1)
    assert len(local) <= 64
    return f"{local}@{domain}"


def test_address_length_boundary() -> None:
    assert len(_address_of_length(254)) == 254
    assert V.validate_email_address(_address_of_length(254)) == (True, None)
    ok, error = V.validate_email_address(_address_of_length(255))
    assert not ok and "254" in (error or "")


def test_local_part_length_boundary() -> None:
    assert V.validate_email_address("l" * 64 + "@example.com") == (True, None)
    ok, error = V.validate_email_address("l" * 65 + "@example.com")
    assert not ok and "64" in (error or "")


def test_recipient_count_boundary() -> None:
    to = [f"to{i}@example.com" for i in range(50)]
    cc = [f"cc{i}@example.com" for i in range(30)]
    bcc = [f"bcc{i}@example.com" for i in range(20)]
    assert V.validate_recipients(to, cc, bcc) == (True, None)
    ok, error = V.validate_recipients(to, cc, [*bcc, "one-more@example.com"])
    assert not ok and "101" in (error or "")


@pytest.mark.parametrize(
    ("to", "cc", "bcc"),
    [
        ([], None, None),
        (None, None, None),
        ("ann@example.com", None, None),  # a bare string, not a list
        (["ann@example.com"], ["broken"], None),
        (["ann@example.com"], None, ["x@y"]),
    ],
)
def test_invalid_recipients(to: object, cc: object, bcc: object) -> None:
    assert V.validate_recipients(to, cc, bcc)[0] is False  # type: ignore[arg-type]


def test_bcc_only_is_enough() -> None:
    assert V.validate_recipients([], None, ["hidden@example.com"]) == (True, None)


def test_subject_length_boundary() -> None:
    assert V.validate_subject("s" * 998) == (True, None)
    assert V.validate_subject("ü" * 998) == (True, None)  # characters, not bytes
    ok, error = V.validate_subject("s" * 999)
    assert not ok and "998" in (error or "")


@pytest.mark.parametrize(
    "subject", ["a\r\nBcc: evil@example.com", "a\nb", "a\rb", "a\x00b", "a\u2028b", "a\x85b", "a\x0bb", 5]
)
def test_invalid_subjects(subject: object) -> None:
    assert V.validate_subject(subject)[0] is False  # type: ignore[arg-type]


def test_empty_subject_is_allowed() -> None:
    assert V.validate_subject("") == (True, None)


@pytest.mark.parametrize("kind", ["text", "html"])
def test_body_size_boundary(kind: str) -> None:
    at_limit = "a" * (100 * MB)
    args = (at_limit, None) if kind == "text" else (None, at_limit)
    assert V.validate_body(*args) == (True, None)
    past = at_limit + "a"
    del at_limit
    args = (past, None) if kind == "text" else (None, past)
    ok, error = V.validate_body(*args)
    assert not ok and "100 MB" in (error or "")


def test_body_size_counts_utf8_bytes() -> None:
    two_byte = "é" * (50 * MB)  # 100 MB in UTF-8
    assert V.validate_body(two_byte, None) == (True, None)
    assert V.validate_body(two_byte + "a", None)[0] is False


def test_body_rules() -> None:
    assert V.validate_body(None, None)[0] is False
    assert V.validate_body("", None) == (True, None)
    assert V.validate_body("text\r\nwith lines", "<p>html</p>") == (True, None)
    assert V.validate_body("nul\x00", None)[0] is False
    assert V.validate_body(b"bytes", None)[0] is False  # type: ignore[arg-type]


def test_attachment_size_boundary() -> None:
    at_limit = bytes(25 * MB)
    assert V.validate_attachments([{"filename": "a.bin", "content": at_limit}]) == (True, None)
    ok, error = V.validate_attachments([{"filename": "b.bin", "content": at_limit + b"x"}])
    assert not ok and "25 MB" in (error or "") and "b.bin" in (error or "")


def test_total_attachment_size_boundary() -> None:
    chunk = bytes(25 * MB)
    four = [{"filename": f"{i}.bin", "content": chunk} for i in range(4)]
    assert V.validate_attachments(four) == (True, None)
    ok, error = V.validate_attachments([*four, {"filename": "extra.bin", "content": b"x"}])
    assert not ok and "100 MB" in (error or "")


def test_base64_attachment_size_is_decoded_size() -> None:
    data = base64.b64encode(bytes(25 * MB)).decode()
    assert V.validate_attachments([{"filename": "a", "contentType": "application/pdf", "data": data}]) == (
        True,
        None,
    )
    data = base64.b64encode(bytes(25 * MB + 1)).decode()
    assert V.validate_attachments([{"filename": "a", "data": data}])[0] is False


@pytest.mark.parametrize(
    "attachments",
    [
        [{"filename": "a.txt"}],  # no data
        [{"filename": "a.txt", "data": "***not base64***"}],
        [{"filename": "a.txt", "data": "YQ==", "content": b"a"}],
        [{"filename": "a.txt", "content": "text, not bytes"}],
        [{"data": "YQ=="}],  # no filename and no contentId
        [{"filename": "", "data": "YQ=="}],
        [{"filename": "evil\r\n.txt", "data": "YQ=="}],
        [{"filename": "a", "contentType": "not a type", "data": "YQ=="}],
        [{"filename": "a", "contentType": "multipart/mixed", "data": "YQ=="}],
        [{"filename": "a", "contentId": "bad id", "data": "YQ=="}],
        [{"filename": "a", "inline": "yes", "data": "YQ=="}],
        ["not a dict"],
        {"filename": "a", "data": "YQ=="},  # not a list
    ],
)
def test_invalid_attachments(attachments: object) -> None:
    ok, error = V.validate_attachments(attachments)  # type: ignore[arg-type]
    assert ok is False and error


def test_headers_validation() -> None:
    assert V.validate_headers({"X-Mailer": "email_service", "List-Unsubscribe": "<mailto:u@example.com>"}) == (
        True,
        None,
    )
    for bad in (
        {"X-A": "value\r\nBcc: evil@example.com"},
        {"X-A": "value\nmore"},
        {"Bad Name": "v"},
        {"X:A": "v"},
        {"Bcc": "x@example.com"},
        {"from": "x@example.com"},
        {"Message-ID": "<x@y>"},
        {"Content-Type": "text/html"},
        {"Resent-From": "x@example.com"},
    ):
        assert V.validate_headers(bad)[0] is False, bad


def test_validate_message_first_failure_wins() -> None:
    good = {"to_addresses": ["ann@example.com"], "subject": "s", "text_body": "t"}
    assert V.validate_message(**good) == (True, None)  # type: ignore[arg-type]
    assert V.validate_message(**good, from_address="Sender <s@example.com>") == (True, None)  # type: ignore[arg-type]
    ok, error = V.validate_message(**good, from_address="broken")  # type: ignore[arg-type]
    assert not ok and (error or "").startswith("From:")
    ok, error = V.validate_message(**good, reply_to=["r@example.com", "bad"])  # type: ignore[arg-type]
    assert not ok and (error or "").startswith("Reply-To:")
    assert V.validate_message(["ann@example.com"], "s")[0] is False  # no body
    assert V.validate_message(["ann@example.com"], "s", "t", custom_headers={"To": "x@example.com"})[0] is False


def test_envelope_recipients_dedup_is_case_insensitive_on_domain_only() -> None:
    assert envelope_recipients(
        ["Ann <ann@example.com>", "bob@example.com"],
        ["ann@EXAMPLE.COM", "Ann@example.com"],
        None,
        ["bob@Example.com", "hidden@example.com"],
    ) == ["ann@example.com", "bob@example.com", "Ann@example.com", "hidden@example.com"]


# -- SMTPEncryption: the two vocabularies (DESIGN.md section 2) ----------------------------------------


def test_encryption_seed_values() -> None:
    assert [member.value for member in SMTPEncryption] == ["none", "tls", "ssl"]
    assert SMTPEncryption.parse("tls") is SMTPEncryption.STARTTLS
    assert SMTPEncryption.parse("SSL ") is SMTPEncryption.IMPLICIT_SSL
    assert SMTPEncryption.parse("starttls") is SMTPEncryption.STARTTLS
    assert SMTPEncryption.parse(SMTPEncryption.NONE, "account") is SMTPEncryption.NONE


def test_encryption_account_vocabulary() -> None:
    assert SMTPEncryption.from_account_value("tls") is SMTPEncryption.IMPLICIT_SSL
    assert SMTPEncryption.from_account_value("starttls") is SMTPEncryption.STARTTLS
    assert SMTPEncryption.from_account_value("none") is SMTPEncryption.NONE
    assert SMTPEncryption.parse("tls", "account") is SMTPEncryption.IMPLICIT_SSL
    for member in SMTPEncryption:
        assert SMTPEncryption.from_account_value(member.to_account_value()) is member
    with pytest.raises(ValueError):
        SMTPEncryption.from_account_value("ssl")
    with pytest.raises(ValueError):
        SMTPEncryption.parse("tls", "other")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        SMTPEncryption.parse("plain")


# -- DeliveryResult --------------------------------------------------------------------------------


def test_delivery_status_values() -> None:
    assert [status.value for status in SMTPDeliveryStatus] == [
        "success",
        "failed",
        "retry",
        "invalid",
        "rejected",
        "temp_failed",
    ]


def test_delivery_result_to_dict_round_trip() -> None:
    sent_at = datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=UTC)
    result = DeliveryResult(
        status=SMTPDeliveryStatus.SUCCESS,
        message_id="<1@example.com>",
        smtp_code=250,
        recipient_failures={"x@example.com": "550 5.1.1 No such user"},
        sent_at=sent_at,
        retry_count=1,
    )
    body = result.to_dict()
    assert body == {
        "status": "success",
        "messageId": "<1@example.com>",
        "smtpCode": 250,
        "smtpError": None,
        "recipientFailures": {"x@example.com": "550 5.1.1 No such user"},
        "sentAt": 1714564800123,
        "retryCount": 1,
        "isRetryable": False,
    }
    assert DeliveryResult.from_dict(body) == result
    assert result.is_partial
    assert DeliveryResult(SMTPDeliveryStatus.INVALID).to_dict()["sentAt"] is None
