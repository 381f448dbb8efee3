"""Reading conversations: an account's threads newest activity first, and one thread's messages (issue 11).

Threads are made by :mod:`email_service.services.threads` (``email_messages.thread_id``); here they are only read.
Same isolation as the message list: the account (or the thread's account) must be visible to the caller.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from email_service.errors import NotFound
from email_service.models import EmailFolder, EmailMessage
from email_service.security.tokens import Principal
from email_service.services.accounts import load_account
from email_service.services.context import ServiceContext

MAX_PARTICIPANTS = 10


@dataclass(frozen=True)
class ThreadSummary:
    """One conversation: its first message's subject, the distinct senders in order of appearance
    (``[{"name", "email"}]``, at most :data:`MAX_PARTICIPANTS`), counts over all its messages (every folder),
    and its latest message."""

    thread_id: uuid.UUID
    subject: str
    participants: list[dict[str, str]]
    message_count: int
    unread_count: int
    has_attachments: bool
    last_activity_at: int
    latest: EmailMessage


@dataclass(frozen=True)
class ThreadPage:
    items: list[ThreadSummary]
    total: int
    limit: int
    offset: int


def list_threads(
    ctx: ServiceContext,
    *,
    principal: Principal,
    account_id: uuid.UUID,
    folder_id: uuid.UUID | None = None,
    limit: int = 50,
    offset: int = 0,
) -> ThreadPage:
    """Threads of an account having a message (in ``folder_id`` when given), newest activity (latest
    ``receivedAt``) first.

    Raises:
        NotFound: unknown account, or a folder that is not this account's.
    """
    with ctx.db.tenant_session(principal.tenant_id) as session:
        load_account(session, principal, account_id)
        conditions = [
            EmailMessage.tenant_id == principal.tenant_id,
            EmailMessage.account_id == account_id,
            EmailMessage.thread_id.is_not(None),
        ]
        if folder_id is not None:
            folder = session.get(EmailFolder, folder_id)
            if folder is None or folder.account_id != account_id:
                raise NotFound("Folder not found")
            in_folder = select(EmailMessage.thread_id).where(
                EmailMessage.account_id == account_id, EmailMessage.folder_id == folder_id
            )
            conditions.append(EmailMessage.thread_id.in_(in_folder))
        last = func.max(EmailMessage.received_at)
        rows = session.execute(
            select(
                EmailMessage.thread_id,
                func.count(),
                func.sum(case((EmailMessage.is_read.is_(False), 1), else_=0)),
                func.max(case((EmailMessage.has_attachments.is_(True), 1), else_=0)),
                last,
            )
            .where(*conditions)
            .group_by(EmailMessage.thread_id)
            .order_by(last.desc(), EmailMessage.thread_id.desc())
            .limit(limit)
            .offset(offset)
        ).all()
        total = session.execute(
            select(func.count(func.distinct(EmailMessage.thread_id))).where(*conditions)
        ).scalar_one()
        messages = _messages_of(session, account_id, [row[0] for row in rows])
        items = [
            _summary(row[0], messages[row[0]], row[1], int(row[2] or 0), bool(row[3]), int(row[4] or 0)) for row in rows
        ]
    return ThreadPage(items, int(total), limit, offset)


def _messages_of(
    session: Session, account_id: uuid.UUID, thread_ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[EmailMessage]]:
    found: dict[uuid.UUID, list[EmailMessage]] = {thread_id: [] for thread_id in thread_ids}
    if thread_ids:
        for message in session.execute(
            select(EmailMessage)
            .where(EmailMessage.account_id == account_id, EmailMessage.thread_id.in_(thread_ids))
            .order_by(EmailMessage.received_at, EmailMessage.id)
        ).scalars():
            found[message.thread_id].append(message)  # type: ignore[index]
    return found


def _summary(
    thread_id: uuid.UUID, messages: list[EmailMessage], count: int, unread: int, attachments: bool, last: int
) -> ThreadSummary:
    participants: list[dict[str, str]] = []
    seen: set[str] = set()
    for message in messages:
        key = (message.from_address or message.from_name or "").lower()
        if key and key not in seen and len(participants) < MAX_PARTICIPANTS:
            seen.add(key)
            participants.append({"name": message.from_name or "", "email": message.from_address or ""})
    return ThreadSummary(thread_id, messages[0].subject, participants, count, unread, attachments, last, messages[-1])


def get_thread(ctx: ServiceContext, *, principal: Principal, thread_id: uuid.UUID) -> list[EmailMessage]:
    """The messages of a thread, oldest first (every folder of its account).

    Raises:
        NotFound: no such thread in the caller's tenant (or its account is deleted).
        Forbidden: another user's thread and the caller is not an admin.
    """
    with ctx.db.tenant_session(principal.tenant_id) as session:
        messages = list(
            session.execute(
                select(EmailMessage)
                .where(EmailMessage.tenant_id == principal.tenant_id, EmailMessage.thread_id == thread_id)
                .order_by(EmailMessage.received_at, EmailMessage.id)
            ).scalars()
        )
        if not messages:
            raise NotFound("Thread not found")
        load_account(session, principal, messages[0].account_id)
        return messages
