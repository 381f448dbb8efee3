"""Keeping the search index and the threads true: one call where message rows are stored, a backfill, statistics.

:func:`after_insert` is called by :func:`email_service.sync.store.insert_rows` -- the one path by which the sync,
the write-back and sending store message rows -- in the same transaction as the insert: it threads the rows
(:mod:`email_service.services.threads`; sets their ``thread_id`` before they are inserted) and writes their
``email_search_docs`` rows (:func:`doc_row`; on PostgreSQL with their ``tsv`` as a ``tsvector`` literal,
:mod:`email_service.services.search_tsvector`, migration 0012). Deleting a message deletes its doc row by
foreign-key cascade (PostgreSQL, SQLite with ``foreign_keys=ON``), and on SQLite the triggers of migration 0007 keep
the FTS5 table in step with the doc rows. A doc row is written with its message's flags and folder
(:data:`STATE_FLAGS`, ``folder_id``); a flag change or a move of the message updates them through migration 0014's
trigger on ``email_messages``, whichever writer makes it.

:func:`backfill_account` indexes and threads the messages stored before migration 0007 (or by a path that
bypassed :func:`after_insert`); the account sync calls it at its end, then :func:`refresh_statistics`.
:func:`reindex_messages` rewrites the doc rows of a message changed in place (a draft edited, its attachments).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Column, MetaData, Table, delete, insert, select, text, update
from sqlalchemy.dialects.postgresql import TSVECTOR
from sqlalchemy.orm import Session

from email_service.models import EmailAttachment, EmailMessage, SearchDoc, ThreadContainer
from email_service.protocols.mime.parse import html_to_text
from email_service.services.context import ServiceContext
from email_service.services.search_text import MAX_BODY_WORDS, fold, lexemes
from email_service.services.search_tsvector import tsvector_literal
from email_service.services.threads import assign_threads

_BATCH = 500
#: Messages added by one sync from which the planner statistics are refreshed at its end.
STATISTICS_AFTER = 1000
#: Tables whose statistics a bulk sync changes (also in migration 0007's PostgreSQL function).
STATISTICS_TABLES = ("email_messages", "email_attachments", "email_search_docs", "email_thread_containers")


#: ``email_search_docs`` on PostgreSQL: with its ``tsv`` column (migration 0012; SQLite has none).
_POSTGRESQL_DOCS: Table = SearchDoc.__table__.to_metadata(MetaData())  # type: ignore[attr-defined]
_POSTGRESQL_DOCS.append_column(Column("tsv", TSVECTOR))
#: The message's flags a doc row holds (with its ``folder_id``; kept in step by migration 0014's trigger).
STATE_FLAGS = ("is_read", "is_flagged", "is_answered", "is_draft")
#: The doc row's term columns in the order and with the weights of migration 0007's ``tsv`` expression.
TSV_FIELDS = (("subject_terms", "A"), ("address_terms", "B"), ("body_terms", "C"), ("attachment_terms", "D"))


def _addresses(values: Iterable[Mapping[str, Any]] | None) -> str:
    return "; ".join(f"{v.get('name') or ''} <{v.get('email') or ''}>" for v in values or ())


def body_text(message: Mapping[str, Any]) -> str:
    """The indexed body of a message row: its text body, else its HTML body as text."""
    if message.get("text_body"):
        return str(message["text_body"])
    if message.get("html_body"):
        return html_to_text(str(message["html_body"]))
    return ""


def doc_row(message: Mapping[str, Any], attachment_names: Iterable[str], *, tsv: bool = False) -> dict[str, Any]:
    """The ``email_search_docs`` row of an ``email_messages`` row dict and its attachments' file names; with
    ``tsv`` (PostgreSQL) also its ``tsv`` (:func:`doc_tsv`)."""
    sender = f"{message.get('from_name') or ''} <{message.get('from_address') or ''}>"
    to = _addresses(message.get("to_addresses"))
    cc = _addresses(message.get("cc_addresses"))
    fields = (
        lexemes(message.get("subject") or ""),
        lexemes(f"{sender} {to} {cc}"),
        lexemes(body_text(message), limit=MAX_BODY_WORDS),
        lexemes(" ".join(attachment_names)),
    )
    row = {
        "message_id": message["id"],
        "tenant_id": message["tenant_id"],
        "account_id": message["account_id"],
        "received_at": message.get("received_at") or 0,
        "size": message.get("size") or 0,
        "has_attachments": bool(message.get("has_attachments")),
        **{flag: bool(message.get(flag)) for flag in STATE_FLAGS},
        "folder_id": message.get("folder_id"),
        "subject_terms": " ".join(fields[0]),
        "address_terms": " ".join(fields[1]),
        "body_terms": " ".join(fields[2]),
        "attachment_terms": " ".join(fields[3]),
        "from_text": fold(sender),
        "to_text": fold(to),
        "cc_text": fold(cc),
    }
    if tsv:
        row["tsv"] = doc_tsv(row, split=fields)
    return row


def doc_tsv(row: Mapping[str, Any], *, split: Sequence[list[str]] | None = None) -> str | None:
    """The ``tsv`` of a doc row as a ``tsvector`` literal (migration 0007's expression of its terms), or ``None``
    where only PostgreSQL's parser can make it (non-ASCII terms: the row's trigger computes it, migration 0012).
    ``split``: the four term fields' lexemes, if at hand (saves splitting the terms again)."""
    return tsvector_literal([(row[column], weight) for column, weight in TSV_FIELDS], split=split)


