"""Sending (issue 9, DESIGN.md section 8): the outbox and the idempotency keys of send requests.

An :class:`OutboxItem` is one message to send, built once when the send is accepted: its raw RFC 5322 bytes (no
Bcc header) are in the blob store under ``raw_sha256``, its Message-ID is fixed (``rfc_message_id``), and its SMTP
envelope is ``mail_from`` / ``rcpt_tos`` (Bcc recipients only here).  Every attempt sends exactly those bytes.

Status::

    scheduled --(send_at reached)--> queued --(claimed, committed BEFORE the SMTP transaction)--> sending
    queued/scheduled --DELETE--> cancelled
    sending --> sent | partially_sent (some recipients refused) | failed (permanent, deadline, OutcomeUnknown)
    sending --(transient failure)--> queued (next_attempt_at later)

An :class:`IdempotencyKey` ties a user's ``Idempotency-Key`` header and the hash of the request body to the item
it created, for 24 hours.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from email_service.models.base import Base, TenantScoped

OUTBOX_STATUSES = ("queued", "scheduled", "sending", "sent", "partially_sent", "failed", "cancelled")
#: Statuses an item can still leave by being sent (or cancelled).
WAITING_STATUSES = ("queued", "scheduled")
#: Statuses that end an item.
FINAL_STATUSES = ("sent", "partially_sent", "failed", "cancelled")


class OutboxItem(TenantScoped, Base):
    """One message to send (see the module docstring).

    ``send_at`` / ``next_attempt_at`` / ``sending_started_at`` / ``finished_at`` are epoch ms.  ``delivery`` is
    the seed-002 ``DeliveryResult.to_dict()`` of the last attempt.  ``draft_id`` is the draft this was sent from
    (removed after success), ``reply_to_id`` the message answered (``\\Answered`` after success).
    """

    __tablename__ = "email_outbox"

    account_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("email_accounts.id", ondelete="CASCADE"), nullable=False
    )
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    send_at: Mapped[int] = mapped_column(BigInteger, nullable=False)
    next_attempt_at: Mapped[int] = mapped_column(BigInteger, nullable=False)
    sending_started_at: Mapped[int | None] = mapped_column(BigInteger)
    finished_at: Mapped[int | None] = mapped_column(BigInteger)
    rfc_message_id: Mapped[str] = mapped_column(String(998), nullable=False)
    raw_sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    size: Mapped[int] = mapped_column(BigInteger, nullable=False)
    subject: Mapped[str] = mapped_column(Text, nullable=False, default="")
    mail_from: Mapped[str] = mapped_column(String(320), nullable=False)
    rcpt_tos: Mapped[list[str]] = mapped_column(JSON, nullable=False)
    delivery: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error_kind: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    draft_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    reply_to_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    sent_copy_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)

    __table_args__ = (
        Index("idx_email_outbox_account_status", "account_id", "status"),
        Index("idx_email_outbox_due", "tenant_id", "status", "next_attempt_at"),
        Index("idx_email_outbox_user", "tenant_id", "user_id", "created_at"),
    )


class IdempotencyKey(TenantScoped, Base):
    """``Idempotency-Key`` of a send request: ``(user, key)`` unique; ``body_sha256`` of the request that made
    ``outbox_id``; ``expires_at`` epoch ms (24 hours after)."""

    __tablename__ = "email_idempotency_keys"

    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, nullable=False)
    key: Mapped[str] = mapped_column(String(255), nullable=False)
    body_sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    outbox_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("email_outbox.id", ondelete="CASCADE"), nullable=False
    )
    expires_at: Mapped[int] = mapped_column(BigInteger, nullable=False)

    __table_args__ = (Index("uq_email_idempotency_keys_user_key", "tenant_id", "user_id", "key", unique=True),)
