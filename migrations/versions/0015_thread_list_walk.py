"""The thread list walks messages newest first instead of grouping every message (issue 11).

``services/thread_list.py`` finds a page of threads by walking an account's (or a folder's) messages newest first
and keeping each thread's first occurrence: its newest message, the *head* (the message with no newer message of
its thread in the same scope).  The walk reads a few hundred index entries for a page; the head test is one index
seek per entry.  Indexes on ``email_messages``:

* ``idx_email_messages_account_k_thread_walk`` ``(account_id, received_at, thread_id, id)`` and
  ``idx_email_messages_folder_k_thread_walk`` ``(folder_id, received_at, thread_id, id)``: the walks, covering on
  SQLite (no table row read: a message row with its bodies spans overflow pages).  ``thread_id`` before ``id`` makes
  threads whose newest messages share a ``received_at`` come in ``thread_id`` order, as the old ``GROUP BY`` did.
* ``idx_email_messages_account_thread_k_received`` ``(account_id, thread_id, received_at, id)``: the head test of the
  account-wide walk (``NOT EXISTS`` a newer message of the thread) and the per-thread counts of a page.  It replaces
  ``idx_email_messages_account_thread`` ``(account_id, thread_id)`` of migration 0007, its prefix (the threading code's
  ``thread_id IN (...)`` lookups and merges use it as they used that one).
* ``idx_email_messages_folder_thread_k_received`` ``(folder_id, thread_id, received_at, id)``: the head test of the
  folder walk and the folder's capped thread count.

Same statements on SQLite and PostgreSQL.  Net three index entries more per message written.

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

_INDEXES = (
    ("idx_email_messages_account_k_thread_walk", "account_id, received_at, thread_id, id"),
    ("idx_email_messages_folder_k_thread_walk", "folder_id, received_at, thread_id, id"),
    ("idx_email_messages_account_thread_k_received", "account_id, thread_id, received_at, id"),
    ("idx_email_messages_folder_thread_k_received", "folder_id, thread_id, received_at, id"),
)
_REPLACED = ("idx_email_messages_account_thread", "account_id, thread_id")


def upgrade() -> None:
    for name, keys in _INDEXES:
        op.execute(f"CREATE INDEX {name} ON email_messages ({keys})")
    op.execute(f"DROP INDEX IF EXISTS {_REPLACED[0]}")
    # Statistics for the new indexes at once, as after a bulk sync (services/search_index.refresh_statistics).
    # SQLite: without a sqlite_stat1 row for them, the planner took the folder walk index for the message list's
    # folder pages (a temporary B-tree for the id tie-break and a table row per entry: p50 2.2x on the cursor page
    # at 100,000 messages), instead of the list's own (folder_id or account_id, received_at, id) index.
    if op.get_bind().dialect.name == "sqlite":
        op.execute("PRAGMA analysis_limit = 1000")
    op.execute("ANALYZE email_messages")


def downgrade() -> None:
    """Migration 0013's indexes again: 0007's ``(account_id, thread_id)`` back, the four walk indexes dropped."""
    op.execute(f"CREATE INDEX {_REPLACED[0]} ON email_messages ({_REPLACED[1]})")
    for name, _keys in _INDEXES:
        op.execute(f"DROP INDEX IF EXISTS {name}")