def after_insert(
    session: Session, messages: Sequence[dict[str, Any]], attachments: Sequence[Mapping[str, Any]]
) -> None:
    """Thread ``messages`` (row dicts about to be inserted: sets their ``thread_id``) and index them.  Call in the
    transaction that inserts them, before the insert; :func:`write_docs` after it."""
    by_account: dict[tuple[uuid.UUID, uuid.UUID], list[dict[str, Any]]] = {}
    for message in messages:
        by_account.setdefault((message["tenant_id"], message["account_id"]), []).append(message)
    for (tenant_id, account_id), rows in by_account.items():
        assign_threads(session, tenant_id=tenant_id, account_id=account_id, messages=rows)


def write_docs(
    session: Session,
    messages: Sequence[Mapping[str, Any]],
    attachments: Sequence[Mapping[str, Any]],
    docs: Mapping[Any, Mapping[str, Any]] | None = None,
) -> None:
    """Insert the doc rows of inserted ``messages`` (row dicts) with their ``attachments`` (row dicts).

    ``docs`` maps message ids to doc rows already made by :func:`doc_row` (the sync makes them on its parsing
    thread, see :mod:`email_service.sync.writer`); the other messages' doc rows are made here.  On PostgreSQL each
    row carries its ``tsv`` (:func:`doc_tsv`, made here if ``docs`` came without it); SQLite has no ``tsv``."""
    names: dict[Any, list[str]] = {}
    for attachment in attachments:
        if attachment.get("filename"):
            names.setdefault(attachment["message_id"], []).append(str(attachment["filename"]))
    postgresql = session.get_bind().dialect.name == "postgresql"
    made = docs or {}
    rows = [made.get(m["id"]) or doc_row(m, names.get(m["id"], ()), tsv=postgresql) for m in messages]
    if not rows:
        return
    if not postgresql:
        session.execute(insert(SearchDoc), rows)
        return
    rows = [row if "tsv" in row else {**row, "tsv": doc_tsv(row)} for row in rows]
    session.execute(insert(_POSTGRESQL_DOCS), rows)


_DOC_COLUMNS = (
    "id", "tenant_id", "account_id", "subject", "from_name", "from_address", "to_addresses", "cc_addresses",
    "text_body", "html_body", "message_id", "in_reply_to", "references", "received_at", "thread_id", "size",
    "has_attachments", "folder_id", *STATE_FLAGS,
)  # fmt: skip


