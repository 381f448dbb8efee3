"""The message summary -- the item of every message list -- serialised without marshmallow (issue 11).

:func:`summary` builds, in one pass over plain attributes, exactly the JSON value that
``MessageSummaryOut().dump(...)`` (:mod:`email_service.api.mailbox_schemas`) gives for the same message: the same
keys, ids as strings, integers, booleans, addresses reduced to ``name``/``email``.  ``tests/unit/test_summaries.py``
compares the two on varied messages so they cannot drift; the schema stays the OpenAPI document's description of
the answer.  Serialising a page of 50 summaries this way costs a small fraction of marshmallow's per-field
dispatch, which was most of a list request's CPU (``bench/README.md``, "the message list at 100,000 messages").
:func:`thread_summary` does the same for a conversation of the thread list (``ThreadOut``).

:func:`json_response` writes a ready body with the application's JSON provider (the same bytes ``jsonify`` makes),
so a view decorated with ``@bp.output(...)`` for the document can return it as is (APIFlask passes a
:class:`~flask.Response` through).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from operator import attrgetter
from typing import Any

from flask import Response, current_app

from email_service.services.message_list import SUMMARY_COLUMNS
from email_service.services.thread_list import ThreadSummary

#: The attributes a summary reads, in the order of :data:`SUMMARY_COLUMNS` (a page's rows hold them so).
SUMMARY_FIELDS = tuple(column.key for column in SUMMARY_COLUMNS)
_fields_of = attrgetter(*SUMMARY_FIELDS)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _id(value: Any) -> str | None:
    """An id as the canonical UUID string: from a ``uuid.UUID``, the canonical text, or 32 hex digits (a page row
    read on SQLite, see :data:`~email_service.services.message_list.PAGE_COLUMNS`)."""
    if value is None:
        return None
    if type(value) is str:
        if len(value) == 32:
            return f"{value[:8]}-{value[8:12]}-{value[12:16]}-{value[16:20]}-{value[20:]}"
        return value
    return str(value)


#: :func:`_id` of the ids every row of a page repeats (its account's, its folder's), each computed once.
_shared_id = lru_cache(maxsize=1024)(_id)


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _bool(value: Any) -> bool | None:
    return None if value is None else bool(value)


def address(value: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """An address as ``AddressOut`` dumps it: only ``name`` and ``email`` (those present), as strings."""
    if value is None:
        return None
    return {key: _text(value[key]) for key in ("name", "email") if key in value}


def addresses(values: Iterable[Mapping[str, Any]] | str | None) -> list[dict[str, Any] | None] | None:
    """A list of addresses as ``List(Nested(AddressOut))`` dumps it; ``values`` may be the column's stored JSON
    text (a row of :data:`~email_service.services.message_list.PAGE_COLUMNS`, on either database)."""
    if values is None:
        return None
    if isinstance(values, str):
        return _addresses_of_text(values)
    return [address(value) for value in values]


def flag_list(values: Iterable[Any] | str | None) -> list[str | None] | None:
    """The ``flags`` of a summary: a list of strings, from the list or from the column's stored JSON text."""
    if values is None:
        return None
    if isinstance(values, str):
        return _flags_of_text(values)
    return [_text(flag) for flag in values]


# The address and flag columns as stored (JSON text; a page reads them so on both databases) repeat across a
# mailbox: the owner's address in ``to``, an empty ``cc``, ``["\\Seen"]``.  Parsing them once per distinct text
# instead of once per row and column saves ``json.loads`` about three times per row, ~7-12 % of a list request's
# CPU (bench/README.md, stop 17).  The values are shared between answers: read only (the JSON encoder only reads
# them).
@lru_cache(maxsize=4096)
def _addresses_of_text(text: str) -> list[dict[str, Any] | None] | None:
    return addresses(json.loads(text))


@lru_cache(maxsize=1024)
def _flags_of_text(text: str) -> list[str | None] | None:
    return flag_list(json.loads(text))


def summary(message: Any, *, pending: bool = False) -> dict[str, Any]:
    """The ``MessageSummaryOut`` JSON value of ``message`` (an :class:`~email_service.models.EmailMessage`, or any
    object with the attributes :data:`SUMMARY_FIELDS`); ``pending``: a change of it still waits for write-back.

    Returns a dict of JSON types only (ids as canonical UUID strings, times as epoch ms integers).
    """
    return summary_of_row(_fields_of(message), pending=pending)


def summary_of_row(row: Sequence[Any], *, pending: bool = False) -> dict[str, Any]:
    """:func:`summary` of a row that starts with the values of :data:`SUMMARY_COLUMNS`, in their order (a list
    page's row; positions, not names: reading a row by attribute name costs more than the rest together)."""
    (ident, account_id, folder_id, uid, message_id, thread_id, subject, from_name, from_address, to, cc, sent_at,
     received_at, preview, flags, is_read, is_flagged, is_answered, is_draft, has_attachments, size,
     last_error) = row[:22]  # fmt: skip
    return {
        "id": _id(ident),
        "accountId": _shared_id(account_id),
        "folderId": _shared_id(folder_id),
        "uid": _int(uid),
        "messageId": _text(message_id),
        "threadId": _id(thread_id),
        "subject": _text(subject),
        "from": {"name": str(from_name or ""), "email": str(from_address or "")} if from_address or from_name else None,
        "to": addresses(to),
        "cc": addresses(cc),
        "sentAt": _int(sent_at),
        "receivedAt": _int(received_at),
        "preview": _text(preview),
        "flags": flag_list(flags),
        "isRead": _bool(is_read),
        "isFlagged": _bool(is_flagged),
        "isAnswered": _bool(is_answered),
        "isDraft": _bool(is_draft),
        "hasAttachments": _bool(has_attachments),
        "size": _int(size),
        "pendingChanges": pending,
        "lastError": _text(last_error),
    }


def thread_summary(thread: ThreadSummary) -> dict[str, Any]:
    """The ``ThreadOut`` JSON value of a conversation (:mod:`email_service.api.search_schemas`): its fields and
    its latest message as :func:`summary` (from its row: :func:`summary_of_row`)."""
    return {
        "threadId": _id(thread.thread_id),
        "subject": _text(thread.subject),
        "participants": addresses(thread.participants),
        "messageCount": _int(thread.message_count),
        "unreadCount": _int(thread.unread_count),
        "hasAttachments": _bool(thread.has_attachments),
        "lastActivityAt": _int(thread.last_activity_at),
        "latestMessage": summary_of_row(thread.latest),
    }


def json_response(body: Any, status: int = 200) -> Response:
    """``body`` (JSON types) as an ``application/json`` response, written by the application's JSON provider."""
    response: Response = current_app.json.response(body)  # type: ignore[assignment]  # the app response_class
    response.status_code = status
    return response
