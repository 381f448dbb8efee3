"""build_message: MIME structure, RFC 2047/2231 encodings, generated headers, custom-header rules.

Pure: no I/O.  Messages are serialised with ``as_bytes()`` and parsed back with ``policy.default``.
"""

from __future__ import annotations

import base64
import email
import email.policy
import re
from datetime import UTC, datetime, timedelta, timezone
from email.message import EmailMessage
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from email_service.protocols.mime.build import (
    PROTECTED_HEADERS,
    AttachmentPart,
    attachment_from_dict,
    build_message,
    parse_mailbox,
)

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))


def _build(**kwargs: Any) -> EmailMessage:
    kwargs.setdefault("from_address", "Sender <sender@example.com>")
    kwargs.setdefault("to", ["ann@example.com"])
    kwargs.setdefault("subject", "Subject")
    return build_message(**kwargs)


def _round_trip(message: EmailMessage) -> tuple[bytes, EmailMessage]:
    raw = message.as_bytes()
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return raw, parsed


def _tree(part: Any, depth: int = 0) -> list[str]:
    lines = ["  " * depth + part.get_content_type()]
    if part.is_multipart():
        for child in part.iter_parts():
            lines += _tree(child, depth + 1)
    return lines


def _text(part: Any) -> str:
    return str(part.get_content()).replace("\r\n", "\n")


IMAGE = {"filename": "logo.png", "contentType": "image/png", "content": PNG, "contentId": "logo@example.com"}
PDF = {
    "filename": "doc.pdf",
    "contentType": "application/pdf",
    "data": base64.b64encode(b"%PDF-1.4").decode(),
}


@pytest.mark.parametrize(
    ("kwargs", "tree"),
    [
        ({"text_body": "t"}, ["text/plain"]),
        ({"html_body": "<p>h</p>"}, ["text/html"]),
        ({}, ["text/plain"]),
        (
            {"text_body": "t", "html_body": "<p>h</p>"},
            ["multipart/alternative", "  text/plain", "  text/html"],
        ),
        ({"text_body": "t", "attachments": [PDF]}, ["multipart/mixed", "  text/plain", "  application/pdf"]),
        (
            {"html_body": "<img src='cid:logo@example.com'>", "attachments": [IMAGE]},
            ["multipart/related", "  text/html", "  image/png"],
        ),
        (
            {"text_body": "t", "html_body": "<img src='cid:logo@example.com'>", "attachments": [IMAGE, PDF]},
            [
                "multipart/mixed",
                "  multipart/alternative",
                "    text/plain",
                "    multipart/related",
                "      text/html",
                "      image/png",
                "  application/pdf",
            ],
        ),
        # an inline part without an HTML body is attached, keeping its disposition
        ({"text_body": "t", "attachments": [IMAGE]}, ["multipart/mixed", "  text/plain", "  image/png"]),
    ],
)
def test_structure(kwargs: dict[str, Any], tree: list[str]) -> None:
    raw, parsed = _round_trip(_build(**kwargs))
    assert _tree(parsed) == tree
    assert raw.count(b"MIME-Version:") == 1  # only at the top (RFC 2045 section 4)
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")


def test_inline_image_and_attachment_bytes() -> None:
    _, parsed = _round_trip(
        _build(text_body="t", html_body="<img src='cid:logo@example.com'>", attachments=[IMAGE, PDF])
    )
    [image] = [part for part in parsed.walk() if part.get_content_type() == "image/png"]
    assert image["Content-ID"] == "<logo@example.com>"
    assert image.get_content_disposition() == "inline"
    assert image.get_content() == PNG
    [pdf] = list(parsed.iter_attachments())
    assert pdf.get_content_disposition() == "attachment"
    assert pdf.get_filename() == "doc.pdf" and pdf.get_content() == b"%PDF-1.4"


def test_bcc_is_never_written() -> None:
    raw, parsed = _round_trip(_build(text_body="t", bcc=["hidden@example.com"]))
    assert "Bcc" not in parsed and b"hidden" not in raw


