"""The pending-action log of an account: local changes waiting to be written back (DESIGN.md section 7).

A use case that changes mail (flags, move, delete, folders) updates the local rows and calls
:func:`record_actions` in the SAME transaction, then :func:`request_syncback` after the commit; the
``syncback_account`` job (:mod:`email_service.sync.syncback`) applies the actions on the server in ``seq`` order.

Order: :func:`lock_account` takes the account row first in every such transaction, and ``seq`` comes from the
account's counter under that lock, so an account's actions are numbered in commit order (the job never sees
action ``n + 1`` committed before action ``n``) and concurrent requests for one account never deadlock.

Crash safety: a pending row outlives the process.  ``next_attempt_at`` is when the scheduler queues the account's
write-back again if the row is still pending then (:func:`accounts_with_pending`); the embedded start-up queues
every account that has pending rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from email_service.errors import InvalidInput
from email_service.models import ACTION_STATES, EmailAccount, PendingAction, Tenant, now_ms
from email_service.security.tokens import Principal
from email_service.services.accounts import Page, load_account
from email_service.services.context import ServiceContext
from email_service.services.jobs import JsonScalar

#: A pending action still not applied this long after it was accepted is queued again by the scheduler (ms).
OVERDUE_AFTER_MS = 60_000
#: ``IN (...)`` lists are cut to this many ids (well under SQLite's bound-parameter limit).
IN_CHUNK = 500


@dataclass(frozen=True)
class NewAction:
    """One action to record (see :class:`email_service.models.PendingAction` for the fields)."""

    kind: str
    message_id: uuid.UUID | None = None
    folder_id: uuid.UUID | None = None
    mailbox: str | None = None
    uidvalidity: int | None = None
    uid: int | None = None
    target_folder_id: uuid.UUID | None = None
    target_mailbox: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    base_modseq: int | None = None


def lock_account(session: Session, account_id: uuid.UUID) -> None:
    """Take the account row's lock for the rest of the transaction.  Call it first in every transaction that
    records actions or changes, before reading what it will change.

    PostgreSQL: ``SELECT ... FOR UPDATE`` of the account row.  SQLite: a no-op ``UPDATE`` of the row, which takes
    the database's write lock now: pysqlite runs SELECTs outside a transaction until the first write, so without it
    a row read after this call could be changed by another writer before this transaction writes (a lost update).
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(EmailAccount.id).where(EmailAccount.id == account_id).with_for_update())
    else:
        session.execute(
            update(EmailAccount)
            .where(EmailAccount.id == account_id)
            .values(action_seq=EmailAccount.action_seq, updated_at=EmailAccount.updated_at)  # no onupdate either
        )


def record_actions(
    session: Session, *, tenant_id: uuid.UUID, account_id: uuid.UUID, actions: Sequence[NewAction]
) -> None:
    """Append ``actions`` to the account's log, in the given order, in the caller's transaction."""
    if not actions:
        return
    last = session.execute(
        update(EmailAccount)
        .where(EmailAccount.id == account_id)
        .values(action_seq=EmailAccount.action_seq + len(actions), updated_at=EmailAccount.updated_at)
        .returning(EmailAccount.action_seq)
    ).scalar_one()
    now = now_ms()
    first = int(last) - len(actions) + 1
    rows = [
        {
            "id": uuid.uuid4(),
            "tenant_id": tenant_id,
            "account_id": account_id,
            "seq": first + index,
            "kind": action.kind,
            "state": "pending",
            "message_id": action.message_id,
            "folder_id": action.folder_id,
            "mailbox": action.mailbox,
            "uidvalidity": action.uidvalidity,
            "uid": action.uid,
            "target_folder_id": action.target_folder_id,
            "target_mailbox": action.target_mailbox,
            "details": action.details,
            "base_modseq": action.base_modseq,
            "attempts": 0,
            "next_attempt_at": now + OVERDUE_AFTER_MS,
            "created_at": now,
            "updated_at": now,
        }
        for index, action in enumerate(actions)
    ]
    session.execute(insert(PendingAction), rows)


def syncback_payload(tenant_id: uuid.UUID, account_id: uuid.UUID) -> dict[str, JsonScalar]:
    """The payload of a ``syncback_account`` job: ``{"tenantId", "accountId"}`` as UUID strings."""
    return {"tenantId": str(tenant_id), "accountId": str(account_id)}


def request_syncback(
    ctx: ServiceContext, tenant_id: uuid.UUID, account_id: uuid.UUID, *, delay_seconds: float = 0.0
) -> None:
    """Queue the account's write-back job (call after the commit that recorded the actions)."""
    ctx.jobs.enqueue("syncback_account", syncback_payload(tenant_id, account_id), delay_seconds=delay_seconds)


