"""Declarative base, the :class:`TenantScoped` mixin and column helpers shared by every table family.

Times are integer epoch milliseconds (UTC), ids are UUIDs (native ``uuid`` on PostgreSQL, 32-char text on SQLite),
as DESIGN.md sections 5 and 6 and seed 003 require.
"""

from __future__ import annotations

import time
import uuid

from sqlalchemy import BigInteger, MetaData, Uuid
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def now_ms() -> int:
    """Current time as integer epoch milliseconds (UTC)."""
    return time.time_ns() // 1_000_000


class Base(DeclarativeBase):
    """Declarative base of all tables; constraint names are deterministic for Alembic."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class TenantScoped:
    """Mixin for every tenant table: a UUID primary key, ``tenant_id`` and ms timestamps.

    On PostgreSQL each such table has row-level security on ``tenant_id`` (see the first migration).
    """

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[uuid.UUID] = mapped_column(Uuid, nullable=False, index=True)
    created_at: Mapped[int] = mapped_column(BigInteger, nullable=False, default=now_ms)
    updated_at: Mapped[int] = mapped_column(BigInteger, nullable=False, default=now_ms, onupdate=now_ms)
