"""Compose and send (issue 9): create a draft, send a draft, send a message given inline.

Drafts are stored on the server (APPEND to Drafts through the write-back); sends go through the outbox
(:mod:`email_service.api.outbox`) and wait ``SEND_UNDO_SECONDS`` so that they can be cancelled.  An
``Idempotency-Key`` header makes a retried send request safe.
"""

from __future__ import annotations

import uuid
from typing import Any

from apiflask import APIBlueprint
from flask import request

from email_service.models import OutboxItem
from email_service.services import idempotency, outbox
from email_service.services.outbox import SendRequest
from email_service.sync import drafts

from . import examples
from .auth import current_principal
from .common import AUTH_ERRORS
from .compose_schemas import DraftCreateIn, SendAcceptedOut, SendDraftIn, SendInlineIn, compose_fields
from .context import service_context
from .gate import guard
from .mailbox import message_view
from .mailbox_schemas import MessageOut

#: Largest JSON body of these endpoints: inline base64 attachments of up to 100 MB in all (seed 002) plus 1 MB.
MAX_BODY = (100 * 1024 * 1024 * 4) // 3 + 1024 * 1024
IDEMPOTENCY = (
    " An `Idempotency-Key` header (1-255 printable ASCII characters) makes a retry safe: the same key with the same "
    "body within 24 hours answers with the same outbox item (nothing is sent twice); with another body it is a 409."
)


def _larger_bodies() -> None:
    """Inline attachments may make these bodies larger than the app's 1 MB JSON limit."""
    request.max_content_length = MAX_BODY


_bp = APIBlueprint(
    "compose", __name__, tag={"name": "Compose", "description": "Drafts, sending, outbox (undo send, retries)"}
)
_bp.before_request(_larger_bodies)
bp = guard(_bp)


def _accepted(item: OutboxItem) -> dict[str, Any]:
    return {"outboxId": item.id, "status": item.status, "sendAt": item.send_at}


def _request(route: str, data: dict[str, Any]) -> SendRequest:
    key = idempotency.check_key(request.headers.get("Idempotency-Key"))
    body = request.get_json(silent=True)
    return SendRequest(
        send_at=data.get("sendAt"), idempotency_key=key, body_sha256=idempotency.request_hash(route, body)
    )


@bp.post("/accounts/<uuid:account_id>/messages")
@bp.input(DraftCreateIn, location="json", example=examples.DRAFT_CREATE)
@bp.output(MessageOut, status_code=201, example=examples.MESSAGE_UPDATED)
@bp.doc(
    summary="Create a draft",
    description="Creates a draft in the account's Drafts folder (`isDraft: true`) and stores it on the server "
    "(APPEND to Drafts in the background; a Drafts folder with the \\Drafts special use is created when the account "
    "has none). `inReplyTo` answers a message of the account (In-Reply-To and References, `Re:` subject, its sender "
    "as default recipient); `forwardOf` forwards one (`Fwd:`), as a message/rfc822 attachment or inline with its "
    "attachments (`forwardMode`). Edit it with `PUT /messages/{message_id}`, send it with `POST /compose/send`. "
    "Seed 002/004 limits are 400s naming the field; 409 for a POP3 account.",
    operation_id="createDraft",
    responses=[*AUTH_ERRORS, 409, 413, 415],
)
def create_draft(account_id: uuid.UUID, json_data: dict[str, Any]) -> dict[str, Any]:
    message_id = drafts.create_draft(
        service_context(), principal=current_principal(), account_id=account_id, fields=compose_fields(json_data)
    )
    return message_view(message_id)


@bp.post("/compose/send")
@bp.input(SendDraftIn, location="json", example=examples.SEND_DRAFT)
@bp.output(SendAcceptedOut, status_code=202, example=examples.SEND_ACCEPTED)
@bp.doc(
    summary="Send a draft",
    description="Queues the draft in the outbox (202). It is sent after `SEND_UNDO_SECONDS` (default 5) or at "
    "`sendAt`; `DELETE /outbox/{outbox_id}` cancels it until then. After success the message is appended to Sent "
    "(unless the account's `saveSentCopy` is false), the draft is removed and the answered message gets "
    "\\Answered. 409 when the account has no SMTP settings (the message names them)." + IDEMPOTENCY,
    operation_id="sendDraft",
    responses=[*AUTH_ERRORS, 409, 415],
)
def send_draft(json_data: dict[str, Any]) -> dict[str, Any]:
    accepted = outbox.submit_draft(
        service_context(),
        principal=current_principal(),
        message_id=json_data["messageId"],
        request=_request("compose/send", json_data),
    )
    return _accepted(accepted.item)


@bp.post("/accounts/<uuid:account_id>/send")
@bp.input(SendInlineIn, location="json", example=examples.SEND_INLINE)
@bp.output(SendAcceptedOut, status_code=202, example=examples.SEND_ACCEPTED)
@bp.doc(
    summary="Send a message given inline",
    description="The fields of a draft (recipients, subject, bodies, attachments, inReplyTo, forwardOf), sent "
    "through the outbox like `POST /compose/send` (no draft is kept). Bcc recipients are in the SMTP envelope "
    "only." + IDEMPOTENCY,
    operation_id="sendMessage",
    responses=[*AUTH_ERRORS, 409, 413, 415],
)
def send_inline(account_id: uuid.UUID, json_data: dict[str, Any]) -> dict[str, Any]:
    accepted = outbox.submit_inline(
        service_context(),
        principal=current_principal(),
        account_id=account_id,
        fields=compose_fields(json_data),
        request=_request(f"accounts/{account_id}/send", json_data),
    )
    return _accepted(accepted.item)
