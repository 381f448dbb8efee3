"""Schemas of compose and send (issue 9): draft fields, send requests, outbox items."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from apiflask import Schema
from apiflask.fields import UUID, Dict, Integer, List, Nested, String
from apiflask.validators import Length, OneOf, Range
from marshmallow import ValidationError, validates_schema

from email_service.errors import InvalidInput
from email_service.models import OUTBOX_STATUSES
from email_service.services.compose_mime import FORWARD_MODES, ComposeFields, NewAttachment, Recipient

from .change_schemas import MessageUpdateIn
from .fields import EmailAddress, FullMatch, Text, WholeNumber
from .schemas import PaginationOut, PaginationQuery

#: ``type/subtype`` (RFC 2045 section 5.1 tokens).
CONTENT_TYPE_PATTERN = r"^[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+$"
#: Largest ``sendAt`` the schema takes (the service refuses more than a year ahead).
MAX_EPOCH_MS = 2**53 - 1
DRAFT_FIELDS = ("to", "cc", "bcc", "subject", "textBody", "htmlBody", "attachments", "inReplyTo", "forwardOf")


class AddressIn(Schema):
    """A recipient: ``email`` and an optional display ``name``."""

    email = EmailAddress(required=True, validate=Length(3, 254))
    name = Text(validate=Length(max=255), allow_none=True)


class AttachmentIn(Schema):
    """An attachment given inline (seed 002): ``data`` is the base64 of the bytes."""

    filename = Text(required=True, validate=Length(1, 255))
    contentType = Text(
        required=True,
        validate=[Length(3, 255), FullMatch(CONTENT_TYPE_PATTERN, error="contentType must be type/subtype")],
    )
    data = Text(required=True, metadata={"description": "The bytes, base64 (RFC 4648)", "format": "byte"})


def _addresses() -> List[Any]:
    return List(Nested(AddressIn), validate=Length(max=100, error="At most 100 recipients per field"))


class DraftFieldsIn(Schema):
    """The fields of a draft (all optional; an edit replaces the ones given and adds the attachments given)."""

    to = _addresses()
    cc = _addresses()
    bcc = _addresses()
    subject = Text(allow_none=True, metadata={"description": "At most 998 characters, no line breaks"})
    textBody = Text(allow_none=True)
    htmlBody = Text(allow_none=True)
    attachments = List(
        Nested(AttachmentIn),
        validate=Length(max=100),
        metadata={"description": "At most MAX_ATTACHMENTS_PER_MESSAGE (20), each at most MAX_ATTACHMENT_SIZE"},
    )


class DraftCreateIn(DraftFieldsIn):
    """``POST /accounts/{id}/messages``: a new draft, optionally answering or forwarding a message of the account."""

    inReplyTo = UUID(allow_none=True, metadata={"description": "Id of the message answered (In-Reply-To, Re:)"})
    forwardOf = UUID(allow_none=True, metadata={"description": "Id of the message forwarded (Fwd:)"})
    forwardMode = Text(
        load_default="attachment",
        validate=OneOf(FORWARD_MODES, error="forwardMode must be inline or attachment"),
        metadata={"description": "attachment: the original as message/rfc822; inline: quoted with its attachments"},
    )


def _send_at() -> Integer:
    return WholeNumber(
        validate=Range(0, MAX_EPOCH_MS),
        allow_none=True,
        metadata={"description": "Epoch ms; in the past means now; at most a year ahead"},
    )


class SendInlineIn(DraftCreateIn):
    """``POST /accounts/{id}/send``: the fields of a draft, sent at once (after the undo window) or at ``sendAt``."""

    sendAt = _send_at()


class SendDraftIn(Schema):
    """``POST /compose/send``: the draft to send."""

    messageId = UUID(required=True, error_messages={"required": "messageId is required"})
    sendAt = _send_at()


class MessageReplaceIn(MessageUpdateIn, DraftFieldsIn):
    """``PUT /messages/{id}``: draft fields (a draft only) or the changes of PATCH, not both."""

    @validates_schema
    def _not_empty(self, data: dict[str, Any], **_: Any) -> None:
        if not data:
            raise ValidationError(
                "Give draft fields (to, cc, bcc, subject, textBody, htmlBody, attachments) or changes"
            )
        if set(data) & set(DRAFT_FIELDS) and set(data) - set(DRAFT_FIELDS):
            raise ValidationError("Give either draft fields or isRead/isFlagged/isAnswered/keywords/folderId")


class SendAcceptedOut(Schema):
    """202: the outbox item that will send the message."""

    outboxId = UUID()
    status = String(metadata={"description": "queued | scheduled (a replay may show a later status)"})
    sendAt = Integer(metadata={"description": "Epoch ms: not before the undo window (SEND_UNDO_SECONDS) ends"})


class OutboxErrorOut(Schema):
    """Why the item failed or is being retried (kind, e.g. Rejected, TemporaryFailure, OutcomeUnknown)."""

    kind = String()
    message = String()


class OutboxItemOut(Schema):
    """An outbox item; ``delivery`` is seed 002's ``DeliveryResult.to_dict()`` of the last attempt."""

    id = UUID()
    accountId = UUID()
    status = String(metadata={"description": " | ".join(OUTBOX_STATUSES)})
    attempts = Integer()
    sendAt = Integer()
    nextAttemptAt = Integer(allow_none=True)
    messageId = String(metadata={"description": "RFC 5322 Message-ID, fixed when the item was created"})
    subject = String()
    recipients = List(String(), metadata={"description": "Envelope recipients (To, Cc and Bcc)"})
    delivery = Dict(allow_none=True)
    error = Nested(OutboxErrorOut, allow_none=True)
    draftId = UUID(allow_none=True)
    sentCopyId = UUID(allow_none=True)
    createdAt = Integer()
    updatedAt = Integer()
    finishedAt = Integer(allow_none=True)


