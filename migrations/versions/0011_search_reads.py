"""Search reads less per request (issue 11): PostgreSQL uses its GIN and trigram indexes under RLS by default, and
SQLite walks the account's docs newest first on an index holding the columns the search tests.

SQLite: ``idx_email_search_docs_walk`` on ``(account_id, received_at, doc_id, has_attachments, size, from_text,
to_text, cc_text)``.  A search whose word is common walks the docs newest first (``services/search_sql.py``); on
``idx_email_search_docs_account`` each doc's row had to be read for ``from:``/``to:``/``cc:``, ``larger:``/``smaller:``
and ``has:attachment`` (a doc row carries its body terms: ~3 KB), on this index only the hits' rows are (measured at
41,000 docs: ``from:`` 58 ms -> 8 ms).  About 150 bytes a message more to write.

PostgreSQL:

Under ``FORCE ROW LEVEL SECURITY`` PostgreSQL applies the tenant policy before any operator that is not
``LEAKPROOF``; ``tsvector @@ tsquery`` (``ts_match_vq``) and ``text LIKE text`` (``textlike``) are not, so as the app
role a search cannot use the GIN index of ``tsv`` nor the pg_trgm ones and reads the account's doc rows instead
(``bench/README.md``: 0.6-1.3 s for a word at 100,000 messages).  Migration 0007 marked the two functions
``LEAKPROOF`` only when asked (``SEARCH_LEAKPROOF_OPERATORS=true``); this migration does it by default whenever the
migrating role is a superuser (it is a catalog change only a superuser may make), unless
``SEARCH_LEAKPROOF_OPERATORS`` is ``false``/``0``/``no``.

Why this does not weaken tenant isolation here: a leak through those functions' error messages needs someone who
runs their own SQL as the app role -- and such a session can set ``app.current_tenant_id`` to any tenant anyway
(the policy trusts that setting).  RLS guards against the service's own queries forgetting a tenant condition; the
planner still applies the policy to every row a search returns (the isolation tests run on PostgreSQL).

Without a superuser (managed databases) nothing changes and search stays correct, only slower on large mailboxes;
a superuser can run ``ALTER FUNCTION ts_match_vq(tsvector, tsquery) LEAKPROOF`` and
``ALTER FUNCTION textlike(text, text) LEAKPROOF`` in the database later.  Not undone by the downgrade (an operator
may have set it before; ``... NOT LEAKPROOF`` undoes it).

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import os

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

#: Functions behind the search's operators: ``tsvector @@ tsquery`` and ``text LIKE text``.
SEARCH_FUNCTIONS = ("ts_match_vq(tsvector, tsquery)", "textlike(text, text)")


_WALK_INDEX = "idx_email_search_docs_walk"


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        op.execute(
            f"CREATE INDEX {_WALK_INDEX} ON email_search_docs "
            "(account_id, received_at, doc_id, has_attachments, size, from_text, to_text, cc_text)"
        )
    if bind.dialect.name != "postgresql":
        return
    if os.environ.get("SEARCH_LEAKPROOF_OPERATORS", "").strip().lower() in ("0", "false", "no"):
        return
    if not bind.execute(sa.text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")).scalar():
        print("Search: the migrating role is not a superuser, so @@ and LIKE stay non-LEAKPROOF (see the README)")
        return
    for function in SEARCH_FUNCTIONS:
        op.execute(f"ALTER FUNCTION {function} LEAKPROOF")


def downgrade() -> None:
    """Drops the SQLite index; the LEAKPROOF marks stay (see the module docstring)."""
    if op.get_bind().dialect.name == "sqlite":
        op.execute(f"DROP INDEX IF EXISTS {_WALK_INDEX}")
