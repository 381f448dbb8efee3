"""The MIME side of compose (issue 9): what a draft or an outgoing message consists of, its checks, and its bytes.

* :class:`Recipient` / :class:`ComposeFields`: the fields of a draft as the API gives them (seed 002 shapes).
* :func:`check_fields`: seed 002 limits (254-character addresses, 998-character subject, 100 recipients, bodies)
  and seed 004 limits (25 MB an attachment, 20 a message) as :class:`InvalidInput` naming the field.
* :func:`reply_headers` / :func:`reply_subject`: ``In-Reply-To`` and ``References`` of an answer (RFC 5322
  section 3.6.4), ``Re:``/``Fwd:`` subjects.
* :func:`forward_body`: the quoted original of an inline forward.
* :func:`build_raw`: the RFC 5322 bytes (CRLF) through :func:`email_service.protocols.mime.build.build_message`.
  A draft keeps its Bcc header (so the draft shows its blind recipients when read back); a message to be sent
  never has one (RFC 5322 section 3.6.3: Bcc recipients are in the SMTP envelope only).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from email_service.errors import InvalidInput
from email_service.models import EmailMessage
from email_service.protocols.mime.build import AttachmentPart, build_message, parse_mailbox
from email_service.protocols.smtp_validate import SMTPMessageValidator

FORWARD_MODES = ("inline", "attachment")


@dataclass(frozen=True)
class Recipient:
    """One address with an optional display name (``{"email", "name"}`` in the API)."""

    email: str
    name: str | None = None

    def header_value(self) -> str:
        """``"Name" <addr>`` (quotes and backslashes escaped) or the bare addr-spec."""
        if not self.name:
            return self.email
        quoted = self.name.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{quoted}" <{self.email}>'

    @classmethod
    def from_row(cls, value: dict[str, Any]) -> Recipient:
        """From a stored ``{"name", "email"}`` of :class:`EmailMessage` address columns."""
        return cls(str(value.get("email") or ""), value.get("name") or None)


@dataclass(frozen=True)
class NewAttachment:
    """An attachment given inline in a request (seed 002 ``{filename, contentType, data}``), decoded."""

    filename: str
    content_type: str
    content: bytes = field(repr=False)


@dataclass(frozen=True)
class ComposeFields:
    """The fields of a draft or of an inline send; ``None`` means "not given" (an edit keeps the draft's value)."""

    to: tuple[Recipient, ...] | None = None
    cc: tuple[Recipient, ...] | None = None
    bcc: tuple[Recipient, ...] | None = None
    subject: str | None = None
    text_body: str | None = None
    html_body: str | None = None
    in_reply_to: Any = None  # uuid.UUID of a message of the same account
    forward_of: Any = None  # uuid.UUID of a message of the same account
    forward_mode: str = "attachment"
    attachments: tuple[NewAttachment, ...] = ()

    def given(self) -> bool:
        """True when any draft field was given."""
        return any(
            value is not None for value in (self.to, self.cc, self.bcc, self.subject, self.text_body, self.html_body)
        ) or bool(self.attachments or self.in_reply_to or self.forward_of)


def _fail(field_name: str, message: str) -> InvalidInput:
    return InvalidInput(f"{field_name}: {message}", details={field_name: [message]})


def check_recipients(fields: ComposeFields, *, sending: bool) -> None:
    """Each address valid (seed 002), at most 100 in all; at least one when ``sending``.

    Raises:
        InvalidInput: naming ``to``, ``cc`` or ``bcc``.
    """
    groups = {"to": fields.to or (), "cc": fields.cc or (), "bcc": fields.bcc or ()}
    total = sum(len(group) for group in groups.values())
    limit = SMTPMessageValidator.MAX_RECIPIENTS
    if total > limit:
        raise _fail("to", f"Too many recipients: {total} (maximum {limit} across to, cc and bcc)")
    if sending and total == 0:
        raise _fail("to", "At least one recipient is required to send")
    for name, group in groups.items():
        for recipient in group:
            ok, error = SMTPMessageValidator.validate_email_address(recipient.email)
            if ok:
                try:
                    parse_mailbox(recipient.header_value())
                except ValueError as exc:
                    ok, error = False, str(exc)
            if not ok:
                raise _fail(name, error or "Invalid address")


def check_fields(fields: ComposeFields, *, max_size: int, max_count: int, existing: int = 0) -> None:
    """Seed 002 / seed 004 limits of the given fields (see the module docstring); ``existing`` attachments of the
    draft count towards ``max_count``.

    Raises:
        InvalidInput: naming the field (``to``, ``cc``, ``bcc``, ``subject``, ``textBody``, ``htmlBody``,
            ``attachments``, ``forwardMode``).
    """
    check_recipients(fields, sending=False)
    ok, error = SMTPMessageValidator.validate_subject(fields.subject)
    if not ok:
        raise _fail("subject", error or "Invalid subject")
    for name, body in (("textBody", fields.text_body), ("htmlBody", fields.html_body)):
        if body is not None:
            ok, error = SMTPMessageValidator.validate_body(body, None)
            if not ok:
                raise _fail(name, error or "Invalid body")
    if fields.forward_mode not in FORWARD_MODES:
        raise _fail("forwardMode", "must be inline or attachment")
    if existing + len(fields.attachments) > max_count:
        raise _fail("attachments", f"A message can have at most {max_count} attachments")
    total = 0
    for item in fields.attachments:
        if len(item.content) > max_size:
            raise _fail("attachments", f"Attachment {item.filename!r} is larger than {max_size} bytes")
        total += len(item.content)
    if total > SMTPMessageValidator.MAX_TOTAL_ATTACHMENT_SIZE:
        raise _fail("attachments", "Attachments exceed 100 MB in total")


def prefixed_subject(prefix: str, subject: str) -> str:
    """``Re: <subject>`` / ``Fwd: <subject>``, unless the subject already starts with that prefix."""
    if subject.lower().startswith(prefix.lower()):
        return subject
    return f"{prefix} {subject}".strip()


def reply_headers(original: EmailMessage) -> tuple[str | None, list[str]]:
    """``(In-Reply-To, References)`` of an answer to ``original`` (RFC 5322 section 3.6.4): In-Reply-To is the
    parent's Message-ID; References the parent's References (or, without them, its single In-Reply-To) followed by
    the parent's Message-ID."""
    parent = original.message_id
    references = list(original.references or [])
    if not references and original.in_reply_to and len(original.in_reply_to.split()) == 1:
        references = [original.in_reply_to]
    if parent:
        references.append(parent)
    return parent, references


def forward_body(original: EmailMessage, text: str | None, html_text: str | None) -> tuple[str | None, str | None]:
    """The bodies of an inline forward: the user's text, then the original's headers and body (RFC 5322 field
    names; the HTML body quoted in a ``blockquote``)."""
    people = ", ".join(Recipient.from_row(a).header_value() for a in original.to_addresses or [])
    sender = Recipient(original.from_address or "", original.from_name).header_value()
    sent = datetime.fromtimestamp((original.sent_at or original.received_at or 0) / 1000).astimezone()
    lines = [
        "---------- Forwarded message ----------",
        f"From: {sender}",
        f"Date: {sent:%a, %d %b %Y %H:%M %z}",
        f"Subject: {original.subject}",
        f"To: {people}",
    ]
    quoted_text = "\n".join([*lines, "", original.text_body or ""])
    new_text = f"{text or ''}\n\n{quoted_text}"
    new_html = None
    if html_text is not None or original.html_body is not None:
        header = "<br>".join(html.escape(line) for line in lines)
        inner = original.html_body or f"<pre>{html.escape(original.text_body or '')}</pre>"
        mine = html_text if html_text is not None else f"<pre>{html.escape(text or '')}</pre>"
        new_html = f"{mine}<br><div>{header}<blockquote>{inner}</blockquote></div>"
    return new_text, new_html


@dataclass(frozen=True)
class Envelope:
    """What :func:`build_raw` needs beyond the fields: sender, identity headers and whether to keep Bcc."""

    from_address: str
    message_id: str
    date: datetime
    in_reply_to: str | None = None
    references: Sequence[str] = ()
    keep_bcc: bool = False


def build_raw(fields: ComposeFields, envelope: Envelope, attachments: Sequence[AttachmentPart]) -> bytes:
    """The message's RFC 5322 bytes (CRLF line ends, 7bit-safe encodings).

    Raises:
        InvalidInput: the builder refused a value (naming ``attachments`` or the header).
    """
    try:
        message = build_message(
            from_address=envelope.from_address,
            to=[r.header_value() for r in fields.to or ()],
            cc=[r.header_value() for r in fields.cc or ()],
            subject=fields.subject or "",
            text_body=fields.text_body,
            html_body=fields.html_body,
            attachments=list(attachments),
            in_reply_to=envelope.in_reply_to,
            references=list(envelope.references) or None,
            message_id=envelope.message_id,
            date=envelope.date,
        )
        if envelope.keep_bcc and fields.bcc:
            message["Bcc"] = [parse_mailbox(r.header_value()) for r in fields.bcc]
    except ValueError as exc:
        raise InvalidInput(f"The message cannot be built: {exc}", details={"message": [str(exc)]}) from exc
    return message.as_bytes()
