"""Turning fetched messages into rows and back out: parse, keep the raw bytes in the blob store, bulk insert,
delete by key; every insert and delete moves the folder's counts in the same transaction (no recount).

Parsing goes through :func:`email_service.protocols.mime.parse.parse_message` (structure with ``compat32``, only the
stored headers decoded), so that parsing is not the bottleneck of a sync (issue 2 benchmark notes).  A message
the parser finds defective is stored with its defects, never skipped.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from typing import Any

from sqlalchemy import ColumnElement, delete, insert, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from email_service.models import EmailAttachment, EmailFolder, EmailMessage, folder_counts_delta, now_ms
from email_service.protocols.mime.parse import Address, ParsedMessage, parse_message
from email_service.services import search_index
from email_service.services.actions import lock_account
from email_service.services.changes import record_changes
from email_service.services.flags import FLAG_COLUMNS, flag_columns

log = logging.getLogger("email_service.sync")
#: Keys per ``IN (...)`` list: well under SQLite's bound-parameter limit.
IN_CHUNK = 500

__all__ = ["FLAG_COLUMNS", "IN_CHUNK", "add_messages", "delete_messages", "flag_columns", "insert_rows", "message_rows"]


def _address(address: Address) -> dict[str, str]:
    return {"name": address.name, "email": address.addr_spec}


def _clip(value: str | None, limit: int) -> str | None:
    return value[:limit] if value is not None else None


def _safe_parse(raw: bytes) -> ParsedMessage | None:
    try:
        return parse_message(raw)
    except Exception:  # the parser must never fail a sync: keep the row, record the defect
        log.exception("parser failed on a message; storing it with a defect")
        return None


def message_rows(
    raw: bytes,
    *,
    identity: Mapping[str, Any],
    tenant_id: uuid.UUID,
    account_id: uuid.UUID,
    folder_id: uuid.UUID,
    flags: Iterable[str] = (),
    received_at: int | None = None,
    size: int | None = None,
    modseq: int | None = None,
    scan_status: str = "skipped",
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The ``email_messages`` row and its ``email_attachments`` rows for one message of ``raw`` RFC 5322 bytes.

    ``identity`` is the message's key on the server (DESIGN.md section 6): ``{"uid", "uidvalidity"}`` for IMAP,
    ``{"uidl"}`` for POP3.  ``received_at`` (epoch ms; IMAP INTERNALDATE) falls back to the Date header, then to
    now; ``size`` (octets; IMAP RFC822.SIZE) to ``len(raw)``.  ``raw_sha256`` names the raw bytes; the caller puts
    them in the blob store before inserting the rows.  ``scan_status`` is the attachments' ``virus_scan_status``:
    ``pending`` when virus scanning is on (they are scanned before their first download), ``skipped`` when it is
    off.
    """
    digest = hashlib.sha256(raw).hexdigest()
    parsed = _safe_parse(raw)
    message_id = uuid.uuid4()
    now = now_ms()
    row: dict[str, Any] = {
        "id": message_id,
        "tenant_id": tenant_id,
        "account_id": account_id,
        "folder_id": folder_id,
        "uid": None,
        "uidvalidity": None,
        "uidl": None,
        **identity,
        "modseq": modseq,
        "received_at": received_at,
        "size": size or len(raw),
        "raw_sha256": digest,
        "created_at": now,
        "updated_at": now,
        **flag_columns(flags),
    }
    if parsed is None:
        row.update(
            subject="",
            preview="",
            defects=["ParserCrashed"],
            references=[],
            to_addresses=[],
            cc_addresses=[],
            bcc_addresses=[],
            reply_to=[],
            has_attachments=False,
        )
        row["received_at"] = received_at or now
        return row, []
    row.update(_parsed_columns(parsed))
    row["received_at"] = received_at or parsed.date_ms or now
    return row, _attachment_rows(parsed, row, scan_status)


def _parsed_columns(parsed: ParsedMessage) -> dict[str, Any]:
    """The ``email_messages`` columns read from the parsed headers and bodies (clipped to their column sizes)."""
    first_from = parsed.from_[0] if parsed.from_ else None
    return dict(
        message_id=_clip(parsed.message_id, 998),
        in_reply_to=_clip(parsed.in_reply_to, 998),
        references=list(parsed.references),
        from_name=_clip(first_from.name, 500) if first_from else None,
        from_address=_clip(first_from.addr_spec, 500) if first_from else None,
        sender=_address(parsed.sender) if parsed.sender else None,
        to_addresses=[_address(a) for a in parsed.to],
        cc_addresses=[_address(a) for a in parsed.cc],
        bcc_addresses=[_address(a) for a in parsed.bcc],
        reply_to=[_address(a) for a in parsed.reply_to],
        subject=parsed.subject,
        preview=parsed.preview[:500],
        text_body=parsed.text_body,
        html_body=parsed.html_body,
        has_attachments=parsed.has_attachments,
        sent_at=parsed.date_ms,
        defects=list(parsed.defects),
    )


