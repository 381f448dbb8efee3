"""Build outgoing RFC 5322 messages with the stdlib ``email`` API (``EmailMessage``, ``email.policy.SMTP``).

Structure (RFC 2046 section 5.1), from the outside in::

    multipart/mixed                      only when there are attachments
      multipart/alternative              only when there are both a text and an HTML body
        text/plain
        multipart/related                only when inline parts (``contentId`` / ``inline: true``) exist
          text/html
          image/png (Content-ID: <...>, Content-Disposition: inline)
      application/pdf (Content-Disposition: attachment; filename*=utf-8''...)

Non-ASCII header text (Subject, display names, custom header values) is written as RFC 2047 encoded-words and
non-ASCII filenames as RFC 2231 parameters by the policy.  Bodies are 7bit, quoted-printable or base64 (the
policy is ``email.policy.SMTP`` with ``cte_type="7bit"``), so the message never needs the 8BITMIME extension.
There is never a Bcc header: blind recipients belong to the SMTP envelope only (RFC 5322 section 3.6.3,
DESIGN.md section 8).
"""

from __future__ import annotations

import base64
import binascii
import email.policy
import mimetypes
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

__all__ = [
    "BUILD_POLICY",
    "PROTECTED_HEADERS",
    "AttachmentPart",
    "attachment_from_dict",
    "build_message",
    "check_custom_headers",
    "check_header_value",
    "coerce_attachments",
    "has_line_break",
    "parse_mailbox",
    "split_mailbox",
]

#: ``email.policy.SMTP`` (CRLF line ends, RFC 2047/2231 header encoding) with 7bit-safe body encodings.
BUILD_POLICY = email.policy.SMTP.clone(cte_type="7bit")

#: Header names (lower case) that ``custom_headers`` may not set: the builder owns them.  ``Resent-*`` and
#: ``Content-*`` names are refused as well.  ``In-Reply-To`` and ``References`` are allowed unless given as
#: arguments of :func:`build_message`.
PROTECTED_HEADERS = frozenset(
    {
        "from",
        "sender",
        "to",
        "cc",
        "bcc",
        "reply-to",
        "subject",
        "date",
        "message-id",
        "mime-version",
        "return-path",
        "received",
    }
)
_PROTECTED_PREFIXES = ("content-", "resent-")

_FIELD_NAME = re.compile(r"^[\x21-\x39\x3b-\x7e]+$")  # RFC 5322 section 3.6.8: printable ASCII except ":"
_CONTENT_TYPE = re.compile(r"^[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+$")  # RFC 2045 section 5.1 tokens
_CONTENT_ID = re.compile(r"^[\x21-\x3b\x3d\x3f-\x7e]+$")  # printable ASCII without "<" and ">"
# CR, LF, NUL and every other character ``str.splitlines`` breaks at (the stdlib refuses them in headers).
_LINE_BREAKS = frozenset("\r\n\x00\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")


def has_line_break(value: str) -> bool:
    """True when ``value`` holds CR, LF, NUL or another line separator (header injection, RFC 5322 2.2)."""
    return not _LINE_BREAKS.isdisjoint(value)


@dataclass(frozen=True)
class AttachmentPart:
    """One attachment, decoded.

    Attributes:
        filename: file name as shown to the recipient (any Unicode, RFC 2231 encoded when not ASCII; outer
            blanks stripped).
        content_type: ``type/subtype`` (RFC 2045 section 5.1), parameters dropped.
        content: the raw bytes (not in ``repr``).
        content_id: Content-ID without angle brackets (RFC 2392), for ``cid:`` references from the HTML body.
        inline: ``Content-Disposition: inline`` (RFC 2183); with an HTML body it goes into multipart/related.
    """

    filename: str | None
    content_type: str
    content: bytes = field(repr=False)
    content_id: str | None = None
    inline: bool = False

    @property
    def size(self) -> int:
        """Decoded size in bytes."""
        return len(self.content)

    @property
    def is_related(self) -> bool:
        """True when the part belongs beside the HTML body (has a Content-ID or is marked inline)."""
        return self.inline or self.content_id is not None


def check_header_value(name: str, value: str) -> None:
    """Refuse header injection: a value with CR, LF, NUL or another line separator (RFC 5322 section 2.2).

    Raises:
        ValueError: naming the header.
    """
    if not isinstance(value, str):
        raise ValueError(f"Header {name} must be a string")
    if has_line_break(value):
        raise ValueError(f"Header {name} must not contain line breaks or NUL characters")


