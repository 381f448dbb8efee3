"""Audit log (seed 003 ``email_audit_log``): who did what to which resource, never secrets."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import JSON, Index, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from email_service.models.base import Base, TenantScoped


class AuditLog(TenantScoped, Base):
    """One audited action (account created/updated/deleted, credentials rotated, sync requested...)."""

    __tablename__ = "email_audit_log"

    user_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    action: Mapped[str] = mapped_column(String(64), nullable=False)
    resource_type: Mapped[str] = mapped_column(String(64), nullable=False)
    resource_id: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    ip_address: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (Index("idx_email_audit_log_tenant_created", "tenant_id", "created_at"),)
