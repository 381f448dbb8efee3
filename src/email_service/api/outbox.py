"""The outbox (issue 9): list, read and cancel (undo send) the caller's outgoing messages."""

from __future__ import annotations

import uuid
from typing import Any

from apiflask import APIBlueprint

from email_service.models import OutboxItem
from email_service.services import outbox

from . import examples
from .auth import current_principal
from .common import AUTH_ERRORS, pagination
from .compose_schemas import OutboxItemOut, OutboxListOut, OutboxQuery
from .context import service_context
from .gate import guard

bp = guard(
    APIBlueprint(
        "outbox", __name__, tag={"name": "Outbox", "description": "Outgoing messages: status, retries, undo send"}
    )
)
STATUS_TEXT = (
    "`queued` (waiting for its undo window or its next attempt), `scheduled` (waiting for `sendAt`), `sending`, "
    "`sent`, `partially_sent` (some recipients refused: `delivery.recipientFailures`), `failed` (`error.kind`: "
    "Rejected / Failed with the server's reason, DeadlineExceeded after retries, OutcomeUnknown when a worker "
    "died during the SMTP transaction -- never resent automatically), `cancelled`."
)


def item_view(item: OutboxItem) -> dict[str, Any]:
    """An item as :class:`OutboxItemOut`."""
    waiting = item.status in ("queued", "scheduled")
    return {
        "id": item.id,
        "accountId": item.account_id,
        "status": item.status,
        "attempts": item.attempts,
        "sendAt": item.send_at,
        "nextAttemptAt": item.next_attempt_at if waiting else None,
        "messageId": item.rfc_message_id,
        "subject": item.subject,
        "recipients": list(item.rcpt_tos),
        "delivery": item.delivery,
        "error": {"kind": item.error_kind, "message": item.error or ""} if item.error_kind else None,
        "draftId": item.draft_id,
        "sentCopyId": item.sent_copy_id,
        "createdAt": item.created_at,
        "updatedAt": item.updated_at,
        "finishedAt": item.finished_at,
    }


@bp.get("/outbox")
@bp.input(OutboxQuery, location="query")
@bp.output(OutboxListOut, example=examples.OUTBOX_LIST)
@bp.doc(
    summary="List outgoing messages",
    description="The caller's outbox items (an admin's: the tenant's), newest first, optionally of one account "
    "(`accountId`) and one status: " + STATUS_TEXT,
    operation_id="listOutbox",
    responses=AUTH_ERRORS,
)
def list_outbox(query_data: dict[str, Any]) -> dict[str, Any]:
    page = outbox.list_items(service_context(), principal=current_principal(), **_snake(query_data))
    return {"items": [item_view(item) for item in page.items], "pagination": pagination(page)}


def _snake(query: dict[str, Any]) -> dict[str, Any]:
    return {
        "account_id": query.get("accountId"),
        "status": query.get("status"),
        "limit": query["limit"],
        "offset": query["offset"],
    }


@bp.get("/outbox/<uuid:outbox_id>")
@bp.output(OutboxItemOut, example=examples.OUTBOX_ITEM)
@bp.doc(
    summary="Get one outgoing message",
    description="Status, attempts, next attempt and seed 002's `DeliveryResult` of the last attempt (`delivery`: "
    "smtpCode, recipientFailures, messageId, sentAt). " + STATUS_TEXT,
    operation_id="getOutboxItem",
    responses=AUTH_ERRORS,
)
def get_outbox_item(outbox_id: uuid.UUID) -> dict[str, Any]:
    return item_view(outbox.get_item(service_context(), principal=current_principal(), outbox_id=outbox_id))


@bp.delete("/outbox/<uuid:outbox_id>")
@bp.output(OutboxItemOut, example=examples.OUTBOX_CANCELLED)
@bp.doc(
    summary="Cancel a send (undo send)",
    description="Cancels an item that is still `queued` or `scheduled` (every send waits `SEND_UNDO_SECONDS`); a "
    "draft it was sent from stays a draft. 409 once it is sending or finished.",
    operation_id="cancelOutboxItem",
    responses=[*AUTH_ERRORS, 409],
)
def cancel_outbox_item(outbox_id: uuid.UUID) -> dict[str, Any]:
    return item_view(outbox.cancel(service_context(), principal=current_principal(), outbox_id=outbox_id))
