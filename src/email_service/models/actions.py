"""Pending actions: local changes waiting to be written back to the mail server (DESIGN.md section 7).

Every accepted change (flags and keywords, move, delete, expunge, folder create/rename/delete) is one row here,
written in the same transaction as the local update it mirrors, with a per-account ``seq`` that orders the
write-back.  The ``syncback_account`` job works an account's ``pending`` rows in ``seq`` order and ends each one
``applied`` or ``failed`` (with the server's words in ``error``).

Where on the server a message action acts is recorded in the row itself: ``mailbox`` (the server-side name at the
time the action runs: every earlier action of the account has been applied by then), ``uidvalidity`` and ``uid``.
``uid`` is ``None`` while an earlier move of the same message is still pending (its new UID is unknown until the
server answers with COPYUID, RFC 4315); the job fills it in when that move is applied.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from email_service.models.base import Base, TenantScoped

#: Kinds of pending actions: message flags/keywords, move (also delete to Trash), expunge, folder CRUD.
ACTION_KINDS = ("flags", "move", "expunge", "folder_create", "folder_rename", "folder_delete", "append")
#: ``pending`` until the job has worked it; then ``applied`` or ``failed`` (permanent error, recorded).
ACTION_STATES = ("pending", "applied", "failed")
#: Kinds that take a message out of its mailbox on the server.
REMOVING_KINDS = ("move", "expunge")


class PendingAction(TenantScoped, Base):
    """One local change to be written back, in per-account order ``seq``.

    ``details`` by kind: ``flags`` ``{"add": [...], "remove": [...]}`` (IMAP flags, RFC 3501 section 2.3.2);
    ``move`` ``{"reason": "move" | "trash"}``; ``folder_create`` ``{"name"}``; ``folder_rename`` ``{"from", "to"}``;
    ``folder_delete`` ``{"name"}`` (full server-side names, Unicode); ``append`` (issue 9: a draft or a Sent copy
    into ``mailbox``) ``{"sha256", "flags", "messageId", "replaces"}``, with ``uid`` the earlier server copy of the
    draft to remove after the APPEND (see :mod:`email_service.sync.syncback_append`).  ``base_modseq`` is the
    highest MODSEQ the user had seen of the source mailbox when the change was accepted (RFC 7162 UNCHANGEDSINCE).
    ``next_attempt_at`` (epoch ms) is when the scheduler should queue the account's write-back again if the
    action is still pending then.
    """

    __tablename__ = "email_pending_actions"

    account_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("email_accounts.id", ondelete="CASCADE"), nullable=False
    )
    seq: Mapped[int] = mapped_column(BigInteger, nullable=False)
    kind: Mapped[str] = mapped_column(String(20), nullable=False)
    state: Mapped[str] = mapped_column(String(20), nullable=False, default="pending")
    message_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    folder_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    mailbox: Mapped[str | None] = mapped_column(String(1000))
    uidvalidity: Mapped[int | None] = mapped_column(BigInteger)
    uid: Mapped[int | None] = mapped_column(BigInteger)
    target_folder_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    target_mailbox: Mapped[str | None] = mapped_column(String(1000))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    base_modseq: Mapped[int | None] = mapped_column(BigInteger)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    next_attempt_at: Mapped[int] = mapped_column(BigInteger, nullable=False)
    error_kind: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    applied_at: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (
        Index("uq_email_pending_actions_account_seq", "account_id", "seq", unique=True),
        Index("idx_email_pending_actions_account_state_seq", "account_id", "state", "seq"),
        Index("idx_email_pending_actions_message", "message_id", "state"),
        Index("idx_email_pending_actions_folder", "folder_id", "state"),
        Index("idx_email_pending_actions_due", "tenant_id", "state", "next_attempt_at"),
    )
