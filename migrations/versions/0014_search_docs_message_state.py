"""The message state a search filters on, in the doc row (issue 11): ``is_read``, ``is_flagged``, ``is_answered``,
``is_draft`` and ``folder_id`` on ``email_search_docs``, kept in step with ``email_messages`` by one trigger.

Why: on PostgreSQL ``is:`` and ``in:`` read the (wide) ``email_messages`` row, or a hash of the account's messages
with that flag, for every candidate doc of a search (``bench/README.md``: ``(project OR client) from:example3
-invoice is:unread`` 125 ms p95 at 100,000 messages, ``is:unread schedule`` 52 ms).  With the state in the doc row
the search tests it where it already is.

How they stay true -- one mechanism every writer passes through, not an edit in each writer (sync flag updates,
CONDSTORE changes, write-back, moves, drafts, sending):

* a new doc row is written with its message's state (``services/search_index.doc_row``: the one path that makes
  doc rows, from the message row being inserted);
* ``AFTER UPDATE OF is_read, is_flagged, is_answered, is_draft, folder_id ON email_messages``, for a row whose
  values changed (``WHEN``), copies them into the message's doc row: a PL/pgSQL trigger function on PostgreSQL (it
  runs as the updating role, so under the same tenant policy as the update itself), a trigger on SQLite;
* a message deleted deletes its doc row by the foreign key's cascade, as before.

PostgreSQL: migration 0012's ``BEFORE UPDATE`` trigger that fills ``tsv`` for a writer sending none fired on *every*
update of a doc row, and its ``WHEN`` compares the four term columns (reading ``body_terms`` out of line): it is
narrowed to ``UPDATE OF`` the term columns and ``tsv``, so the state copy above never fires it.

SQLite: the FTS5 update trigger of migration 0007 (``email_search_docs_au``) re-indexed a doc on *any* update of its
row; it is narrowed to updates of the four term columns, so a flag change does not rewrite the doc's FTS5 entries.
The columns are added at the end of the row (after ``body_terms``); SQLite's search keeps probing the message
list's covering indexes for ``is:``/``in:`` (``services/search_sql.py``).

PostgreSQL, the walk of a search without words: since migration 0013 a doc row is ~2.3 KB (``tsv`` in the row),
so a newest-first walk that tests only addresses, size, attachments, flags or folder (``from:nder4``,
``has:attachment``, ``larger:2K``, ``is:unread``) read twice the pages it read before.
``idx_email_search_docs_metadata`` on ``(account_id, received_at, doc_id) INCLUDE`` the columns those tests read (and
``tenant_id``, for the row policy) lets that walk be an index-only scan: about 200 bytes a doc.  Index-only where
the visibility map has the page as all-visible (autovacuum sets it; a doc written or changed since then costs a heap
visit, as before).

Backfill.  SQLite: one ``UPDATE`` from the message rows.  PostgreSQL: one rewrite of the table, ``ALTER COLUMN ...
TYPE ... USING`` a lookup of the doc's message for each new column (helper functions dropped after), with ``FORCE ROW
LEVEL SECURITY`` lifted for the migration's transaction (the owner would otherwise see no tenant's rows) and put
back.  An ``UPDATE`` would write a second version of every row (scattered, twice the table until a vacuum) and a
``CLUSTER`` in the same transaction cannot drop the old versions (measured: 228 -> 486 MB); the rewrite keeps the
rows in the order migration 0013 left them, as compact, and rebuilds each index once.  It holds an ``ACCESS
EXCLUSIVE`` lock on ``email_search_docs`` meanwhile (``bench/README.md`` has the time per 100,000 docs).

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

#: The ``email_messages`` columns copied into the doc row, and kept in step by the trigger.
STATE_COLUMNS = ("is_read", "is_flagged", "is_answered", "is_draft", "folder_id")
_FLAGS = STATE_COLUMNS[:4]
TRIGGER = "email_messages_search_state"
_FUNCTION = "email_search_docs_message_state"
_BACKFILL = "email_search_docs_backfill_state"
_TERMS = "subject_terms, address_terms, body_terms, attachment_terms"
#: PostgreSQL: the newest-first walk of a search that tests no words, in an index (see the module docstring).
METADATA_INDEX = "idx_email_search_docs_metadata"
METADATA_KEY = "account_id, received_at, doc_id"
METADATA_COLUMNS = f"tenant_id, size, has_attachments, {', '.join(STATE_COLUMNS)}, from_text, to_text, cc_text"


def _changed(distinct: str) -> str:
    return " OR ".join(f"OLD.{column} {distinct} NEW.{column}" for column in STATE_COLUMNS)


def upgrade() -> None:
    for column in _FLAGS:
        op.add_column("email_search_docs", sa.Column(column, sa.Boolean(), nullable=False, server_default=sa.false()))
    op.add_column("email_search_docs", sa.Column("folder_id", sa.Uuid(), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        _postgresql_upgrade()
    elif op.get_bind().dialect.name == "sqlite":
        _sqlite_upgrade()


#: Migration 0012's trigger filling ``tsv`` on an update (its name, function and condition are 0012's).
_TSV_TRIGGER = "email_search_docs_tsv_default_update"
_TSV_FUNCTION = "email_search_docs_tsv_default"
_TSV_WHEN = "NEW.tsv IS NULL OR (NEW.tsv IS NOT DISTINCT FROM OLD.tsv AND ({}))"


def _tsv_update_trigger(columns: str) -> str:
    """0012's ``tsv`` update trigger, fired on updates of ``columns`` (``""``: any update).  Constants only."""
    changed = " OR ".join(f"NEW.{column} IS DISTINCT FROM OLD.{column}" for column in _TERMS.split(", "))
    return (
        f"CREATE TRIGGER {_TSV_TRIGGER} BEFORE UPDATE {columns} ON email_search_docs FOR EACH ROW "
        f"WHEN ({_TSV_WHEN.format(changed)}) EXECUTE FUNCTION {_TSV_FUNCTION}()"
    )