def _chunks(ids: Iterable[uuid.UUID]) -> Iterable[list[uuid.UUID]]:
    ordered = list(dict.fromkeys(ids))
    for start in range(0, len(ordered), IN_CHUNK):
        yield ordered[start : start + IN_CHUNK]


def pending_message_ids(session: Session, message_ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
    """Which of ``message_ids`` have an action not yet applied (``pendingChanges`` of the API)."""
    found: set[uuid.UUID] = set()
    for chunk in _chunks(message_ids):
        rows = session.execute(
            select(PendingAction.message_id).where(
                PendingAction.message_id.in_(chunk), PendingAction.state == "pending"
            )
        ).scalars()
        found.update(row for row in rows if row is not None)
    return found


def pending_folder_ids(session: Session, folder_ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
    """Which of ``folder_ids`` have a folder action (create, rename, delete) not yet applied."""
    found: set[uuid.UUID] = set()
    for chunk in _chunks(folder_ids):
        rows = session.execute(
            select(PendingAction.folder_id).where(
                PendingAction.folder_id.in_(chunk),
                PendingAction.state == "pending",
                PendingAction.kind.in_(("folder_create", "folder_rename")),
            )
        ).scalars()
        found.update(row for row in rows if row is not None)
    return found


def pending_flag_deltas(
    session: Session, message_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, list[tuple[list[str], list[str]]]]:
    """``{message id: [(add, remove), ...]}``: the flag changes still pending for each message, in ``seq`` order."""
    deltas: dict[uuid.UUID, list[tuple[list[str], list[str]]]] = {}
    for chunk in _chunks(message_ids):
        rows = session.execute(
            select(PendingAction.message_id, PendingAction.details)
            .where(
                PendingAction.message_id.in_(chunk),
                PendingAction.state == "pending",
                PendingAction.kind == "flags",
            )
            .order_by(PendingAction.seq)
        ).all()
        for message_id, details in rows:
            if message_id is not None:
                deltas.setdefault(message_id, []).append(
                    (list(details.get("add", [])), list(details.get("remove", [])))
                )
    return deltas


def list_actions(
    ctx: ServiceContext, *, principal: Principal, account_id: uuid.UUID, state: str | None, limit: int, offset: int
) -> Page:
    """The account's actions, newest first, optionally only those in ``state`` (pending | applied | failed).

    Raises:
        NotFound / Forbidden: the account is not visible to the caller.
        InvalidInput: an unknown state.
    """
    if state is not None and state not in ACTION_STATES:
        raise InvalidInput("state must be pending, applied or failed")
    with ctx.db.tenant_session(principal.tenant_id) as session:
        load_account(session, principal, account_id)
        conditions = [PendingAction.tenant_id == principal.tenant_id, PendingAction.account_id == account_id]
        if state is not None:
            conditions.append(PendingAction.state == state)
        total = session.execute(select(func.count()).select_from(PendingAction).where(*conditions)).scalar_one()
        rows = session.execute(
            select(PendingAction).where(*conditions).order_by(PendingAction.seq.desc()).limit(limit).offset(offset)
        ).scalars()
        return Page(items=list(rows), total=int(total), limit=limit, offset=offset)


def has_pending(ctx: ServiceContext, tenant_id: uuid.UUID, account_id: uuid.UUID) -> bool:
    """True when the account has actions waiting for write-back."""
    with ctx.db.tenant_session(tenant_id) as session:
        found = session.execute(
            select(PendingAction.id)
            .where(PendingAction.account_id == account_id, PendingAction.state == "pending")
            .limit(1)
        ).first()
    return found is not None


def accounts_with_pending(
    ctx: ServiceContext, *, due_before: int | None = None, tenant_ids: Iterable[uuid.UUID] | None = None
) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """``(tenant_id, account_id)`` of live accounts with pending actions (only those whose ``next_attempt_at`` is
    at or before ``due_before`` epoch ms, when given).  Walks the tenant registry, each tenant under its own RLS
    context, like the sync scheduler."""
    if tenant_ids is None:
        with ctx.db.system_session() as session:
            tenant_ids = list(session.execute(select(Tenant.tenant_id)).scalars())
    found: list[tuple[uuid.UUID, uuid.UUID]] = []
    for tenant_id in tenant_ids:
        with ctx.db.tenant_session(tenant_id) as session:
            query = (
                select(PendingAction.account_id)
                .join(EmailAccount, EmailAccount.id == PendingAction.account_id)
                .where(
                    PendingAction.tenant_id == tenant_id,
                    PendingAction.state == "pending",
                    EmailAccount.deleted_at.is_(None),
                    EmailAccount.is_enabled.is_(True),
                )
                .distinct()
            )
            if due_before is not None:
                query = query.where(PendingAction.next_attempt_at <= due_before)
            found.extend((tenant_id, account_id) for account_id in session.execute(query).scalars())
    return found
