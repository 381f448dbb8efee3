"""Push leases: exactly one IDLE watcher per account across every process (DESIGN.md section 7).

A lease is a row of ``email_push_leases`` (migration 0006): ``account_id`` (unique), ``holder`` (the process),
``expires_at`` (epoch ms).  A process takes or renews its leases with one statement per tenant::

    INSERT ... ON CONFLICT (account_id) DO UPDATE SET holder = <me>, expires_at = <now + ttl>
        WHERE email_push_leases.holder = <me> OR email_push_leases.expires_at < <now>
        RETURNING account_id

so a lease goes to a new holder only once it has expired, and the rows returned are exactly the leases the caller
holds now (a lease lost to another process is simply not returned).  ``now`` is the database's clock
(``clock_timestamp()`` on PostgreSQL, ``julianday('now')`` on SQLite), never a process's, so processes on hosts
whose clocks disagree still agree on expiry.  A process that stops releases its leases (a DELETE); one that dies
stops renewing and its leases pass to others after ``ttl``.  The rows are tenant rows under RLS like any other.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection

from sqlalchemy import BigInteger, ColumnElement, cast, delete, func, or_, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from email_service.models import PushLease, now_ms


def database_now_ms(session: Session) -> ColumnElement[int]:
    """The database's current time in epoch milliseconds, as a SQL expression."""
    if session.get_bind().dialect.name == "postgresql":
        return cast(func.floor(func.extract("epoch", func.clock_timestamp()) * 1000), BigInteger)
    return cast((func.julianday("now") - 2440587.5) * 86400000.0, BigInteger)


def hold_leases(
    session: Session,
    *,
    tenant_id: uuid.UUID,
    account_ids: Collection[uuid.UUID],
    holder: str,
    ttl_seconds: float,
) -> set[uuid.UUID]:
    """Take (if free or expired) or renew (if ours) the leases of ``account_ids`` for ``ttl_seconds``.

    Returns the accounts whose lease ``holder`` holds now; the others are held by another live process.
    """
    if not account_ids:
        return set()
    now = database_now_ms(session)
    expires = now + int(ttl_seconds * 1000)
    stamp = now_ms()
    insert = postgresql_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    values = insert(PushLease).values(
        [
            {
                "id": uuid.uuid4(),
                "tenant_id": tenant_id,
                "account_id": account_id,
                "holder": holder,
                "expires_at": expires,
                "created_at": stamp,
                "updated_at": stamp,
            }
            for account_id in account_ids
        ]
    )
    statement = values.on_conflict_do_update(
        index_elements=[PushLease.account_id],
        set_={"holder": holder, "expires_at": expires, "updated_at": stamp},
        where=or_(PushLease.holder == holder, PushLease.expires_at < now),
    ).returning(PushLease.account_id)
    return set(session.execute(statement).scalars())


def release_leases(session: Session, *, account_ids: Collection[uuid.UUID], holder: str) -> int:
    """Give up ``holder``'s leases of ``account_ids`` (others' leases are left alone).  Returns how many."""
    if not account_ids:
        return 0
    result = session.execute(
        delete(PushLease).where(PushLease.holder == holder, PushLease.account_id.in_(list(account_ids)))
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def leases_held_elsewhere(session: Session, *, tenant_id: uuid.UUID, holder: str) -> set[uuid.UUID]:
    """Accounts of ``tenant_id`` whose lease another holder has and has not let expire."""
    return set(
        session.execute(
            select(PushLease.account_id).where(
                PushLease.tenant_id == tenant_id,
                PushLease.holder != holder,
                PushLease.expires_at >= database_now_ms(session),
            )
        ).scalars()
    )