def reindex_messages(session: Session, message_ids: Iterable[uuid.UUID]) -> None:
    """Rewrite the doc rows of messages changed in place -- a draft edited, or its attachments added or removed --
    from their current rows and attachment names, in the caller's transaction (their threads stay as they are: a
    draft's In-Reply-To/References cannot change after it is created)."""
    ids = list(dict.fromkeys(message_ids))
    if not ids:
        return
    session.flush()
    session.execute(delete(SearchDoc).where(SearchDoc.message_id.in_(ids)))
    columns = [getattr(EmailMessage, name) for name in _DOC_COLUMNS]
    rows = [dict(row._mapping) for row in session.execute(select(*columns).where(EmailMessage.id.in_(ids)))]
    attachments = session.execute(
        select(EmailAttachment.message_id, EmailAttachment.filename).where(EmailAttachment.message_id.in_(ids))
    ).all()
    write_docs(session, rows, [{"message_id": m, "filename": f} for m, f in attachments])


def backfill_account(session: Session, *, tenant_id: uuid.UUID, account_id: uuid.UUID) -> int:
    """Thread and index the account's messages that have no ``thread_id`` (stored before migration 0007, or by a
    path that bypassed :func:`after_insert`), a batch at a time.  Returns how many there were."""
    done = 0
    columns = [getattr(EmailMessage, name) for name in _DOC_COLUMNS]
    while True:
        rows = [
            dict(row._mapping)
            for row in session.execute(
                select(*columns)
                .where(EmailMessage.account_id == account_id, EmailMessage.thread_id.is_(None))
                .limit(_BATCH)
            )
        ]
        if not rows:
            return done
        threads = assign_threads(session, tenant_id=tenant_id, account_id=account_id, messages=rows)
        session.execute(
            update(EmailMessage),
            [{"id": message_id, "thread_id": thread_id} for message_id, thread_id in threads.items()],
        )
        ids = [row["id"] for row in rows]
        indexed = set(session.execute(select(SearchDoc.message_id).where(SearchDoc.message_id.in_(ids))).scalars())
        missing = [row for row in rows if row["id"] not in indexed]
        attachments = session.execute(
            select(EmailAttachment.message_id, EmailAttachment.filename).where(
                EmailAttachment.message_id.in_([m["id"] for m in missing])
            )
        ).all()
        write_docs(session, missing, [{"message_id": m, "filename": f} for m, f in attachments])
        done += len(rows)


def finish_sync(ctx: ServiceContext, *, tenant_id: uuid.UUID, account_id: uuid.UUID, added: int) -> None:
    """End of an account sync: :func:`backfill_account` when the run added messages or the account has no thread
    container yet (its first sync after migration 0007), so a sync that found nothing reads no message rows; then
    :func:`refresh_statistics` when the run added or backfilled at least :data:`STATISTICS_AFTER` messages (a bulk
    sync: plans are right from the first request)."""
    with ctx.db.tenant_session(tenant_id) as session:
        threaded = session.execute(
            select(ThreadContainer.id).where(ThreadContainer.account_id == account_id).limit(1)
        ).first()
        if added or threaded is None:
            added += backfill_account(session, tenant_id=tenant_id, account_id=account_id)
    if added >= STATISTICS_AFTER:
        with ctx.db.tenant_session(tenant_id) as session:
            refresh_statistics(session)


def refresh_statistics(session: Session) -> None:
    """Refresh the planner's statistics after a bulk change.

    PostgreSQL: ``ANALYZE`` of the tables a sync fills, through migration 0007's ``SECURITY DEFINER`` function (the
    app role does not own the tables, and only an owner may ANALYZE).  SQLite: ``ANALYZE`` of the same tables with
    ``analysis_limit`` (sampled, a few ms at 100,000 rows) -- what ``PRAGMA optimize`` would decide to run, except
    that SQLite 3.40's ``PRAGMA optimize`` only considers tables the same connection has queried -- then
    ``PRAGMA optimize``.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT email_service_refresh_statistics()"))
        return
    session.execute(text("PRAGMA analysis_limit = 1000"))
    for table in STATISTICS_TABLES:
        session.execute(text(f"ANALYZE {table}"))
    session.execute(text("PRAGMA optimize"))
