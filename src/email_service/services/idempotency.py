"""``Idempotency-Key`` of send requests (issue 9): a retried request gives the same outbox item, never a second send.

A key belongs to one user (per tenant) and lives 24 hours (:data:`KEY_TTL_MS`).  The request is fingerprinted by
:func:`request_hash` (the route and the canonical JSON body); within the key's life:

* the same key and the same fingerprint -> the outbox item the first request created (:func:`known_item`);
* the same key and another fingerprint -> :class:`Conflict` (409);
* an expired key is forgotten and the request proceeds as a new one.

The key row is inserted in the same transaction as the outbox item (:func:`remember`): of two concurrent requests
with one key, the second fails on the unique index and the caller answers with the first one's item.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from email_service.errors import Conflict, InvalidInput
from email_service.models import IdempotencyKey, now_ms
from email_service.security.tokens import Principal

#: How long a key is kept (ms): 24 hours.
KEY_TTL_MS = 24 * 3600 * 1000
#: Longest accepted key.
MAX_KEY_LENGTH = 255


def check_key(key: str | None) -> str | None:
    """The header's value, or ``None`` when absent.  Raises :class:`InvalidInput` for an empty, too long or
    non-printable key."""
    if key is None:
        return None
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable() or not key.isascii():
        raise InvalidInput(
            f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable ASCII characters",
            details={"Idempotency-Key": ["invalid"]},
        )
    return key


def request_hash(route: str, body: Any) -> str:
    """sha256 hex of ``route`` and the canonical JSON of ``body`` (sorted keys)."""
    canonical = json.dumps({"route": route, "body": body}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def known_item(session: Session, principal: Principal, key: str, body_sha256: str) -> uuid.UUID | None:
    """The outbox item of a live key with this fingerprint, ``None`` for an unknown (or expired, now deleted) key.

    Raises:
        Conflict: the key was used with another request body.
    """
    row = session.execute(
        select(IdempotencyKey).where(
            IdempotencyKey.tenant_id == principal.tenant_id,
            IdempotencyKey.user_id == principal.user_id,
            IdempotencyKey.key == key,
        )
    ).scalar_one_or_none()
    if row is None:
        return None
    if row.expires_at <= now_ms():
        session.execute(delete(IdempotencyKey).where(IdempotencyKey.id == row.id))
        session.flush()
        return None
    if row.body_sha256 != body_sha256:
        raise Conflict("Idempotency-Key was already used with another request body")
    return row.outbox_id


def remember(session: Session, principal: Principal, key: str, body_sha256: str, outbox_id: uuid.UUID) -> None:
    """Store the key for 24 hours, in the transaction that creates the outbox item."""
    session.add(
        IdempotencyKey(
            tenant_id=principal.tenant_id,
            user_id=principal.user_id,
            key=key,
            body_sha256=body_sha256,
            outbox_id=outbox_id,
            expires_at=now_ms() + KEY_TTL_MS,
        )
    )
    session.flush()
