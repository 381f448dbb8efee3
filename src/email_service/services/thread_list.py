"""Reading conversations: an account's threads newest activity first, and one thread's messages (issue 11).

Threads are made by :mod:`email_service.services.threads` (``email_messages.thread_id``); here they are only read.
Same isolation as the message list: the account (or the thread's account) must be visible to the caller.

The list is a walk, not a ``GROUP BY`` of the account: a thread's place is its newest message in the scope (the
account, or the folder of ``folderId``), its *head* -- the message whose ``id`` is the first of its thread in the
scope's ``(received_at DESC, id DESC)`` order.  :func:`list_threads` walks the scope's messages newest first on
``(scope, received_at, thread_id, id)`` and keeps the heads, one index seek each on ``(scope, thread_id,
received_at, id)`` (migration 0015); a page reads the few hundred entries down to its last thread, then the
messages of its own threads only.  Threads whose newest messages share a ``received_at`` come in ``thread_id``
order, descending, as the ``GROUP BY`` did.

With ``folderId`` the order is the thread's newest message *in the folder* (JMAP ``Email/query`` with
``collapseThreads``, RFC 8621 section 4.4.3): a walk of the folder's own index, bounded for a folder of any size,
where ordering by the newest message anywhere would walk the whole account to fill a page from a small folder.
The counts, participants, subject and latest message still cover every folder.

A ``cursor`` is the last head's ``(received_at, thread_id, id)``; the next page starts below it (keyset), so page
2,000 costs what page 1 does.  While no thread changes, a cursor walk visits every thread exactly once; a page never
holds a thread twice (one statement, one head per thread).  A thread that gains a message after it was shown moves
above the cursor and is not shown again on that walk; one that loses its newest message, or merges with another
(a late parent: :mod:`~email_service.services.threads`), may be shown again further down.

``total`` is the number of threads, counted exactly up to :data:`THREAD_COUNT_CAP`; beyond, ``total_exact`` is
false and ``total`` a lower bound (an exact count reads an index entry per message of the scope on each request:
the cost this list was made to remove).
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Row, Select, and_, func, or_, select
from sqlalchemy.orm import Session, aliased

from email_service.errors import InvalidInput, NotFound
from email_service.models import EmailFolder, EmailMessage
from email_service.security.tokens import Principal
from email_service.services.accounts import load_account
from email_service.services.changes import state_string
from email_service.services.context import ServiceContext
from email_service.services.message_list import PAGE_COLUMNS, row_uuid

MAX_PARTICIPANTS = 10
#: Threads counted exactly for ``total``; more than this: ``total_exact`` is false.
THREAD_COUNT_CAP = 500
#: The messages a head is compared with (its thread's, in the scope).
_NEWER = aliased(EmailMessage, name="newer")


@dataclass(frozen=True)
class ThreadSummary:
    """One conversation: its first message's subject, the distinct senders in order of appearance
    (``[{"name", "email"}]``, at most :data:`MAX_PARTICIPANTS`), counts over all its messages (every folder),
    and its latest message (a row of :data:`~email_service.services.message_list.PAGE_COLUMNS`)."""

    thread_id: uuid.UUID
    subject: str
    participants: list[dict[str, str]]
    message_count: int
    unread_count: int
    has_attachments: bool
    last_activity_at: int
    latest: Row[Any]


@dataclass(frozen=True)
class ThreadPage:
    """A page of threads: ``total`` threads in the scope (exact when ``total_exact``, else a lower bound),
    ``next_cursor`` (``None`` when the page is not full), and ``state``: the account's change-log state read in the
    same transaction before the rows (``GET .../changes?since=``)."""

    items: list[ThreadSummary]
    total: int
    total_exact: bool
    limit: int
    offset: int
    next_cursor: str | None
    state: str = ""


@dataclass(frozen=True)
class ThreadCursor:
    """Where a thread page ended: its last head's ``received_at`` (epoch ms), ``thread_id`` and message ``id``."""

    received_at: int
    thread_id: uuid.UUID
    id: uuid.UUID

    def encode(self) -> str:
        """The opaque ``nextCursor`` string (URL-safe base64 of JSON, tagged ``"t"``)."""
        data = json.dumps(["t", self.received_at, self.thread_id.hex, self.id.hex], separators=(",", ":"))
        return base64.urlsafe_b64encode(data.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> ThreadCursor:
        """Parse a ``cursor`` parameter.  Raises :class:`InvalidInput` when it is not a thread cursor this service
        made (a message list's cursor included)."""
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            tag, received_at, thread_id, ident = json.loads(raw)
            cursor = cls(received_at, uuid.UUID(hex=str(thread_id)), uuid.UUID(hex=str(ident)))
        except (binascii.Error, ValueError, TypeError, UnicodeDecodeError) as exc:
            raise InvalidInput("cursor is not valid") from exc
        if tag != "t" or type(received_at) is not int:
            raise InvalidInput("cursor is not valid")
        return cursor


def list_threads(
    ctx: ServiceContext,
    *,
    principal: Principal,
    account_id: uuid.UUID,
    folder_id: uuid.UUID | None = None,
    limit: int = 50,
    offset: int = 0,
    cursor: str | None = None,
) -> ThreadPage:
    """Threads of an account having a message (in ``folder_id`` when given), newest activity first (see the module
    docstring for the order, the cursor and the total), after ``cursor`` or ``offset`` (which costs the threads it
    skips).

    Raises:
        NotFound: unknown account, or a folder that is not this account's.
        InvalidInput: a cursor that is not valid, or given together with an offset.
    """
    after = ThreadCursor.decode(cursor) if cursor else None
    if after is not None and offset:
        raise InvalidInput("cursor and offset cannot be combined")
    with ctx.db.tenant_session(principal.tenant_id) as session:
        state = state_string(load_account(session, principal, account_id).change_seq)  # read before the rows
        if folder_id is not None:
            folder = session.get(EmailFolder, folder_id)
            if folder is None or folder.account_id != account_id:
                raise NotFound("Folder not found")
        scope = _Scope(account_id, folder_id)
        heads = session.execute(scope.heads(after).limit(limit).offset(offset)).all()
        total, exact = scope.count(session)
        items = _summaries(session, principal, account_id, [head.thread_id for head in heads])
    next_cursor = None
    if len(heads) == limit:
        last = heads[-1]
        next_cursor = ThreadCursor(last.received_at, last.thread_id, last.id).encode()
    if len(heads) + offset > total:  # the page itself reaches further than the capped count
        total = len(heads) + offset
    return ThreadPage(items, total, exact, limit, offset, next_cursor, state)


@dataclass(frozen=True)
class _Scope:
    """The messages a thread list walks: an account's, or one folder's of it."""

    account_id: uuid.UUID
    folder_id: uuid.UUID | None

    def column(self, table: Any) -> ColumnElement[bool]:
        """``table`` (the messages or an alias) restricted to the scope."""
        if self.folder_id is not None:
            return table.folder_id == self.folder_id  # type: ignore[no-any-return]
        return table.account_id == self.account_id  # type: ignore[no-any-return]

    def heads(self, after: ThreadCursor | None) -> Select[Any]:
        """The scope's thread heads newest first, below ``after``: rows ``(received_at, thread_id, id)``."""
        message = EmailMessage.__table__.c
        # a head: no message of its thread in the scope comes before it in the walk's order (``received_at >=`` is
        # the range of the seek on ``(scope, thread_id, received_at, id)``).  As ``NOT EXISTS`` PostgreSQL plans it
        # as an anti-join it can estimate (a scalar subquery made it expect 500 heads of 100,000 messages and sort
        # the account for an offset page).
        newer = (
            select(_NEWER.id)  # not ``SELECT *``: SQLite would read the table row, not only the index
            .where(
                self.column(_NEWER),
                _NEWER.thread_id == message.thread_id,
                _NEWER.received_at >= message.received_at,
                or_(_NEWER.received_at > message.received_at, _NEWER.id > message.id),
            )
            .exists()
        )
        conditions = [
            self.column(message),
            message.thread_id.is_not(None),
            message.received_at.is_not(None),
            ~newer,
        ]
        if after is not None:
            # ``(received_at, thread_id, id) < cursor``; its first half is the range on the walk's index
            conditions += [
                message.received_at <= after.received_at,
                or_(
                    message.received_at < after.received_at,
                    message.thread_id < after.thread_id,
                    and_(message.thread_id == after.thread_id, message.id < after.id),
                ),
            ]
        return (
            select(message.received_at, message.thread_id, message.id)
            .where(and_(*conditions))
            .order_by(message.received_at.desc(), message.thread_id.desc(), message.id.desc())
        )

    def count(self, session: Session) -> tuple[int, bool]:
        """``(threads, exact)``: the scope's distinct threads, counted up to :data:`THREAD_COUNT_CAP` + 1 on the
        ``(scope, thread_id, ...)`` index."""
        message = EmailMessage.__table__.c
        distinct = (
            select(message.thread_id)
            .where(self.column(message), message.thread_id.is_not(None))
            .distinct()
            .limit(THREAD_COUNT_CAP + 1)
            .subquery()
        )
        found = int(session.execute(select(func.count()).select_from(distinct)).scalar_one())
        return (found, True) if found <= THREAD_COUNT_CAP else (THREAD_COUNT_CAP, False)


def _summaries(
    session: Session, principal: Principal, account_id: uuid.UUID, thread_ids: list[uuid.UUID]
) -> list[ThreadSummary]:
    """The summaries of ``thread_ids`` in their order: counts and senders from the narrow columns of their
    messages (every folder, oldest first on the ``(account_id, thread_id, received_at, id)`` index), then each
    thread's latest message as a summary row."""
    if not thread_ids:
        return []
    rows: list[Row[Any]] = session.execute(  # type: ignore[assignment]  # a Row of those columns
        select(
            EmailMessage.thread_id, EmailMessage.id, EmailMessage.subject, EmailMessage.from_name,
            EmailMessage.from_address, EmailMessage.is_read, EmailMessage.has_attachments,
        )
        .where(
            EmailMessage.tenant_id == principal.tenant_id,
            EmailMessage.account_id == account_id,
            EmailMessage.thread_id.in_(thread_ids),
        )
        .order_by(EmailMessage.thread_id, EmailMessage.received_at, EmailMessage.id)
    ).all()  # fmt: skip
    by_thread: dict[uuid.UUID, list[Row[Any]]] = {thread_id: [] for thread_id in thread_ids}
    for row in rows:
        by_thread[row.thread_id].append(row)
    latest_ids = [by_thread[thread_id][-1].id for thread_id in thread_ids]
    page = session.execute(select(*PAGE_COLUMNS).where(EmailMessage.id.in_(latest_ids))).all()
    latest = {row_uuid(row.id): row for row in page}
    return [_summary(thread_id, by_thread[thread_id], latest[by_thread[thread_id][-1].id]) for thread_id in thread_ids]


def _summary(thread_id: uuid.UUID, messages: list[Row[Any]], latest: Row[Any]) -> ThreadSummary:
    participants: list[dict[str, str]] = []
    seen: set[str] = set()
    for message in messages:
        key = (message.from_address or message.from_name or "").lower()
        if key and key not in seen and len(participants) < MAX_PARTICIPANTS:
            seen.add(key)
            participants.append({"name": message.from_name or "", "email": message.from_address or ""})
    return ThreadSummary(
        thread_id,
        messages[0].subject,
        participants,
        len(messages),
        sum(1 for message in messages if not message.is_read),
        any(message.has_attachments for message in messages),
        int(latest.received_at or 0),
        latest,
    )


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
