"""One sync or write-back per account at a time (DESIGN.md section 7).

The sync (:mod:`email_service.sync.account`) and the write-back of pending actions (:mod:`email_service.sync.syncback`)
take the same lock, so they never interleave commands on one account's mailboxes; whichever finds it busy runs
again after :data:`LOCK_RETRY_SECONDS` (a :class:`RetryJob`), and the sync queues the write-back when it ends.

PostgreSQL: a session-level advisory lock (``pg_try_advisory_lock``) held on a dedicated connection for the whole
run, so it covers every worker process and host.  SQLite (one host): an exclusive ``flock`` on the account's lock
file next to the database (``<database>.locks/<account id>.lock``), which covers every thread and every process of
the host (the embedded default's job threads, a Celery worker's pool processes, the ``sync`` command).  Both are
released by the operating system when the holder dies, so a killed worker never leaves an account locked.
"""

from __future__ import annotations

import fcntl
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import text

from email_service.db import Database
from email_service.fs import create_private_file, private_dir

_LOCK_NAMESPACE = 0x454D  # "EM": keeps our advisory keys apart from other users of the database
#: Seconds a job whose account lock is busy (a sync or write-back holds it) waits before it tries again
#: (a :class:`RetryJob`).
LOCK_RETRY_SECONDS = 5.0


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
    path = _lock_file(db, account_id)
    try:
        descriptor = create_private_file(path, exclusive=True)
    except FileExistsError:
        descriptor = os.open(path, os.O_RDWR)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            taken = True
        except BlockingIOError:
            taken = False
        yield taken  # closing the descriptor releases the lock
    finally:
        os.close(descriptor)


def account_lock_is_free(db: Database, account_id: uuid.UUID) -> bool:
    """True when no sync holds the account's lock now (probed by taking and releasing it at once)."""
    with account_sync_lock(db, account_id) as taken:
        return taken


def _lock_file(db: Database, account_id: uuid.UUID) -> Path:
    database = db.engine.url.database
    if not database or database == ":memory:":
        raise RuntimeError("account locks need a PostgreSQL database or an SQLite database file")
    return private_dir(Path(f"{database}.locks")) / f"{account_id}.lock"
