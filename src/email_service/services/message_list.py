"""The message list: filters, sorts, keyset cursors and totals from the folders' kept counts (issue 11).

Each sort has a key expression (NULLs folded, long subjects cut) and migration 0007 has an index
``(folder_id, <key>, id)`` matching it, so a page -- the first or the two-thousandth, reached by ``cursor`` -- is one
index range scan: ``WHERE folder_id = ? AND (key, id) < (?, ?) ORDER BY key DESC, id DESC LIMIT n``.  ``offset``
still works (and still costs the rows it skips).  The account-wide list (no ``folderId``) is index-backed for the
``receivedAt`` sort only.

Totals: no filter -> the folder's ``total_count`` (account-wide: the sum over its folders); only ``isRead`` -> the
folder's ``unread_count`` (or ``total - unread``); any other filter -> ``None`` (not counted: a count would read
every matching row on each request).

A page reads only the summary columns (:data:`SUMMARY_COLUMNS`) as plain rows, never whole ORM entities: building
50 entities with their JSON columns cost several times the SQL itself (issue 11, ``bench/README.md``).
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache, lru_cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    and_,
    bindparam,
    exists,
    func,
    literal_column,
    or_,
    select,
    type_coerce,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from email_service.db import fetch_ordered_rows
from email_service.errors import InvalidInput, NotFound
from email_service.models import EmailAccount, EmailFolder, EmailMessage, PendingAction, SearchDoc
from email_service.security.tokens import Principal
from email_service.services.accounts import VISIBILITY_COLUMNS, require_visible_account
from email_service.services.actions import pending_message_ids
from email_service.services.changes import state_string
from email_service.services.context import ServiceContext
from email_service.services.search_text import fold

SORT_FIELDS = ("receivedAt", "sentAt", "subject", "from", "size")
#: The columns of a message summary (a list item: headers, flags, preview; no bodies), as a page reads them.  A
#: row of them has the attribute names of :class:`EmailMessage` (``row.from_address``, ``row.is_read`` ...).
SUMMARY_COLUMNS = (
    EmailMessage.id, EmailMessage.account_id, EmailMessage.folder_id, EmailMessage.uid, EmailMessage.message_id,
    EmailMessage.thread_id, EmailMessage.subject, EmailMessage.from_name, EmailMessage.from_address,
    EmailMessage.to_addresses, EmailMessage.cc_addresses, EmailMessage.sent_at, EmailMessage.received_at,
    EmailMessage.preview, EmailMessage.flags, EmailMessage.is_read, EmailMessage.is_flagged, EmailMessage.is_answered,
    EmailMessage.is_draft, EmailMessage.has_attachments, EmailMessage.size, EmailMessage.last_error,
)  # fmt: skip


class stored_json_text(FunctionElement[str]):
    """A JSON column as the text it is stored as: the column itself on SQLite (a TEXT value), ``CAST(... AS TEXT)``
    on PostgreSQL (its ``json`` type keeps the text as written; psycopg would otherwise parse it on every row)."""

    type = String()
    inherit_cache = True


@compiles(stored_json_text)
def _stored_json_text(element: stored_json_text, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.clauses, **kw)


@compiles(stored_json_text, "postgresql")
def _stored_json_text_postgresql(element: stored_json_text, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST({compiler.process(element.clauses, **kw)} AS TEXT)"


def _page_column(column: Any) -> ColumnElement[Any]:
    if column.key in ("id", "account_id", "folder_id", "thread_id"):
        return type_coerce(column, String).label(column.key)
    if column.key in ("to_addresses", "cc_addresses", "flags"):
        return stored_json_text(column).label(column.key)
    return column  # type: ignore[no-any-return]


#: The page's select list: :data:`SUMMARY_COLUMNS` with the four ids taken as the driver gives them
#: (``type_coerce``: the SQL is unchanged, so are the plans), and the three JSON columns (``to``, ``cc``, ``flags``)
#: as their stored text (:class:`stored_json_text`).  On SQLite an id is the stored text of 32 hex digits, so no
#: ``uuid.UUID`` is made per id per row (the largest single cost of reading a page after the JSON columns); psycopg
#: gives ``uuid.UUID`` as before.  (A ``CAST`` of the ids in SQL made PostgreSQL price the OFFSET page as a parallel
#: sequential scan and sort.)  The JSON text is parsed once per distinct text by :mod:`email_service.api.summaries`
#: instead of once per row and column (~7 % of a list request's CPU on SQLite, ~12 % on PostgreSQL, stop 17).
#: :func:`row_uuid` turns an id into a ``uuid.UUID``.
PAGE_COLUMNS = tuple(_page_column(column) for column in SUMMARY_COLUMNS)


def row_uuid(value: str | uuid.UUID) -> uuid.UUID:
    """The ``uuid.UUID`` of a page row's id column (a ``uuid.UUID``, or its 32 hex digits / canonical text)."""
    return value if isinstance(value, uuid.UUID) else uuid.UUID(value)