def split_mailbox(value: str) -> tuple[str, str]:
    """Split ``"Display Name <local@domain>"`` or a bare ``local@domain`` into ``(display_name, addr_spec)``.

    Surrounding double quotes of the display name are removed (RFC 5322 section 3.4).  The addr-spec is not
    validated here (see :class:`email_service.protocols.smtp.SMTPMessageValidator`).

    Raises:
        ValueError: not a string, or CR/LF/NUL in it (header injection).
    """
    if not isinstance(value, str):
        raise ValueError("Address must be a string")
    check_header_value("address", value)
    text = value.strip()
    if text.endswith(">") and "<" in text:
        cut = text.rindex("<")
        name = text[:cut].strip()
        if len(name) >= 2 and name[0] == name[-1] == '"':
            name = name[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        return name, text[cut + 1 : -1].strip()
    return "", text


def parse_mailbox(value: str) -> Address:
    """``"Name <addr>"`` or ``addr`` -> :class:`email.headerregistry.Address` (RFC 5322 section 3.4).

    Raises:
        ValueError: CR/LF/NUL, or an addr-spec the stdlib cannot parse.
    """
    name, addr_spec = split_mailbox(value)
    if not addr_spec or "@" not in addr_spec:
        raise ValueError(f"Invalid email address {value!r}")
    try:
        return Address(display_name=name, addr_spec=addr_spec)
    except (ValueError, IndexError, TypeError) as exc:  # email.errors.HeaderParseError is a ValueError
        raise ValueError(f"Invalid email address {value!r}") from exc


def _decode_data(data: Any, filename: str | None) -> bytes:
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data)
    if not isinstance(data, str):
        raise ValueError(f"Attachment {filename!r}: 'data' must be a base64 string")
    try:
        return base64.b64decode("".join(data.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"Attachment {filename!r}: 'data' is not valid base64") from None


def _content_of(item: Mapping[str, Any], filename: str | None) -> bytes:
    has_content = item.get("content") is not None
    has_data = item.get("data") is not None
    if has_content and has_data:
        raise ValueError(f"Attachment {filename!r}: give either 'data' (base64) or 'content' (bytes), not both")
    if has_content:
        content = item["content"]
        if not isinstance(content, bytes | bytearray | memoryview):
            raise ValueError(f"Attachment {filename!r}: 'content' must be bytes")
        return bytes(content)
    if has_data:
        return _decode_data(item["data"], filename)
    raise ValueError(f"Attachment {filename!r} has no 'data' or 'content'")


def _content_type_of(item: Mapping[str, Any], filename: str | None) -> str:
    raw = item.get("contentType") or item.get("content_type")
    if raw is None:
        guessed = mimetypes.guess_type(filename or "")[0] if filename else None
        return guessed or "application/octet-stream"
    if not isinstance(raw, str):
        raise ValueError(f"Attachment {filename!r}: 'contentType' must be a string")
    content_type = raw.split(";", 1)[0].strip().lower()
    if not _CONTENT_TYPE.match(content_type) or content_type.startswith("multipart/"):
        raise ValueError(f"Attachment {filename!r}: invalid content type {raw!r}")
    return content_type


def _content_id_of(item: Mapping[str, Any], filename: str | None) -> str | None:
    raw = item.get("contentId") or item.get("content_id")
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise ValueError(f"Attachment {filename!r}: 'contentId' must be a string")
    content_id = raw.strip()
    if content_id.startswith("<") and content_id.endswith(">"):
        content_id = content_id[1:-1]
    if not _CONTENT_ID.match(content_id):
        raise ValueError(f"Attachment {filename!r}: invalid contentId {raw!r}")
    return content_id


def attachment_from_dict(item: Mapping[str, Any]) -> AttachmentPart:
    """Decode a seed-002 attachment dict.

    Shape: ``{"filename": str, "contentType": "type/subtype", "data": base64 str}`` (seed 002), or raw bytes
    under ``"content"`` instead of ``"data"``; optional ``"contentId": str`` and ``"inline": bool``.  A
    missing ``contentType`` is guessed from the filename (``application/octet-stream`` otherwise).
    ``filename`` may be omitted only for a part with a ``contentId``.

    Raises:
        ValueError: not a mapping, missing/ill-typed fields, invalid base64, CR/LF/NUL or control characters
            in the filename, an invalid content type or Content-ID.
    """
    if not isinstance(item, Mapping):
        raise ValueError("Each attachment must be an object")
    filename = item.get("filename")
    if filename is not None and (not isinstance(filename, str) or not filename.strip()):
        raise ValueError("Attachment 'filename' must be a non-empty string")
    if filename is not None:
        if has_line_break(filename) or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in filename):
            raise ValueError(f"Attachment filename {filename!r} must not contain control characters")
        filename = filename.strip()  # readers strip it anyway (RFC 2183 section 2.3)
    content_id = _content_id_of(item, filename)
    if filename is None and content_id is None:
        raise ValueError("Attachment 'filename' is required")
    inline = item.get("inline", False)
    if not isinstance(inline, bool):
        raise ValueError(f"Attachment {filename!r}: 'inline' must be a boolean")
    return AttachmentPart(
        filename=filename,
        content_type=_content_type_of(item, filename),
        content=_content_of(item, filename),
        content_id=content_id,
        inline=inline,
    )


