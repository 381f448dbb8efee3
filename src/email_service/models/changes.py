"""The per-account change log (issue 12, DESIGN.md section 5 "Changes for clients").

``email_changes`` holds one row per changed object: ``modseq`` (the account's monotonic change counter, one value
per row, see :mod:`email_service.services.changes`), ``kind`` (``message | folder | sync | outbox``), ``change``
(``created | updated | destroyed``), ``object_id`` and ``created_at`` (epoch ms).  ``email_accounts.change_seq`` is
the last modseq given out and ``change_floor`` the oldest state the pruned log can still answer from.
"""

from __future__ import annotations

import uuid

from sqlalchemy import BigInteger, ForeignKey, Index, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from email_service.models.base import Base, TenantScoped

CHANGE_KINDS = ("message", "folder", "sync", "outbox")
CHANGE_TYPES = ("created", "updated", "destroyed")


class ChangeEntry(TenantScoped, Base):
    """One change of one object of an account, at ``modseq`` (unique per account); ``created_at`` is when."""

    __tablename__ = "email_changes"

    account_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("email_accounts.id", ondelete="CASCADE"), nullable=False
    )
    modseq: Mapped[int] = mapped_column(BigInteger, nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    change: Mapped[str] = mapped_column(String(16), nullable=False)
    object_id: Mapped[uuid.UUID] = mapped_column(Uuid, nullable=False)

    __table_args__ = (
        Index("uq_email_changes_account_modseq", "account_id", "modseq", unique=True),
        Index("idx_email_changes_account_created", "account_id", "created_at"),
    )