def test_address_headers_and_rfc2047() -> None:
    raw, parsed = _round_trip(
        _build(
            from_address="Jörg Müller <joerg@example.de>",
            to=["Zoë <zoe@example.com>", "plain@example.com"],
            cc=['"Smith, Ann" <ann@example.com>'],
            reply_to=["r1@example.com", "Ré <r2@example.com>"],
            subject="Grüße € 東京",
            text_body="t",
        )
    )
    headers = raw.split(b"\r\n\r\n", 1)[0]
    assert headers.isascii() and b"=?utf-8?" in headers
    assert parsed["Subject"] == "Grüße € 東京"
    assert parsed["From"].addresses[0].display_name == "Jörg Müller"
    assert [a.addr_spec for a in parsed["To"].addresses] == ["zoe@example.com", "plain@example.com"]
    assert parsed["To"].addresses[0].display_name == "Zoë"
    assert parsed["Cc"].addresses[0].display_name == "Smith, Ann"
    assert [a.addr_spec for a in parsed["Reply-To"].addresses] == ["r1@example.com", "r2@example.com"]


def test_no_to_header_when_to_is_empty() -> None:
    _, parsed = _round_trip(_build(to=[], bcc=["hidden@example.com"], text_body="t"))
    assert "To" not in parsed


def test_non_ascii_filename_is_rfc2231() -> None:
    name = "résumé € 2024 東京.pdf"
    raw, parsed = _round_trip(_build(text_body="t", attachments=[{"filename": name, "content": b"x"}]))
    assert re.search(rb"filename\*(0\*)?=utf-8''", raw)  # RFC 2231 (section 4, with continuations)
    [part] = list(parsed.iter_attachments())
    assert part.get_filename() == name
    assert part.get_content_type() == "application/pdf"  # guessed from the name


def test_generated_message_id_and_date() -> None:
    message = _build(text_body="t")
    assert message["Message-ID"].endswith("@example.com>")
    assert _build(text_body="t")["Message-ID"] != message["Message-ID"]
    parsed_date = message["Date"].datetime
    assert abs(parsed_date - datetime.now(UTC)) < timedelta(minutes=1)


def test_explicit_identity_headers() -> None:
    date = datetime(2024, 2, 29, 13, 30, tzinfo=timezone(timedelta(hours=2)))
    _, parsed = _round_trip(
        _build(
            text_body="t",
            message_id="abc@example.org",
            date=date,
            in_reply_to="<parent@example.org>",
            references=["root@example.org", "<parent@example.org>"],
        )
    )
    assert parsed["Message-ID"] == "<abc@example.org>"
    assert parsed["Date"] == "Thu, 29 Feb 2024 13:30:00 +0200"
    assert parsed["In-Reply-To"] == "<parent@example.org>"
    assert parsed["References"] == "<root@example.org> <parent@example.org>"


def test_naive_date_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        _build(text_body="t", date=datetime(2024, 1, 1))


def test_custom_headers() -> None:
    raw, parsed = _round_trip(
        _build(
            text_body="t",
            custom_headers={"X-Priority": "1", "X-Note": "naïve", "References": "<r@example.com>"},
        )
    )
    assert parsed["X-Priority"] == "1" and parsed["X-Note"] == "naïve" and parsed["References"] == "<r@example.com>"
    assert b"X-Note: =?utf-8?" in raw


@pytest.mark.parametrize("name", [*sorted(PROTECTED_HEADERS), "Content-Type", "content-transfer-encoding", "Resent-To"])
def test_protected_headers_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match=name):
        _build(text_body="t", custom_headers={name: "x@example.com"})


