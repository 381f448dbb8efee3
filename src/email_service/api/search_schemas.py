"""Schemas of the search and conversation endpoints (issue 11)."""

from __future__ import annotations

from apiflask import Schema
from apiflask.fields import UUID, Boolean, Integer, List, Nested, String
from apiflask.validators import Length, OneOf, Range, Regexp

from email_service.services.search import COUNT_CAP, RANK_WINDOW, SORTS
from email_service.services.thread_list import THREAD_COUNT_CAP

from .fields import QuerySchema, Text
from .mailbox_schemas import AddressOut, MessageSummaryOut
from .schemas import PaginationOut, offset_field


class SearchQuery(QuerySchema):
    """``q`` (required), ``folderId``, ``sort``, ``limit`` 1-100 (default 50), ``offset``."""

    q = Text(
        required=True,
        validate=Length(1, 1000, error="q must be 1 to 1000 characters"),
        error_messages={"required": "q is required"},
        metadata={
            "description": 'Words (stemmed), "exact phrase", from: to: cc: subject: filename: has:attachment '
            "is:unread|read|flagged|unflagged|answered|draft in:<folder name or role> before:/after:YYYY-MM-DD "
            "larger:/smaller:10M|500K, -negation, OR, ( )"
        },
    )
    folderId = UUID(load_default=None, allow_none=True)
    sort = Text(
        load_default="relevance",
        validate=OneOf(SORTS, error="sort must be relevance or date"),
        metadata={"description": f"relevance: the newest {RANK_WINDOW} hits ranked (a query word in the subject "
                  "counts 4, in an address 2, in an attachment name 1; newest first among equals), the hits after "
                  "them newest first; date: newest first"},
    )  # fmt: skip
    limit = Integer(load_default=50, validate=Range(1, 100, error="limit must be between 1 and 100"))
    offset = offset_field()


class SearchHitOut(MessageSummaryOut):
    """A found message with its snippet."""

    snippet = String(
        metadata={"description": "HTML: escaped text of the body (or subject) around the match, matches in <mark>"}
    )


class SearchPaginationOut(PaginationOut):
    """Page bounds of a search: ``total`` is exact up to :data:`COUNT_CAP` hits, a lower bound beyond."""

    total = Integer(
        metadata={
            "description": f"hits, counted exactly up to {COUNT_CAP} (the {RANK_WINDOW} ranked by relevance and one "
            "page); when totalExact is false a lower bound"
        }
    )
    totalExact = Boolean(
        metadata={"description": f"false when the search has more than {COUNT_CAP} hits: total is then a lower "
                  "bound (page on with offset while a page comes back full)"}
    )  # fmt: skip


class SearchOut(Schema):
    """``{"messages": [...], "pagination": {...}}``."""

    messages = List(Nested(SearchHitOut))
    pagination = Nested(SearchPaginationOut)
    state = String(
        metadata={"description": "the account's state before this list was read (GET /accounts/{id}/changes?since=)"}
    )


class ThreadListQuery(QuerySchema):
    """``folderId`` (optional), ``limit`` 1-100 (default 50), ``offset`` or an opaque ``cursor``."""

    folderId = UUID(load_default=None, allow_none=True)
    limit = Integer(load_default=50, validate=Range(1, 100, error="limit must be between 1 and 100"))
    offset = offset_field()
    cursor = Text(
        load_default=None,
        validate=[Length(1, 2000), Regexp(r"^[A-Za-z0-9_-]+$", error="cursor is not valid")],
        metadata={"description": "nextCursor of the previous page (same folderId; not with offset)"},
    )


class ThreadOut(Schema):
    """A conversation in a list."""

    threadId = UUID()
    subject = String(metadata={"description": "subject of its first message"})
    participants = List(Nested(AddressOut), metadata={"description": "distinct senders in order of appearance"})
    messageCount = Integer()
    unreadCount = Integer()
    hasAttachments = Boolean()
    lastActivityAt = Integer(metadata={"description": "receivedAt of its latest message, epoch ms"})
    latestMessage = Nested(MessageSummaryOut)


class ThreadPaginationOut(PaginationOut):
    """Page bounds of the thread list: ``total`` exact up to :data:`THREAD_COUNT_CAP` threads, the next page's
    cursor."""

    total = Integer(
        metadata={"description": f"threads, counted exactly up to {THREAD_COUNT_CAP}; when totalExact is false a "
                  "lower bound"}
    )  # fmt: skip
    totalExact = Boolean(
        metadata={"description": f"false when there are more than {THREAD_COUNT_CAP} threads: total is then a lower "
                  "bound (page on while nextCursor is not null)"}
    )  # fmt: skip
    nextCursor = String(
        allow_none=True, metadata={"description": "pass as `cursor` for the next page; null on the last page"}
    )


class ThreadListOut(Schema):
    """``{"threads": [...], "pagination": {...}}``, newest activity first."""

    threads = List(Nested(ThreadOut))
    pagination = Nested(ThreadPaginationOut)
    state = String(
        metadata={"description": "the account's state before this list was read (GET /accounts/{id}/changes?since=)"}
    )


class ThreadMessagesOut(Schema):
    """``GET /threads/{id}``: the thread's messages oldest first."""

    threadId = UUID()
    messages = List(Nested(MessageSummaryOut))