def coerce_attachments(
    items: Iterable[Mapping[str, Any] | AttachmentPart] | None,
) -> list[AttachmentPart]:
    """Decode a list of attachment dicts (see :func:`attachment_from_dict`); parts pass through unchanged.

    Raises:
        ValueError: ``items`` is not a list, or any item is invalid.
    """
    if items is None:
        return []
    if isinstance(items, str | bytes | Mapping):
        raise ValueError("Attachments must be a list")
    return [item if isinstance(item, AttachmentPart) else attachment_from_dict(item) for item in items]


def _check_header_name(name: str) -> str:
    if not isinstance(name, str) or not _FIELD_NAME.match(name):
        raise ValueError(f"Invalid header name {name!r}")
    lowered = name.lower()
    if lowered in PROTECTED_HEADERS or lowered.startswith(_PROTECTED_PREFIXES):
        raise ValueError(f"Header {name} cannot be set through custom headers")
    return lowered


def check_custom_headers(
    headers: Mapping[str, str] | None, *, also_reserved: Iterable[str] = ()
) -> list[tuple[str, str]]:
    """Validate custom headers and return them as ``[(name, value)]``.

    A name must be an RFC 5322 section 3.6.8 field name and not in :data:`PROTECTED_HEADERS`, ``Content-*`` or
    ``Resent-*``, nor in ``also_reserved`` (lower-case names); a value must hold no CR, LF or NUL (header
    injection).  Non-ASCII values are allowed (RFC 2047 encoded when written).

    Raises:
        ValueError: naming the offending header.
    """
    if headers is None:
        return []
    if not isinstance(headers, Mapping):
        raise ValueError("Custom headers must be an object of name -> value")
    reserved = {name.lower() for name in also_reserved}
    checked: list[tuple[str, str]] = []
    for name, value in headers.items():
        if _check_header_name(name) in reserved:
            raise ValueError(f"Header {name} cannot be set through custom headers")
        check_header_value(name, value)
        checked.append((name, value))
    return checked


def _mailboxes(values: str | Sequence[str] | None) -> list[Address]:
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    return [parse_mailbox(value) for value in values]


def _msg_id(value: str, what: str) -> str:
    check_header_value(what, value)
    text = value.strip()
    if not text.startswith("<"):
        text = f"<{text}>"
    if " " in text or "\t" in text or not text.endswith(">") or len(text) < 3:
        raise ValueError(f"Invalid {what} {value!r}")
    return text


def _set_envelope_headers(
    msg: EmailMessage,
    *,
    from_address: str,
    to: Sequence[str],
    cc: Sequence[str] | None,
    reply_to: str | Sequence[str] | None,
    subject: str,
) -> Address:
    sender = parse_mailbox(from_address)
    msg["From"] = sender
    if to:
        msg["To"] = _mailboxes(to)
    if cc:
        msg["Cc"] = _mailboxes(cc)
    if reply_to:
        msg["Reply-To"] = _mailboxes(reply_to)
    check_header_value("Subject", subject)
    msg["Subject"] = subject
    return sender


def _set_identity_headers(
    msg: EmailMessage,
    *,
    sender: Address,
    message_id: str | None,
    date: datetime | None,
    in_reply_to: str | None,
    references: str | Sequence[str] | None,
) -> None:
    if date is None:
        date = datetime.now().astimezone()
    elif date.tzinfo is None:
        raise ValueError("date must be timezone-aware")
    msg["Date"] = format_datetime(date)
    domain = sender.domain or "localhost"
    msg["Message-ID"] = _msg_id(message_id, "Message-ID") if message_id else make_msgid(domain=domain)
    if in_reply_to:
        msg["In-Reply-To"] = _msg_id(in_reply_to, "In-Reply-To")
    if references:
        refs = references.split() if isinstance(references, str) else list(references)
        msg["References"] = " ".join(_msg_id(ref, "References") for ref in refs)


def _add_related(target: EmailMessage, part: AttachmentPart) -> None:
    maintype, subtype = part.content_type.split("/", 1)
    target.add_related(
        part.content,
        maintype,
        subtype,
        cid=f"<{part.content_id}>" if part.content_id else None,
        disposition="inline",
        filename=part.filename,
    )


def _seven_bit_message(content: bytes) -> bytes | None:
    """The CRLF-normalised bytes of a message/rfc822 attachment when it is 7bit data, else ``None``."""
    if not content.isascii() or b"\x00" in content:
        return None
    lines = content.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
    if any(len(line) > 998 for line in lines):
        return None
    return b"\r\n".join(lines)


