"""Search docs laid out for the newest-first walk (issue 11).

SQLite: ``idx_email_search_docs_walk`` (migration 0011) gains ``message_id`` as its last column.  ``is:read`` /
``is:unread`` and ``in:`` probe the list's indexes of ``email_messages`` with the doc's ``message_id``, which the walk
read from each candidate doc's table row (about 3 KB, a page each); now the walk is covering for them too (measured:
the bench's ``combined`` query 91-108 -> 54-56 ms in the SQLite shell).  About 33 bytes a doc more.

PostgreSQL: ``tsv`` kept in the row, the body terms out of it, and the rows in ``(account_id, received_at)`` order.

A search whose word is common walks an account's docs newest first on ``idx_email_search_docs_account`` and matches
each doc's ``tsv`` (``services/search_sql.py``).  With the default storage a doc row (about 2.3 KB) is over the 2 KB
TOAST threshold, so PostgreSQL compressed ``body_terms`` in the row and moved ``tsv`` (about 1.9 KB, which pglz does
not compress) to the TOAST table: every doc the walk tested cost a TOAST index lookup and a TOAST page.  Here:

* ``tsv`` ``STORAGE MAIN``: kept in the row (moved out only if the row would not fit a page, a doc of some 8 KB of
  words); no query reads ``body_terms`` on PostgreSQL but the page's 50 snippets, so it goes out of the row
  (``STORAGE EXTERNAL``, uncompressed: read whole, no decompression).
* ``CLUSTER`` on ``idx_email_search_docs_account`` rewrites the table once, which applies the new storage to the
  existing rows and stores each account's docs in date order (new docs arrive roughly in that order anyway).  It
  holds an ``ACCESS EXCLUSIVE`` lock on ``email_search_docs`` while it runs: about 16 s for 100,000 docs here.

Measured on a 100,000-message mailbox (``bench/README.md``), ``EXPLAIN ANALYZE`` as the app role of the walk's
statement: a common word 12-17 ms -> 4 ms, ``subject:`` 30 -> 15 ms, a phrase 67 -> 50 ms.  The table grows from
136 MB + 179 MB TOAST to 249 MB + 102 MB.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


_WALK_INDEX = "idx_email_search_docs_walk"
_WALK_COLUMNS = "account_id, received_at, doc_id, has_attachments, size, from_text, to_text, cc_text"


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute(f"DROP INDEX IF EXISTS {_WALK_INDEX}")
        op.execute(f"CREATE INDEX {_WALK_INDEX} ON email_search_docs ({_WALK_COLUMNS}, message_id)")
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        "ALTER TABLE email_search_docs ALTER COLUMN tsv SET STORAGE MAIN, ALTER COLUMN body_terms SET STORAGE EXTERNAL"
    )
    op.execute("CLUSTER email_search_docs USING idx_email_search_docs_account")
    op.execute("ANALYZE email_search_docs")


def downgrade() -> None:
    """SQLite: the walk index of 0011 again; PostgreSQL: the default storage again (the rows keep their layout until
    they are rewritten)."""
    if op.get_bind().dialect.name == "sqlite":
        op.execute(f"DROP INDEX IF EXISTS {_WALK_INDEX}")
        op.execute(f"CREATE INDEX {_WALK_INDEX} ON email_search_docs ({_WALK_COLUMNS})")
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        "ALTER TABLE email_search_docs ALTER COLUMN tsv SET STORAGE EXTENDED, "
        "ALTER COLUMN body_terms SET STORAGE EXTENDED"
    )
    op.execute("ALTER TABLE email_search_docs SET WITHOUT CLUSTER")
