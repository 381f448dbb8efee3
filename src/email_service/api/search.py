"""Search of the mirrored mail and conversations (issue 11)."""

from __future__ import annotations

import uuid
from typing import Any

from apiflask import APIBlueprint
from flask import Response

from email_service.services import search as search_service
from email_service.services import thread_list

from . import examples
from .auth import current_principal
from .common import AUTH_ERRORS
from .context import service_context
from .gate import guard
from .search_schemas import SearchOut, SearchQuery, ThreadListOut, ThreadListQuery, ThreadMessagesOut
from .summaries import json_response, summary, thread_summary

_HIT = {
    **examples.MESSAGE_SUMMARY,
    "threadId": "0b6f4c1e-3d2a-4f5e-9a8b-7c6d5e4f3a2b",
    "snippet": "… review the <mark>quarterly</mark> numbers before Friday …",
}
SEARCH_EXAMPLE: dict[str, Any] = {
    "messages": [_HIT], "pagination": {"total": 1, "limit": 50, "offset": 0, "totalExact": True}, "state": "42"
}  # fmt: skip
_THREADED = {**examples.MESSAGE_SUMMARY, "threadId": "0b6f4c1e-3d2a-4f5e-9a8b-7c6d5e4f3a2b"}
_THREAD = {
    "threadId": _THREADED["threadId"],
    "subject": examples.MESSAGE_SUMMARY["subject"],
    "participants": [examples.MESSAGE_SUMMARY["from"]],
    "messageCount": 1,
    "unreadCount": 1,
    "hasAttachments": examples.MESSAGE_SUMMARY["hasAttachments"],
    "lastActivityAt": examples.MESSAGE_SUMMARY["receivedAt"],
    "latestMessage": _THREADED,
}
THREAD_LIST_EXAMPLE: dict[str, Any] = {
    "threads": [_THREAD],
    "pagination": {"total": 1, "limit": 50, "offset": 0, "totalExact": True, "nextCursor": None},
    "state": "42",
}
THREAD_EXAMPLE: dict[str, Any] = {"threadId": _THREAD["threadId"], "messages": [_THREADED]}

bp = guard(
    APIBlueprint(
        "search",
        __name__,
        tag={"name": "Search", "description": "Full-text search and conversations (threads) of the mirrored mail"},
    )
)


@bp.get("/accounts/<uuid:account_id>/messages/search")
@bp.input(SearchQuery, location="query")
@bp.output(SearchOut, example=SEARCH_EXAMPLE)
@bp.doc(
    summary="Search the account's messages (Gmail-style operators)",
    description="Same results on PostgreSQL and SQLite. A malformed query (unbalanced quote or parenthesis, "
    "unknown operator, bad date or size) is a 400 whose message says what is wrong. Work per request is bounded: "
    f"`pagination.total` is exact up to {search_service.COUNT_CAP} hits; beyond, `pagination.totalExact` is false "
    f"and `total` a lower bound (page on with `offset`: pages past the bound keep coming). `sort=relevance` ranks "
    f"the newest {search_service.RANK_WINDOW} hits; the hits after them follow newest first.",
    operation_id="searchMessages",
    responses=AUTH_ERRORS,
)
def search_messages(account_id: uuid.UUID, query_data: dict[str, Any]) -> Response:
    ctx, principal = service_context(), current_principal()
    page = search_service.search_messages(
        ctx,
        principal=principal,
        account_id=account_id,
        query=query_data["q"],
        folder_id=query_data["folderId"],
        sort=query_data["sort"],
        limit=query_data["limit"],
        offset=query_data["offset"],
    )
    # The SearchOut value, built directly (api/summaries.py: equal to the schema's dump, a fraction of its cost)
    return json_response(
        {
            "messages": [{**summary(hit.message), "snippet": hit.snippet} for hit in page.items],
            "pagination": {
                "total": page.total,
                "limit": page.limit,
                "offset": page.offset,
                "totalExact": page.total_exact,
            },
            "state": page.state,  # read in the search's transaction, before its rows
        }
    )


@bp.get("/accounts/<uuid:account_id>/threads")
@bp.input(ThreadListQuery, location="query")
@bp.output(ThreadListOut, example=THREAD_LIST_EXAMPLE)
@bp.doc(
    summary="Conversations of the account, newest activity first",
    description="Threads by RFC 5256 REFERENCES (JWZ) across folders, ordered by their newest `receivedAt` "
    "(`lastActivityAt`; ties: `threadId` descending). `folderId` keeps the threads with a message in that folder, "
    "ordered by their newest message *in the folder* (as JMAP Email/query with collapseThreads, RFC 8621 4.4.3); "
    "`subject`, `participants`, the counts, `lastActivityAt` and `latestMessage` still cover every folder. "
    "`pagination.nextCursor` fetches the next page as fast at any depth (keyset); `offset` still works and costs "
    f"the threads it skips. `pagination.total` is exact up to {thread_list.THREAD_COUNT_CAP} threads; beyond, "
    "`pagination.totalExact` is false and `total` a lower bound.",
    operation_id="listThreads",
    responses=AUTH_ERRORS,
)
def list_threads(account_id: uuid.UUID, query_data: dict[str, Any]) -> Response:
    page = thread_list.list_threads(
        service_context(),
        principal=current_principal(),
        account_id=account_id,
        folder_id=query_data["folderId"],
        limit=query_data["limit"],
        offset=query_data["offset"],
        cursor=query_data["cursor"],
    )
    # The ThreadListOut value, built directly (api/summaries.py: equal to the schema's dump, a fraction of its cost)
    return json_response(
        {
            "threads": [thread_summary(item) for item in page.items],
            "pagination": {
                "total": page.total,
                "limit": page.limit,
                "offset": page.offset,
                "totalExact": page.total_exact,
                "nextCursor": page.next_cursor,
            },
            "state": page.state,
        }
    )


@bp.get("/threads/<uuid:thread_id>")
@bp.output(ThreadMessagesOut, example=THREAD_EXAMPLE)
@bp.doc(
    summary="One conversation: its messages oldest first",
    description="Every message of the thread, in every folder of its account, oldest `receivedAt` first.",
    operation_id="getThread",
    responses=AUTH_ERRORS,
)
def get_thread(thread_id: uuid.UUID) -> Response:
    messages = thread_list.get_thread(service_context(), principal=current_principal(), thread_id=thread_id)
    return json_response({"threadId": str(thread_id), "messages": [summary(m) for m in messages]})