def _add_attachment(msg: EmailMessage, part: AttachmentPart) -> None:
    maintype, subtype = part.content_type.split("/", 1)
    content, cte = part.content, "base64"
    if part.content_type == "message/rfc822":
        # RFC 2046 section 5.2.1: message/rfc822 is 7bit, 8bit or binary, never base64.  8bit data would need
        # 8BITMIME, so such a message falls back to base64, which mail clients tolerate.
        seven_bit = _seven_bit_message(content)
        if seven_bit is not None:
            content, cte = seven_bit, "7bit"
    msg.add_attachment(
        content,
        maintype,
        subtype,
        cte=cte,
        disposition="inline" if part.inline else "attachment",
        filename=part.filename,
        cid=f"<{part.content_id}>" if part.content_id else None,
    )


def _set_body(
    msg: EmailMessage, text_body: str | None, html_body: str | None, related: Sequence[AttachmentPart]
) -> None:
    if html_body is None:
        msg.set_content(text_body or "")
        return
    if text_body is None:
        msg.set_content(html_body, subtype="html")
        html_part = msg
    else:
        msg.set_content(text_body)
        msg.add_alternative(html_body, subtype="html")
        payload = msg.get_payload()
        assert isinstance(payload, list) and isinstance(payload[-1], EmailMessage)
        html_part = payload[-1]
    for part in related:
        _add_related(html_part, part)


def _strip_nested_mime_version(msg: EmailMessage) -> None:
    # The stdlib adds MIME-Version to parts it wraps; RFC 2045 section 4 wants it only at the top level.
    for part in msg.walk():
        if part is not msg and "MIME-Version" in part:
            del part["MIME-Version"]


def build_message(
    *,
    from_address: str,
    to: Sequence[str],
    cc: Sequence[str] | None = None,
    bcc: Sequence[str] | None = None,
    subject: str,
    text_body: str | None = None,
    html_body: str | None = None,
    reply_to: str | Sequence[str] | None = None,
    attachments: Iterable[Mapping[str, Any] | AttachmentPart] | None = None,
    custom_headers: Mapping[str, str] | None = None,
    in_reply_to: str | None = None,
    references: str | Sequence[str] | None = None,
    message_id: str | None = None,
    date: datetime | None = None,
) -> EmailMessage:
    """Build an RFC 5322 message ready for :meth:`smtplib.SMTP.sendmail` (serialise with ``as_bytes()``).

    Args:
        from_address: ``"Name <addr>"`` or ``addr``; its domain names the generated Message-ID.
        to, cc: recipients for the To/Cc headers (same forms); an empty ``to`` omits the header.
        bcc: accepted for symmetry and ignored: Bcc is never written (RFC 5322 section 3.6.3, option 1).
        subject: Subject text, RFC 2047 encoded when not ASCII.
        text_body, html_body: bodies; with both, multipart/alternative (RFC 2046 section 5.1.4).  With
            neither, an empty text/plain body.
        reply_to: one address or a list (RFC 5322 section 3.6.2).
        attachments: seed-002 dicts (see :func:`attachment_from_dict`) or :class:`AttachmentPart`; parts with
            a ``contentId`` or ``inline`` go into multipart/related around the HTML body (RFC 2387) when
            there is one, else they are attached (disposition kept).
        custom_headers: extra headers, see :func:`check_custom_headers` (no From/To/Cc/Bcc/Reply-To/Subject/
            Date/Message-ID/MIME-Version/Sender/Return-Path/Received/Content-*/Resent-*).
        in_reply_to, references: message ids for replies (RFC 5322 section 3.6.4); angle brackets added if
            absent.
        message_id: Message-ID to use instead of ``make_msgid(domain=<sender domain>)``.
        date: aware datetime for the Date header (RFC 5322 section 3.6.1); now, local time, by default.

    Returns:
        An :class:`EmailMessage` with policy :data:`BUILD_POLICY`.

    Raises:
        ValueError: an unparsable address, CR/LF/NUL in a header value, a refused custom header, an invalid
            attachment, a naive ``date``.
    """
    del bcc  # envelope only
    msg = EmailMessage(policy=BUILD_POLICY)
    sender = _set_envelope_headers(msg, from_address=from_address, to=to, cc=cc, reply_to=reply_to, subject=subject)
    _set_identity_headers(
        msg, sender=sender, message_id=message_id, date=date, in_reply_to=in_reply_to, references=references
    )
    reserved = [name for name, given in (("in-reply-to", in_reply_to), ("references", references)) if given]
    for name, value in check_custom_headers(custom_headers, also_reserved=reserved):
        msg[name] = value
    parts = coerce_attachments(attachments)
    related = [part for part in parts if part.is_related] if html_body is not None else []
    _set_body(msg, text_body, html_body, related)
    for part in parts:
        if not any(part is r for r in related):
            _add_attachment(msg, part)
    _strip_nested_mime_version(msg)
    return msg