def _postgresql_upgrade() -> None:
    op.execute(f"DROP TRIGGER IF EXISTS {_TSV_TRIGGER} ON email_search_docs")
    op.execute(_tsv_update_trigger(f"OF {_TERMS}, tsv"))
    copies = ", ".join(f"{column} = NEW.{column}" for column in STATE_COLUMNS)
    update = f"UPDATE email_search_docs SET {copies} WHERE message_id = NEW.id;"  # noqa: S608 (constants only)
    op.execute(
        f"CREATE FUNCTION {_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN {update} RETURN NULL; END $$"
    )
    op.execute(
        f"CREATE TRIGGER {TRIGGER} AFTER UPDATE OF {', '.join(STATE_COLUMNS)} ON email_messages FOR EACH ROW "
        f"WHEN ({_changed('IS DISTINCT FROM')}) EXECUTE FUNCTION {_FUNCTION}()"
    )
    tables = ("email_messages", "email_search_docs")
    for table in tables:  # the owner sees every tenant's rows for the backfill only (same transaction)
        op.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
    # The backfill as one rewrite of the table (see the module docstring): each value looked up by the doc's message.
    kinds = dict(zip(STATE_COLUMNS, ("boolean",) * 4 + ("uuid",), strict=True))
    for column, kind in kinds.items():
        select = f"SELECT {column} FROM email_messages WHERE id = $1"  # noqa: S608 (constants only)
        op.execute(f"CREATE FUNCTION {_BACKFILL}_{column}(uuid) RETURNS {kind} LANGUAGE sql STABLE AS '{select}'")
    rewrite = (f"ALTER COLUMN {c} TYPE {kind} USING {_BACKFILL}_{c}(message_id)" for c, kind in kinds.items())
    op.execute(f"ALTER TABLE email_search_docs {', '.join(rewrite)}")
    for column in kinds:
        op.execute(f"DROP FUNCTION {_BACKFILL}_{column}(uuid)")
    for table in tables:
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
    op.execute(f"CREATE INDEX {METADATA_INDEX} ON email_search_docs ({METADATA_KEY}) INCLUDE ({METADATA_COLUMNS})")
    op.execute("ANALYZE email_search_docs")


def _fts_update_trigger(columns: str) -> str:
    """Migration 0007's FTS5 update trigger, fired on updates of ``columns`` (``""``: any update).  Constants only."""
    new = ", ".join(f"new.{column}" for column in _TERMS.split(", "))
    old = ", ".join(f"old.{column}" for column in _TERMS.split(", "))
    fts = f"email_search_fts(email_search_fts, rowid, {_TERMS})"
    delete = f"INSERT INTO {fts} VALUES ('delete', old.doc_id, {old});"  # noqa: S608
    insert = f"INSERT INTO email_search_fts(rowid, {_TERMS}) VALUES (new.doc_id, {new});"  # noqa: S608
    return (
        f"CREATE TRIGGER email_search_docs_au AFTER UPDATE {columns} ON email_search_docs BEGIN {delete} {insert} END"
    )


def _sqlite_upgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS email_search_docs_au")
    op.execute(_fts_update_trigger(f"OF {_TERMS}"))
    copies = ", ".join(f"{column} = new.{column}" for column in STATE_COLUMNS)
    update = f"UPDATE email_search_docs SET {copies} WHERE message_id = new.id;"  # noqa: S608 (constants only)
    op.execute(
        f"CREATE TRIGGER {TRIGGER} AFTER UPDATE OF {', '.join(STATE_COLUMNS)} ON email_messages "
        f"WHEN {_changed('IS NOT')} BEGIN {update} END"
    )
    columns = ", ".join(STATE_COLUMNS)
    select = f"SELECT {columns} FROM email_messages m WHERE m.id = email_search_docs.message_id"  # noqa: S608
    op.execute(f"UPDATE email_search_docs SET ({columns}) = ({select})")  # noqa: S608 (constants only)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute(f"DROP INDEX IF EXISTS {METADATA_INDEX}")
        op.execute(f"DROP TRIGGER IF EXISTS {TRIGGER} ON email_messages")
        op.execute(f"DROP FUNCTION IF EXISTS {_FUNCTION}()")
        op.execute(f"DROP TRIGGER IF EXISTS {_TSV_TRIGGER} ON email_search_docs")
        op.execute(_tsv_update_trigger(""))
    if dialect == "sqlite":
        op.execute(f"DROP TRIGGER IF EXISTS {TRIGGER}")
        op.execute("DROP TRIGGER IF EXISTS email_search_docs_au")
        op.execute(_fts_update_trigger(""))
    for column in STATE_COLUMNS:
        op.drop_column("email_search_docs", column)