@pytest.mark.parametrize(
    "headers",
    [
        {"X-A": "v\r\nBcc: evil@example.com"},
        {"X-A": "v\nw"},
        {"X-A": "v\rw"},
        {"X-A": "\x00"},
        {"X-A": "v\u2028w"},
        {"X-A": "v\x0cw"},
        {"X A": "v"},
        {"X:A": "v"},
        {"": "v"},
        {"X-Ä": "v"},
    ],
)
def test_header_injection_is_refused(headers: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        _build(text_body="t", custom_headers=headers)


def test_reply_headers_given_twice_are_refused() -> None:
    with pytest.raises(ValueError, match="In-Reply-To"):
        _build(text_body="t", in_reply_to="<a@b.example>", custom_headers={"In-Reply-To": "<c@d.example>"})


@pytest.mark.parametrize(
    "kwargs",
    [
        {"subject": "a\r\nBcc: evil@example.com"},
        {"from_address": "Evil\r\nBcc: x@example.com <s@example.com>"},
        {"to": ["ann@example.com\nBcc: x@example.com"]},
        {"from_address": "not an address"},
        {"message_id": "<a b@example.com>"},
    ],
)
def test_injection_and_bad_values_in_fixed_headers(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        _build(text_body="t", **kwargs)


def test_bodies_are_7bit_safe() -> None:
    long_line = "ä" * 2000
    raw, parsed = _round_trip(_build(text_body=f"Grüße\n{long_line}\n", html_body="<p>" + "x" * 3000 + "</p>"))
    assert raw.isascii()
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    plain = parsed.get_body(("plain",))
    assert plain is not None and _text(plain) == f"Grüße\n{long_line}\n"


def test_message_rfc822_attachment() -> None:
    inner = b"From: a@example.com\nSubject: inner\n\nbody\n"
    raw, parsed = _round_trip(
        _build(
            text_body="t",
            attachments=[{"filename": "fwd.eml", "contentType": "message/rfc822", "content": inner}],
        )
    )
    [part] = [p for p in parsed.walk() if p.get_content_type() == "message/rfc822"]
    assert part["Content-Transfer-Encoding"] == "7bit"  # RFC 2046 section 5.2.1
    assert part.get_content()["Subject"] == "inner"
    eight_bit = b"From: a@example.com\nSubject: x\n\nGr\xc3\xbc\xc3\x9fe\n"
    raw, _ = _round_trip(
        _build(
            text_body="t",
            attachments=[{"filename": "f.eml", "contentType": "message/rfc822", "content": eight_bit}],
        )
    )
    assert raw.isascii()


def test_attachment_from_dict_forms() -> None:
    wrapped = base64.encodebytes(b"hello world" * 20).decode()  # with line breaks
    part = attachment_from_dict({"filename": "a.txt", "data": wrapped})
    assert part.content == b"hello world" * 20 and part.content_type == "text/plain"
    part = attachment_from_dict({"filename": "x", "content": bytearray(b"ab"), "contentType": "Image/PNG; x=y"})
    assert part.content == b"ab" and part.content_type == "image/png"
    part = attachment_from_dict({"content": b"c", "contentId": "<cid@example.com>"})
    assert part.filename is None and part.content_id == "cid@example.com" and part.is_related
    assert attachment_from_dict({"filename": "noext", "content": b""}).content_type == "application/octet-stream"
    assert "secret" not in repr(AttachmentPart("a", "text/plain", b"secret"))


def test_parse_mailbox() -> None:
    assert parse_mailbox('"Doe, J" <j@example.com>').display_name == "Doe, J"
    assert parse_mailbox("j@example.com").addr_spec == "j@example.com"
    with pytest.raises(ValueError):
        parse_mailbox("no-at-sign")


_HEADER_TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), max_size=120)
_BODY_TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc"), whitelist_characters="\n"), max_size=400)


@settings(max_examples=150, deadline=None)
@given(
    subject=_HEADER_TEXT,
    display_name=_HEADER_TEXT,
    filename=_HEADER_TEXT.filter(lambda name: name.strip() != ""),
    body=_BODY_TEXT,
    content=st.binary(max_size=300),
)
def test_round_trip_property(subject: str, display_name: str, filename: str, body: str, content: bytes) -> None:
    message = _build(
        from_address=f'"{display_name}" <sender@example.com>'.replace("\\", "").replace('""', '"'),
        subject=subject,
        text_body=body,
        attachments=[{"filename": filename, "content": content}],
    )
    raw, parsed = _round_trip(message)
    assert raw.isascii()
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    assert parsed["Subject"] == subject.lstrip(" \t")  # readers drop the blanks after "Subject:"
    [attachment] = list(parsed.iter_attachments())
    assert attachment.get_filename() == filename.strip()
    assert attachment.get_payload(decode=True) == content  # a guessed text/* type still carries the exact bytes
    plain = parsed.get_body(("plain",))
    assert plain is not None
    assert _text(plain) == (body if body.endswith("\n") else body + "\n")
