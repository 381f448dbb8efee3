"""Mirrored mailbox content: folders with their sync state, messages and attachment metadata (seed 003).

Message identity is ``(folder_id, uidvalidity, uid)`` for IMAP and ``(account_id, uidl)`` for POP3; the RFC 5322
Message-ID is indexed but never unique (DESIGN.md section 6).  Raw messages live in the blob store under their
sha256 (``raw_sha256``).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Index, Integer, String, Text, Update, Uuid, text, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from email_service.models.base import Base, TenantScoped

FOLDER_ROLES = ("inbox", "sent", "drafts", "trash", "spam", "archive", "custom")


class EmailFolder(TenantScoped, Base):
    """One mailbox (RFC 3501 section 5.1) of an account, with the per-folder sync state of RFC 3501/7162.

    ``sync_state`` is the state machine of :mod:`email_service.sync.imap`: ``initial`` -> ``poll``;
    ``resync`` after a UIDVALIDITY change.  ``total_count`` / ``unread_count`` are the folder's stored messages,
    kept by deltas in the transaction that adds, removes, moves or re-flags them (:func:`folder_counts_delta`: the
    sync, the API's changes and the write-back alike), never recounted on a routine sync.  ``sync_error_kind`` /
    ``sync_error`` / ``sync_error_at`` hold the last error that stopped this folder's sync (e.g. SELECT refused);
    the next good sync of the folder clears them.
    """

    __tablename__ = "email_folders"

    account_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("email_accounts.id", ondelete="CASCADE"), nullable=False
    )
    name: Mapped[str] = mapped_column(String(1000), nullable=False)
    type: Mapped[str] = mapped_column(String(20), nullable=False, default="custom")
    delimiter: Mapped[str | None] = mapped_column(String(8))
    attributes: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    unread_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    total_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    sync_token: Mapped[str | None] = mapped_column(Text)
    is_selectable: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    uidvalidity: Mapped[int | None] = mapped_column(BigInteger)
    uidnext: Mapped[int | None] = mapped_column(BigInteger)
    highestmodseq: Mapped[int | None] = mapped_column(BigInteger)
    sync_state: Mapped[str] = mapped_column(String(20), nullable=False, default="initial")
    last_synced_at: Mapped[int | None] = mapped_column(BigInteger)
    sync_error_kind: Mapped[str | None] = mapped_column(String(64))
    sync_error: Mapped[str | None] = mapped_column(Text)
    sync_error_at: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (
        Index("idx_email_folders_account_type", "account_id", "type"),
        Index("idx_email_folders_tenant_account", "tenant_id", "account_id"),
        Index("uq_email_folders_account_name", "account_id", "name", unique=True),
    )

    @property
    def sync_error_detail(self) -> dict[str, Any] | None:
        """``{"kind", "message", "at"}`` of the last folder sync error (``at`` in epoch ms), or ``None``."""
        if self.sync_error_kind is None:
            return None
        return {"kind": self.sync_error_kind, "message": self.sync_error or "", "at": self.sync_error_at}


def folder_counts_delta(folder_id: uuid.UUID, *, total: int = 0, unread: int = 0) -> Update:
    """``UPDATE email_folders SET total_count = total_count + total, unread_count = unread_count + unread``.

    Run it in the transaction that inserts, deletes or re-flags the folder's messages, so the counts the API shows
    move with the rows and a sync never has to recount them.
    """
    return (
        update(EmailFolder)
        .where(EmailFolder.id == folder_id)
        .values(total_count=EmailFolder.total_count + total, unread_count=EmailFolder.unread_count + unread)
    )


def apply_folder_counts(session: Session, deltas: Mapping[uuid.UUID, Sequence[int]]) -> None:
    """Execute :func:`folder_counts_delta` in ``session`` for each ``{folder id: (total delta, unread delta)}``
    that is not zero (a change touching several folders, e.g. a batch of moves, collects its deltas first)."""
    for folder_id, (total, unread) in deltas.items():
        if total or unread:
            session.execute(folder_counts_delta(folder_id, total=total, unread=unread))


class EmailMessage(TenantScoped, Base):
    """One message as mirrored from the server, with decoded headers and bodies (seed 003 fields)."""

    __tablename__ = "email_messages"

    account_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("email_accounts.id", ondelete="CASCADE"), nullable=False
    )
    folder_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("email_folders.id", ondelete="CASCADE"), nullable=False
    )
    uid: Mapped[int | None] = mapped_column(BigInteger)
    uidvalidity: Mapped[int | None] = mapped_column(BigInteger)
    uidl: Mapped[str | None] = mapped_column(String(255))
    modseq: Mapped[int | None] = mapped_column(BigInteger)
    message_id: Mapped[str | None] = mapped_column(String(998))
    in_reply_to: Mapped[str | None] = mapped_column(String(998))
    references: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    from_name: Mapped[str | None] = mapped_column(String(500))
    from_address: Mapped[str | None] = mapped_column(String(500))
    sender: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    to_addresses: Mapped[list[dict[str, Any]]] = mapped_column(JSON, nullable=False, default=list)
    cc_addresses: Mapped[list[dict[str, Any]]] = mapped_column(JSON, nullable=False, default=list)
    bcc_addresses: Mapped[list[dict[str, Any]]] = mapped_column(JSON, nullable=False, default=list)
    reply_to: Mapped[list[dict[str, Any]]] = mapped_column(JSON, nullable=False, default=list)
    subject: Mapped[str] = mapped_column(Text, nullable=False, default="")
    preview: Mapped[str] = mapped_column(String(512), nullable=False, default="")
    text_body: Mapped[str | None] = mapped_column(Text)
    html_body: Mapped[str | None] = mapped_column(Text)
    flags: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    is_read: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    is_flagged: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    is_answered: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    is_draft: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    has_attachments: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    thread_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    sent_at: Mapped[int | None] = mapped_column(BigInteger)
    received_at: Mapped[int | None] = mapped_column(BigInteger)
    size: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    raw_sha256: Mapped[str | None] = mapped_column(String(64))
    defects: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    #: The server's words when the last write-back of a change to this message failed (migration 0004).
    last_error: Mapped[str | None] = mapped_column(Text)
    #: Drafts only: epoch ms of the last local change (fields, attachments) that the server copy in the Drafts
    #: mailbox does not have yet; ``None`` when the server copy is current.  Whoever re-APPENDs the draft clears
    #: it with ``... WHERE draft_changed_at = <the value it built from>``, so a change made meanwhile is not lost.
    draft_changed_at: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (
        Index("idx_email_messages_folder_received", "folder_id", text("received_at DESC")),
        Index("idx_email_messages_thread_id", "thread_id"),
        Index("idx_email_messages_account_read", "account_id", "is_read"),
        Index("idx_email_messages_message_id", "message_id", "account_id"),
        Index("uq_email_messages_folder_uid", "folder_id", "uidvalidity", "uid", unique=True),
        Index("uq_email_messages_account_uidl", "account_id", "uidl", unique=True),
        Index("idx_email_messages_tenant_account", "tenant_id", "account_id"),
        Index("idx_email_messages_raw_sha256", "raw_sha256"),
    )


#: ``virus_scan_status`` values: not scanned yet, scanned without a finding, a finding (``virus_name``), the
#: scanner failed (retried before a download), scanning was off when the row was made.
SCAN_STATUSES = ("pending", "clean", "infected", "error", "skipped")


class EmailAttachment(TenantScoped, Base):
    """Attachment metadata of a message (seed 003/004).

    ``storage_type`` says where the bytes are: ``message`` -- a part of a mirrored message, ``storage_path`` is
    ``"<raw sha256>#<IMAP part id>"`` (decoded into the blob store under ``content_hash`` on first download);
    ``blob`` -- an upload to a draft, in the blob store under ``content_hash``.  ``content_hash`` is the sha256 of
    the decoded bytes, ``size_bytes`` their length.
    """

    __tablename__ = "email_attachments"

    account_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("email_accounts.id", ondelete="CASCADE"), nullable=False
    )
    message_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("email_messages.id", ondelete="CASCADE"), nullable=False, index=True
    )
    part_id: Mapped[str | None] = mapped_column(String(64))
    filename: Mapped[str | None] = mapped_column(String(500))
    mime_type: Mapped[str] = mapped_column(String(255), nullable=False, default="application/octet-stream")
    size_bytes: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    content_id: Mapped[str | None] = mapped_column(String(998))
    disposition: Mapped[str] = mapped_column(String(20), nullable=False, default="attachment")
    storage_type: Mapped[str] = mapped_column(String(20), nullable=False, default="message")
    storage_path: Mapped[str | None] = mapped_column(String(1000))
    content_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    content_encoding: Mapped[str | None] = mapped_column(String(32))
    virus_scan_status: Mapped[str] = mapped_column(String(16), nullable=False, default="pending")
    virus_name: Mapped[str | None] = mapped_column(String(255))
    virus_scanned_at: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (
        Index(
            "uq_email_attachments_message_upload",
            "message_id",
            "content_hash",
            unique=True,
            sqlite_where=text("storage_type = 'blob'"),
            postgresql_where=text("storage_type = 'blob'"),
        ),
    )
