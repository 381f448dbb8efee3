"""Sync runs of an account: what ``GET /accounts/{id}/sync`` reports (state, counts, last error)."""

from __future__ import annotations

import uuid

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text, Uuid, text
from sqlalchemy.orm import Mapped, mapped_column

from email_service.models.base import Base, TenantScoped

SYNC_RUN_STATES = ("queued", "running", "succeeded", "failed")


class SyncRun(TenantScoped, Base):
    """One requested or scheduled sync of an account, where it is while it runs, and its outcome.

    Progress (written per batch of messages and at most about once a second otherwise): ``folders_total`` folders
    to sync, ``folders_done`` of them finished (``folders_synced`` without error, ``folders_failed`` with one),
    ``current_folder`` and ``folder_fetched`` of its ``folder_expected`` new messages.  A run whose folders
    partly failed still ends ``succeeded``; the failures are on the folders (``email_folders.sync_error*``).
    """

    __tablename__ = "email_sync_runs"

    account_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("email_accounts.id", ondelete="CASCADE"), nullable=False
    )
    state: Mapped[str] = mapped_column(String(20), nullable=False, default="queued")
    trigger: Mapped[str] = mapped_column(String(20), nullable=False, default="api")
    started_at: Mapped[int | None] = mapped_column(BigInteger)
    finished_at: Mapped[int | None] = mapped_column(BigInteger)
    folders_synced: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    messages_added: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    messages_updated: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    messages_removed: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    folders_total: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")
    folders_done: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")
    folders_failed: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")
    current_folder: Mapped[str | None] = mapped_column(String(1000))
    folder_expected: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")
    folder_fetched: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")
    error_kind: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    #: The one mailbox this run covers (a push of that folder), or ``None`` for every folder (migration 0006).
    folder: Mapped[str | None] = mapped_column(Text)
    #: A run asked for while this one was active and could no longer see the change (a push during the run):
    #: queued when this run ends, with this trigger and folder (``None``: every folder).
    follow_up_trigger: Mapped[str | None] = mapped_column(String(20))
    follow_up_folder: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index("idx_email_sync_runs_account_created", "account_id", "created_at"),
        # At most one active run per account (migration 0002): the database, not a read-then-write, decides.
        Index(
            "uq_email_sync_runs_one_active",
            "account_id",
            unique=True,
            sqlite_where=text("state IN ('queued', 'running')"),
            postgresql_where=text("state IN ('queued', 'running')"),
        ),
    )