def _attachment_rows(parsed: ParsedMessage, message: Mapping[str, Any], scan_status: str) -> list[dict[str, Any]]:
    """The ``email_attachments`` rows of ``parsed`` for the message row ``message`` (its parts are decoded from the
    raw message on first use: ``storage_path`` is ``<raw sha256>#<part id>``)."""
    return [
        {
            **{
                k: v
                for k, v in asdict(info).items()
                if k in ("part_id", "content_id", "disposition", "content_encoding")
            },
            "id": uuid.uuid4(),
            "tenant_id": message["tenant_id"],
            "account_id": message["account_id"],
            "message_id": message["id"],
            "filename": _clip(info.filename, 500),
            "mime_type": info.content_type[:255],
            "size_bytes": info.size,
            "content_hash": info.sha256,
            "storage_type": "message",
            "storage_path": f"{message['raw_sha256']}#{info.part_id}",
            "virus_scan_status": scan_status,
            "created_at": message["created_at"],
            "updated_at": message["created_at"],
        }
        for info in parsed.attachments
    ]


def insert_rows(
    session: Session,
    messages: list[dict[str, Any]],
    attachments: list[dict[str, Any]],
    docs: Mapping[uuid.UUID, Mapping[str, Any]] | None = None,
) -> None:
    """Bulk insert (executemany / insertmanyvalues) one batch of message rows and their attachment rows, threaded
    (sets each row's ``thread_id``) and indexed for search in the same transaction
    (:mod:`email_service.services.search_index`; ``docs``: doc rows already made, by message id)."""
    search_index.after_insert(session, messages, attachments)
    if messages:
        session.execute(insert(EmailMessage), messages)
    if attachments:
        session.execute(insert(EmailAttachment), attachments)
    search_index.write_docs(session, messages, attachments, docs)


def add_messages(
    session: Session,
    *,
    tenant_id: uuid.UUID,
    account_id: uuid.UUID,
    folder_id: uuid.UUID,
    messages: list[dict[str, Any]],
    attachments: list[dict[str, Any]],
    docs: Mapping[uuid.UUID, Mapping[str, Any]] | None = None,
) -> list[uuid.UUID]:
    """The one path that adds message rows to a folder, used by the sync, drafts and the Sent copy of a send: the
    rows with their attachment rows, threaded and indexed (:func:`insert_rows`), the folder's counts, and the
    change log (the messages created, the folder updated), in the caller's transaction under the account's lock
    (taken first: the lock order of :mod:`email_service.services.changes`).  ``docs``: the messages' search doc
    rows when the caller made them already (:func:`email_service.services.search_index.doc_row`, by message id).
    Returns the new messages' ids."""
    lock_account(session, account_id)
    insert_rows(session, messages, attachments, docs)
    ids = [message["id"] for message in messages]
    if ids:
        unread = sum(1 for message in messages if not message["is_read"])
        session.execute(folder_counts_delta(folder_id, total=len(ids), unread=unread))
        record_changes(session, tenant_id=tenant_id, account_id=account_id, kind="message", created=ids)
        record_changes(session, tenant_id=tenant_id, account_id=account_id, kind="folder", updated=[folder_id])
    return ids


def delete_messages(
    session: Session,
    folder_id: uuid.UUID,
    key: InstrumentedAttribute[Any],
    values: Sequence[Any],
    *conditions: ColumnElement[bool],
) -> int:
    """Delete the folder's messages whose ``key`` column (``EmailMessage.uid`` or ``.uidl``) is in ``values``
    (and that meet ``conditions``, e.g. the UIDVALIDITY), with their attachment rows (foreign-key cascade), and
    take them off the folder's counts; the deleted messages (and the folder, for its counts) go to the change log
    in the same transaction, under the account's lock taken first.  Returns how many rows were deleted (values
    matching nothing are ignored).
    """
    tenant_id, account_id = session.execute(
        select(EmailFolder.tenant_id, EmailFolder.account_id).where(EmailFolder.id == folder_id)
    ).one()
    lock_account(session, account_id)
    unread = 0
    destroyed: list[uuid.UUID] = []
    ordered = sorted(set(values))
    for start in range(0, len(ordered), IN_CHUNK):
        rows = session.execute(
            delete(EmailMessage)
            .where(EmailMessage.folder_id == folder_id, key.in_(ordered[start : start + IN_CHUNK]), *conditions)
            .returning(EmailMessage.id, EmailMessage.is_read)
        )
        for message_id, is_read in rows:
            destroyed.append(message_id)
            unread += not is_read
    if destroyed:
        session.execute(folder_counts_delta(folder_id, total=-len(destroyed), unread=-unread))
        record_changes(session, tenant_id=tenant_id, account_id=account_id, kind="message", destroyed=destroyed)
        record_changes(session, tenant_id=tenant_id, account_id=account_id, kind="folder", updated=[folder_id])
    return len(destroyed)