SORT_ORDERS = ("asc", "desc")


def sort_key(sort_by: str) -> ColumnElement[Any]:
    """The SQL key of a sort (``SORT_FIELDS``), exactly the expression its migration-0007 index is built on.

    Under PostgreSQL's row-level security only the plain-column keys (``receivedAt``, ``size``) are index range
    conditions for a cursor; the others (COALESCE, substr) are used for the order only, so a deep cursor page on
    them reads the rows before it.
    """
    zero: ColumnElement[Any] = literal_column("0")
    empty: ColumnElement[Any] = literal_column("''")
    keys: dict[str, ColumnElement[Any]] = {
        # The plain column (always set by the store: INTERNALDATE, else Date, else now): PostgreSQL does not take a
        # COALESCE as an index condition under row-level security (not known leakproof), only for the order.
        "receivedAt": EmailMessage.__table__.c.received_at,
        "sentAt": func.coalesce(EmailMessage.sent_at, zero),
        "subject": func.substr(EmailMessage.subject, literal_column("1"), literal_column("100")),
        "from": func.coalesce(EmailMessage.from_address, empty),
        "size": EmailMessage.__table__.c.size,
    }
    return keys[sort_by]


@dataclass(frozen=True)
class ListFilters:
    """Filters of the list; ``None`` means "not filtered".  ``date_from`` / ``date_to`` are epoch ms bounds of
    ``receivedAt`` (inclusive / exclusive); ``from_`` / ``to`` match part of an address or name, case and accents
    ignored."""

    is_read: bool | None = None
    is_flagged: bool | None = None
    has_attachments: bool | None = None
    from_: str | None = None
    to: str | None = None
    date_from: int | None = None
    date_to: int | None = None

    def only_read_state(self) -> bool:
        """True when ``is_read`` is the only filter set (its total is a kept count)."""
        others = (self.is_flagged, self.has_attachments, self.from_, self.to, self.date_from, self.date_to)
        return all(value is None for value in others)

    def shape(self) -> tuple[Any, ...]:
        """What of the filters decides the SQL: the three flags' values (each a literal ``IS`` test, as the partial
        indexes need) and which of the other filters are set."""
        others = (self.from_, self.to, self.date_from, self.date_to)
        return (self.is_read, self.is_flagged, self.has_attachments, *(bool(value) if isinstance(value, str)
                else value is not None for value in others))  # fmt: skip

    def values(self) -> dict[str, Any]:
        """The bound values of the set filters, by the names :meth:`conditions_of` binds."""
        found: dict[str, Any] = {}
        for name, text in (("from_pattern", self.from_), ("to_pattern", self.to)):
            if text:
                found[name] = "%" + _escape_like(fold(text)) + "%"
        found.update(date_from=self.date_from, date_to=self.date_to)
        return found

    @staticmethod
    def conditions_of(shape: tuple[Any, ...]) -> list[ColumnElement[bool]]:
        """The SQL conditions of the filters of ``shape`` (:meth:`shape`), values bound by :meth:`values`."""
        is_read, is_flagged, has_attachments, from_, to, date_from, date_to = shape
        found: list[ColumnElement[bool]] = []
        for column, value in (
            (EmailMessage.is_read, is_read),
            (EmailMessage.is_flagged, is_flagged),
            (EmailMessage.has_attachments, has_attachments),
        ):
            if value is not None:
                found.append(column.is_(value))
        for column_name, name, wanted in (("from_text", "from_pattern", from_), ("to_text", "to_pattern", to)):
            if wanted:
                pattern = bindparam(name, type_=String())
                docs = select(SearchDoc.message_id).where(getattr(SearchDoc, column_name).like(pattern, escape="\\"))
                found.append(EmailMessage.id.in_(docs))
        if date_from:
            found.append(EmailMessage.received_at >= bindparam("date_from"))
        if date_to:
            found.append(EmailMessage.received_at < bindparam("date_to"))
        return found


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@dataclass(frozen=True)
class Cursor:
    """Where a page ended: the sort, its order and the last row's ``(key, id)``."""

    sort_by: str
    order: str
    key: Any
    id: uuid.UUID

    def encode(self) -> str:
        """The opaque ``nextCursor`` string (URL-safe base64 of JSON)."""
        data = json.dumps([self.sort_by, self.order, self.key, self.id.hex], separators=(",", ":"))
        return base64.urlsafe_b64encode(data.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        """Parse a ``cursor`` parameter.  Raises :class:`InvalidInput` when it is not one this service made."""
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            sort_by, order, key, ident = json.loads(raw)
            cursor = cls(str(sort_by), str(order), key, uuid.UUID(hex=str(ident)))
        except (binascii.Error, ValueError, TypeError, UnicodeDecodeError) as exc:
            raise InvalidInput("cursor is not valid") from exc
        key_type = str if cursor.sort_by in ("subject", "from") else int
        if cursor.sort_by not in SORT_FIELDS or cursor.order not in SORT_ORDERS or type(key) is not key_type:
            raise InvalidInput("cursor is not valid")
        return cursor


@dataclass(frozen=True)
class ListPage:
    """A page of messages: ``items`` are rows of :data:`PAGE_COLUMNS` then the sort key, read by position (ids as
    the driver gives them: :func:`row_uuid`; on SQLite the values JSON holds, see
    :func:`~email_service.db.fetch_ordered_rows`), ``total`` (``None`` when not known, see the module
    docstring), ``next_cursor`` (``None`` on the last page), the ids among ``items`` with changes not yet written
    back, and ``state``: the account's change-log state read in the same transaction before the rows (``GET
    .../changes?since=``)."""

    items: list[Sequence[Any]]
    total: int | None
    limit: int
    offset: int
    next_cursor: str | None
    pending: frozenset[uuid.UUID] = field(default_factory=frozenset)
    state: str = ""


def list_messages(
    ctx: ServiceContext,
    *,
    principal: Principal,
    account_id: uuid.UUID,
    folder_id: uuid.UUID | None = None,
    filters: ListFilters | None = None,
    sort_by: str = "receivedAt",
    order: str = "desc",
    limit: int = 50,
    offset: int = 0,
    cursor: str | None = None,
) -> ListPage:
    """One page of an account's (or folder's) messages, filtered and sorted, after ``cursor`` or ``offset``.

    Raises:
        NotFound: unknown account, or a folder that is not this account's.
        InvalidInput: a cursor that is not valid, made for another sort, or given together with an offset.
    """
    filters = filters or ListFilters()
    after = Cursor.decode(cursor) if cursor else None
    if after is not None and (after.sort_by, after.order) != (sort_by, order):
        raise InvalidInput("cursor was made for another sortBy/sortOrder")
    if after is not None and offset:
        raise InvalidInput("cursor and offset cannot be combined")
    shape = _PageShape(folder_id is not None, filters.shape(), sort_by, order, after is not None, bool(offset))
    values = {"tenant_id": principal.tenant_id, "account_id": account_id, "folder_id": folder_id, "limit": limit,
              "offset": offset, **filters.values()}  # fmt: skip
    if after is not None:
        values.update(after_key=after.key, after_id=after.id)
    with ctx.db.tenant_session(principal.tenant_id) as session:
        scope = _scope(session, principal, account_id, folder_id)
        rows = fetch_ordered_rows(session.connection(), _page_statement(shape), values,  # Core, no ORM
                                  order_by=("sort_key", "id"), descending=order == "desc")  # fmt: skip
        next_cursor = None
        if len(rows) == limit:
            last = rows[-1]
            next_cursor = Cursor(sort_by, order, last[-1], row_uuid(last[0])).encode()
        pending: frozenset[uuid.UUID] = frozenset()
        if scope.has_pending and rows:  # the usual case has none: no IN of the page's ids
            pending = frozenset(pending_message_ids(session, [row_uuid(row[0]) for row in rows]))
    return ListPage(list(rows), _total(scope, filters), limit, offset, next_cursor, pending, scope.state)


@dataclass(frozen=True)
class _Scope:
    """What a page needs besides its rows: the account's state, the kept counts and whether anything waits."""

    state: str
    total: int
    unread: int
    has_pending: bool


def _scope(session: Session, principal: Principal, account_id: uuid.UUID, folder_id: uuid.UUID | None) -> _Scope:
    """The account (checked as :func:`load_account` checks it), its state, whether it has pending actions and the
    kept counts of the folder (or of all its folders) in one query: plain columns, no entities (one statement
    instead of two: a statement costs ~0.15 ms of CPU on SQLite and a round trip more on PostgreSQL), run on the
    connection (Core), as the page's statement is: the ORM's execution adds nothing to plain columns but CPU.

    Raises:
        NotFound: no such live account in the caller's tenant, or a folder that is not this account's.
        Forbidden: another user's account and the caller is not an admin.
    """
    values = {"tenant_id": principal.tenant_id, "account_id": account_id, "folder_id": folder_id}
    row = session.connection().execute(_scope_statement(folder_id is not None), values).first()
    account = require_visible_account(principal, row)
    if folder_id is not None and not account.found:
        raise NotFound("Folder not found")
    # the account's state, read before the rows
    return _Scope(state_string(account.change_seq), int(account.total), int(account.unread), bool(account.waiting))


# The list's statements are built once per shape, their values bound at execution (``bindparam``): SQLAlchemy then
# finds a statement's compiled form by a cache key it computed once, instead of building the statement and its cache
# key again on every request (about a fifth of a list request's CPU, issue 11).  The SQL is the one the statements
# built per request had, so are the plans.


@cache
def _scope_statement(by_folder: bool) -> Select[Any]:
    """The statement of :func:`_scope`; binds ``tenant_id``, ``account_id`` and (``by_folder``) ``folder_id``."""
    account_id: ColumnElement[Any] = bindparam("account_id")
    waiting = exists().where(PendingAction.account_id == account_id, PendingAction.state == "pending")
    scope = [EmailFolder.tenant_id == bindparam("tenant_id"), EmailFolder.account_id == account_id]
    if by_folder:
        scope.append(EmailFolder.id == bindparam("folder_id"))
    counts = [
        select(aggregate).where(*scope).scalar_subquery().label(name)
        for name, aggregate in (
            ("found", func.count()),
            ("total", func.coalesce(func.sum(EmailFolder.total_count), 0)),
            ("unread", func.coalesce(func.sum(EmailFolder.unread_count), 0)),
        )
    ]
    return select(*VISIBILITY_COLUMNS, EmailAccount.change_seq, waiting.label("waiting"), *counts).where(
        EmailAccount.id == account_id
    )


@dataclass(frozen=True)
class _PageShape:
    """What decides the SQL of a page (the values are bound): folder or account, which filters
    (:meth:`ListFilters.shape`), the sort and order, after a cursor or not, at an offset or not."""

    by_folder: bool
    filters: tuple[Any, ...]
    sort_by: str
    order: str
    after: bool
    offset: bool


@lru_cache(maxsize=512)
def _page_statement(shape: _PageShape) -> Select[Any]:
    """The page's statement for ``shape``; binds ``tenant_id``, ``account_id``, ``folder_id``, the filters'
    values (:meth:`ListFilters.values`), ``after_key``/``after_id`` (cursor), ``limit`` and ``offset``."""
    key = sort_key(shape.sort_by)
    conditions = [EmailMessage.tenant_id == bindparam("tenant_id"), EmailMessage.account_id == bindparam("account_id")]
    if shape.by_folder:
        conditions.append(EmailMessage.folder_id == bindparam("folder_id"))
    conditions.extend(ListFilters.conditions_of(shape.filters))
    if shape.after:
        # ``key <= k AND (key < k OR id < i)``: the first half is a range on the index (SQLite does not take a row
        # value ``(key, id) < (k, i)`` over an expression as one), the second drops the ties already shown.
        after_key: ColumnElement[Any] = bindparam("after_key")
        after_id: ColumnElement[Any] = bindparam("after_id")
        if shape.order == "desc":
            conditions += [key <= after_key, or_(key < after_key, EmailMessage.id < after_id)]
        else:
            conditions += [key >= after_key, or_(key > after_key, EmailMessage.id > after_id)]
    query = select(*PAGE_COLUMNS, key.label("sort_key")).where(and_(*conditions)).order_by(*_ordering(key, shape.order))
    if shape.offset:
        query = _deferred_join(query, key, shape.order)
    return query.limit(bindparam("limit"))


def _ordering(key: ColumnElement[Any], order: str) -> tuple[ColumnElement[Any], ColumnElement[Any]]:
    return (key.desc(), EmailMessage.id.desc()) if order == "desc" else (key.asc(), EmailMessage.id.asc())


def _deferred_join(query: Select[Any], key: ColumnElement[Any], order: str) -> Select[Any]:
    """An ``offset`` page as a deferred join: the ids of the page first (the rows it skips are read for their key
    and id only), then its ``limit`` rows by primary key.  Reading the skipped rows whole made PostgreSQL sort the
    folder on disk (offset 60,300 of 67,000: ~85 ms this way, 200-400 ms before)."""
    ids = query.with_only_columns(EmailMessage.id).limit(bindparam("limit")).offset(bindparam("offset")).subquery()
    return (
        select(*PAGE_COLUMNS, key.label("sort_key"))
        .join(ids, EmailMessage.id == ids.c.id)
        .order_by(*_ordering(key, order))
    )


def _total(scope: _Scope, filters: ListFilters) -> int | None:
    total, unread = scope.total, scope.unread
    if filters == ListFilters():
        return total
    if filters.only_read_state():
        return total - unread if filters.is_read else unread
    return None
