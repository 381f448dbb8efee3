"""One sync or write-back per account at a time (DESIGN.md section 7).

The sync (:mod:`email_service.sync.imap`) and the write-back of pending actions (:mod:`email_service.sync.syncback`)
take the same lock, so they never interleave commands on one account's mailboxes; whichever finds it busy runs
again after :data:`LOCK_RETRY_SECONDS` (a :class:`RetryJob`), and the sync queues the write-back when it ends.

PostgreSQL: a session-level advisory lock (``pg_try_advisory_lock``) held on a dedicated connection for the whole
run, so it covers every worker process and host.  SQLite (embedded default, one process): an in-process lock.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import text

from email_service.db import Database

_local_locks: set[uuid.UUID] = set()
_local_guard = threading.Lock()
_LOCK_NAMESPACE = 0x454D  # "EM": keeps our advisory keys apart from other users of the database
#: Seconds a job waits before trying again when the account's lock is busy (sync and write-back share it).
LOCK_RETRY_SECONDS = 2.0


def _advisory_key(account_id: uuid.UUID) -> int:
    return (account_id.int & 0x7FFF_FFFF_FFFF) ^ (_LOCK_NAMESPACE << 47)


@contextmanager
def account_sync_lock(db: Database, account_id: uuid.UUID) -> Iterator[bool]:
    """Try to take the account's sync lock; yields ``True`` when taken, ``False`` when another sync holds it."""
    if db.is_postgres:
        with db.engine.connect() as connection:
            key = _advisory_key(account_id)
            taken = bool(connection.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar_one())
            connection.commit()
            try:
                yield taken
            finally:
                if taken:
                    connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                    connection.commit()
        return
    with _local_guard:
        taken = account_id not in _local_locks
        if taken:
            _local_locks.add(account_id)
    try:
        yield taken
    finally:
        if taken:
            with _local_guard:
                _local_locks.discard(account_id)
