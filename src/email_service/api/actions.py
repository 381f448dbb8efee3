"""The write-back log of an account (issue 8): which changes are pending, applied, or failed and why."""

from __future__ import annotations

import uuid
from typing import Any

from apiflask import APIBlueprint

from email_service.models import PendingAction
from email_service.services import actions as service

from . import examples
from .auth import current_principal
from .change_schemas import ActionListOut, ActionListQuery
from .common import AUTH_ERRORS, pagination
from .context import service_context
from .gate import guard

bp = guard(
    APIBlueprint(
        "actions",
        __name__,
        tag={"name": "Write-back", "description": "Changes of an account waiting for, or written back to, the server"},
    )
)


def action_body(action: PendingAction) -> dict[str, Any]:
    """Serialise one action (:class:`ActionOut`)."""
    return {
        "id": action.id,
        "accountId": action.account_id,
        "seq": action.seq,
        "kind": action.kind,
        "state": action.state,
        "messageId": action.message_id,
        "folderId": action.folder_id,
        "targetFolderId": action.target_folder_id,
        "mailbox": action.mailbox,
        "targetMailbox": action.target_mailbox,
        "details": action.details,
        "attempts": action.attempts,
        "error": {"kind": action.error_kind, "message": action.error} if action.error else None,
        "createdAt": action.created_at,
        "updatedAt": action.updated_at,
        "appliedAt": action.applied_at,
    }


@bp.get("/accounts/<uuid:account_id>/actions")
@bp.input(ActionListQuery, location="query")
@bp.output(ActionListOut, example=examples.ACTION_LIST)
@bp.doc(
    summary="Changes of the account written (or to be written) back to the server",
    operation_id="listActions",
    description=(
        "Newest first. state=pending: accepted, not yet confirmed by the server (error shows why a retry waits); "
        "applied: done; failed: the server refused (error has its words) and the next sync shows the truth."
    ),
    responses=AUTH_ERRORS,
)
def list_actions(account_id: uuid.UUID, query_data: dict[str, Any]) -> dict[str, Any]:
    page = service.list_actions(
        service_context(),
        principal=current_principal(),
        account_id=account_id,
        state=query_data["state"],
        limit=query_data["limit"],
        offset=query_data["offset"],
    )
    return {
        "actions": [action_body(a) for a in page.items],
        "pagination": pagination(page),
    }
