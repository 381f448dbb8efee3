"""Webhooks (issue 12): subscriptions, their per-account cursors in the change log, and deliveries.

* ``email_webhooks``: ``url``, ``events`` (patterns such as ``message.created``, ``folder.*``, ``*``), the signing
  secret (encrypted like mail passwords, bound to tenant and webhook id), ``user_id`` (``NULL``: every account of the
  tenant, made by an admin), ``is_enabled``, ``failure_streak`` and ``disabled_at``.
* ``email_webhook_cursors``: the last modseq of each account's change log already turned into deliveries.
* ``email_webhook_deliveries``: one POST to make (its id is the unique delivery id sent in ``X-Webhook-Id``), its
  JSON ``payload``, ``state`` (``pending | delivered | failed``), ``attempts``, ``next_attempt_at``, the last answer.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Index, Integer, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from email_service.models.base import Base, TenantScoped

DELIVERY_STATES = ("pending", "delivered", "failed")


class Webhook(TenantScoped, Base):
    """One webhook subscription of a user (or of the whole tenant when ``user_id`` is ``NULL``)."""

    __tablename__ = "email_webhooks"

    user_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    url: Mapped[str] = mapped_column(String(2000), nullable=False)
    events: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    secret_ciphertext: Mapped[str] = mapped_column(Text, nullable=False)
    is_enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    failure_streak: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    disabled_at: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (Index("idx_email_webhooks_tenant_user", "tenant_id", "user_id"),)


class WebhookCursor(TenantScoped, Base):
    """How far one webhook has read one account's change log (``modseq``)."""

    __tablename__ = "email_webhook_cursors"

    webhook_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("email_webhooks.id", ondelete="CASCADE"), nullable=False
    )
    account_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("email_accounts.id", ondelete="CASCADE"), nullable=False
    )
    modseq: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)

    __table_args__ = (Index("uq_email_webhook_cursors_webhook_account", "webhook_id", "account_id", unique=True),)


class WebhookDelivery(TenantScoped, Base):
    """One event to POST to one webhook, until it is acknowledged (2xx) or given up."""

    __tablename__ = "email_webhook_deliveries"

    webhook_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("email_webhooks.id", ondelete="CASCADE"), nullable=False
    )
    account_id: Mapped[uuid.UUID] = mapped_column(Uuid, nullable=False)
    event: Mapped[str] = mapped_column(String(32), nullable=False)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False, default="pending")
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    next_attempt_at: Mapped[int] = mapped_column(BigInteger, nullable=False)
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (
        Index("idx_email_webhook_deliveries_webhook_created", "webhook_id", "created_at"),
        Index("idx_email_webhook_deliveries_due", "tenant_id", "state", "next_attempt_at"),
    )
