"""Mail accounts (seed 000 / 003 ``email_accounts``), their encrypted credentials and the tenant registry."""

from __future__ import annotations

import uuid

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Text, Uuid, func, text, true
from sqlalchemy.orm import Mapped, mapped_column

from email_service.models.base import Base, TenantScoped, now_ms


class Tenant(Base):
    """Registry of tenants that own at least one account (no RLS: holds ids only).

    The scheduler walks it to look for due accounts tenant by tenant, so that it never needs to bypass RLS.
    """

    __tablename__ = "email_tenants"

    tenant_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    created_at: Mapped[int] = mapped_column(BigInteger, nullable=False, default=now_ms)


class EmailAccount(TenantScoped, Base):
    """One user's mail account: IMAP or POP3 for reading, optional SMTP for sending (seed 000 fields)."""

    __tablename__ = "email_accounts"

    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, nullable=False, index=True)
    account_name: Mapped[str] = mapped_column(String(255), nullable=False)
    email_address: Mapped[str] = mapped_column(String(255), nullable=False)
    protocol: Mapped[str] = mapped_column(String(20), nullable=False)
    hostname: Mapped[str] = mapped_column(String(255), nullable=False)
    port: Mapped[int] = mapped_column(Integer, nullable=False)
    encryption: Mapped[str] = mapped_column(String(20), nullable=False, default="tls")
    username: Mapped[str] = mapped_column(String(255), nullable=False)
    credential_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    smtp_hostname: Mapped[str | None] = mapped_column(String(255))
    smtp_port: Mapped[int | None] = mapped_column(Integer)
    smtp_encryption: Mapped[str | None] = mapped_column(String(20))
    smtp_username: Mapped[str | None] = mapped_column(String(255))
    is_sync_enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    sync_interval: Mapped[int] = mapped_column(Integer, nullable=False, default=300)
    last_sync_at: Mapped[int | None] = mapped_column(BigInteger)
    is_syncing: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    is_enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    deleted_at: Mapped[int | None] = mapped_column(BigInteger)
    #: Last ``seq`` given to a pending action of this account (migration 0004): incremented under the row lock,
    #: so actions are numbered in commit order.
    action_seq: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0, server_default=text("0"))
    #: APPEND a copy of each sent message to the Sent folder (issue 9); false when the SMTP server keeps its own.
    save_sent_copy: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True, server_default=true())
    #: Last modseq of the account's change log (migration 0010): bumped with ``UPDATE ... RETURNING`` in the
    #: transaction of each change, so that the account's changes are numbered in commit order.
    change_seq: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0, server_default=text("0"))
    #: Oldest state the (pruned) change log can answer ``/changes`` from; older ones get 410.
    change_floor: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0, server_default=text("0"))

    __table_args__ = (
        Index("idx_user_tenant", "user_id", "tenant_id"),
        Index("idx_email_tenant", "email_address", "tenant_id"),
        Index("idx_tenant_enabled", "tenant_id", "is_enabled"),
        Index("idx_email_accounts_sync_enabled", "tenant_id", "is_sync_enabled", "last_sync_at"),
        Index(
            "uq_email_accounts_live_address",
            "tenant_id",
            "user_id",
            func.lower(text("email_address")),
            unique=True,
            sqlite_where=text("deleted_at IS NULL"),
            postgresql_where=text("deleted_at IS NULL"),
        ),
    )


class EmailCredential(TenantScoped, Base):
    """Encrypted mail password of one account (DESIGN.md section 2): ciphertext only, never plaintext."""

    __tablename__ = "email_credentials"

    account_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("email_accounts.id", ondelete="CASCADE"), nullable=False, index=True
    )
    #: ``v1:<key id>:<base64(nonce || AES-GCM ciphertext)>``, AAD = tenant id + account id.
    ciphertext: Mapped[str] = mapped_column(Text, nullable=False)
    key_id: Mapped[str] = mapped_column(String(16), nullable=False)