class OutboxListItemOut(OutboxItemOut):
    """An item of the outbox list (the same fields)."""


class OutboxListOut(Schema):
    """``{"items": [...], "pagination": {...}}``, newest first."""

    items = List(Nested(OutboxListItemOut))
    pagination = Nested(PaginationOut)


class OutboxQuery(PaginationQuery):
    """``accountId`` and ``status`` filters, ``limit``/``offset``."""

    accountId = UUID(load_default=None, allow_none=True)
    status = Text(load_default=None, allow_none=True, validate=OneOf(OUTBOX_STATUSES))


def _recipients(values: list[dict[str, Any]] | None) -> tuple[Recipient, ...] | None:
    if values is None:
        return None
    return tuple(Recipient(str(v["email"]), v.get("name") or None) for v in values)


def _attachments(values: list[dict[str, Any]] | None) -> tuple[NewAttachment, ...]:
    found = []
    for index, value in enumerate(values or []):
        try:
            content = base64.b64decode(value["data"], validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInput(
                f"attachments[{index}].data: not valid base64", details={"attachments": [f"{index}: not valid base64"]}
            ) from None
        found.append(NewAttachment(value["filename"].strip(), value["contentType"].lower(), content))
    return tuple(found)


def compose_fields(data: dict[str, Any]) -> ComposeFields:
    """The loaded body as :class:`ComposeFields`.  Raises :class:`InvalidInput` for base64 that does not decode."""
    return ComposeFields(
        to=_recipients(data.get("to")),
        cc=_recipients(data.get("cc")),
        bcc=_recipients(data.get("bcc")),
        subject=data.get("subject"),
        text_body=data.get("textBody"),
        html_body=data.get("htmlBody"),
        in_reply_to=data.get("inReplyTo"),
        forward_of=data.get("forwardOf"),
        forward_mode=data.get("forwardMode") or "attachment",
        attachments=_attachments(data.get("attachments")),
    )
