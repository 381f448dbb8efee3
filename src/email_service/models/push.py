"""Push leases (RFC 2177 IDLE watchers, DESIGN.md section 7): which process watches an account, until when."""

from __future__ import annotations

import uuid

from sqlalchemy import BigInteger, ForeignKey, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from email_service.models.base import Base, TenantScoped


class PushLease(TenantScoped, Base):
    """The lease of one account's IDLE watcher: at most one row per account (``account_id`` is unique).

    ``holder`` names the process (host, pid, random token); ``expires_at`` (epoch ms, the database's clock) is
    pushed forward by the holder while it keeps the watcher; once it has passed, any process may take the lease
    (:mod:`email_service.sync.push_lease`).
    """

    __tablename__ = "email_push_leases"

    account_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("email_accounts.id", ondelete="CASCADE"), nullable=False, unique=True
    )
    holder: Mapped[str] = mapped_column(String(200), nullable=False)
    expires_at: Mapped[int] = mapped_column(BigInteger, nullable=False)
