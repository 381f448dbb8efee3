"""Sync and connection-test endpoints of an account (issue 2 sections 5-6)."""

from __future__ import annotations

import uuid
from typing import Any

from apiflask import APIBlueprint
from flask import url_for

from email_service.services import connection_test, sync_runs

from . import examples
from .auth import current_principal
from .common import AUTH_ERRORS
from .context import service_context
from .gate import guard
from .mailbox_schemas import ConnectionTestOut, SyncStartedOut, SyncStatusOut

bp = guard(
    APIBlueprint(
        "sync",
        __name__,
        tag={"name": "Sync", "description": "Mirroring an account's mailbox and testing its login"},
    )
)


@bp.post("/accounts/<uuid:account_id>/sync")
@bp.output(
    SyncStartedOut,
    status_code=202,
    example=examples.SYNC_STARTED,
    links={"getSyncStatus": {"operationId": "getSyncStatus", "parameters": {"account_id": "$request.path.account_id"}}},
)
@bp.doc(
    summary="Start mirroring the account now (returns the running sync if one is active)",
    description="Queues a sync run and answers 202 with its id and a `Location` of the status; while a run is "
    "queued or running, that run is returned with `created: false`. 409 for a disabled account.",
    operation_id="startSync",
    responses=[*AUTH_ERRORS, 409],
)
def start_sync(account_id: uuid.UUID) -> Any:
    run, created = sync_runs.request_sync(service_context(), principal=current_principal(), account_id=account_id)
    body = {"syncId": run.id, "accountId": account_id, "state": run.state, "created": created}
    return body, 202, {"Location": url_for(".sync_status", account_id=account_id)}


@bp.get("/accounts/<uuid:account_id>/sync")
@bp.output(SyncStatusOut, example=examples.SYNC_STATUS)
@bp.doc(
    summary="State, counts and last error of the account's latest sync",
    description="`state` is null before the first sync; `lastError` names the error kind (e.g. "
    "`AuthenticationFailed`) and the server's message.",
    operation_id="getSyncStatus",
    responses=AUTH_ERRORS,
)
def sync_status(account_id: uuid.UUID) -> dict[str, Any]:
    status = sync_runs.sync_status(service_context(), principal=current_principal(), account_id=account_id)
    run = status.run
    body: dict[str, Any] = {
        "accountId": status.account.id,
        "isSyncing": status.account.is_syncing,
        "lastSyncAt": status.account.last_sync_at,
        "syncId": None,
        "state": None,
        "trigger": None,
        "requestedAt": None,
        "startedAt": None,
        "finishedAt": None,
        "counts": None,
        "lastError": None,
    }
    if run is not None:
        body.update(
            syncId=run.id,
            state=run.state,
            trigger=run.trigger,
            requestedAt=run.created_at,
            startedAt=run.started_at,
            finishedAt=run.finished_at,
            counts={
                "foldersSynced": run.folders_synced,
                "messagesAdded": run.messages_added,
                "messagesUpdated": run.messages_updated,
                "messagesRemoved": run.messages_removed,
            },
            lastError={"kind": run.error_kind, "message": run.error} if run.error else None,
        )
    return body


@bp.post("/accounts/<uuid:account_id>/test")
@bp.output(ConnectionTestOut, example=examples.CONNECTION_TEST)
@bp.doc(
    summary="Log in to the account's server and report folder count or the server's error",
    description="Connects with the stored credentials (nothing is changed) and answers 200 either way: "
    "`success` with the folder count, or the error kind and the server's message.",
    operation_id="testConnection",
    responses=AUTH_ERRORS,
)
def test_connection(account_id: uuid.UUID) -> dict[str, Any]:
    report = connection_test.test_account_connection(
        service_context(), principal=current_principal(), account_id=account_id
    )
    return {
        "success": report.success,
        "protocol": report.protocol,
        "folderCount": report.folder_count,
        "messageCount": report.message_count,
        "error": report.error,
        "errorKind": report.error_kind,
        "durationMs": report.duration_ms,
    }
