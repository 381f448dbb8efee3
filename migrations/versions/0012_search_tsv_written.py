"""PostgreSQL: ``email_search_docs.tsv`` is written by the service instead of generated, and the seed's unused
expression index gets no statistics (issue 11, sync throughput with indexing on).

Migration 0007 made ``tsv`` a generated column::

    setweight(to_tsvector('simple', subject_terms), 'A') || setweight(to_tsvector('simple', address_terms), 'B')
    || setweight(to_tsvector('simple', body_terms), 'C') || setweight(to_tsvector('simple', attachment_terms), 'D')

so the text-search parser ran over every doc in the writer's transaction (the doc insert took 1.26 ms a 5 KB
message in a 3,000-message sync; 0.62 ms with the literal).  The terms are already stemmed lexemes, so the
service now sends ``tsv`` as a ``tsvector`` literal with the same lexemes, positions and weights
(:func:`email_service.services.search_tsvector.tsvector_literal`).

* ``tsv`` becomes a plain column (``DROP EXPRESSION`` keeps every stored value, and the GIN index stays);
* ``BEFORE INSERT`` and ``BEFORE UPDATE`` triggers give it that same expression whenever a row comes without one
  (``tsv`` NULL: terms that only the database's parser can read, see ``search_tsvector``, or a writer that does
  not send it) or when an update changes the terms but not ``tsv``.  So ``tsv`` is always the expression of its
  row's terms;
* the seed's expression index ``idx_email_messages_text_search`` (``to_tsvector('simple', subject || text_body)``,
  kept: DESIGN) gets no planner statistics (``SET STATISTICS 0``).  ``ANALYZE email_messages``, which the service
  runs after a bulk sync (``search_index.refresh_statistics``), computed that expression -- the parser over each
  sampled message's whole body, up to 30,000 of them -- to gather statistics that no query reads (none filters on
  that expression): 1.64 s -> 0.03 s after a 3,000-message sync.

SQLite has no ``tsv`` (FTS5 indexes the terms): nothing to do.  The downgrade makes ``tsv`` generated again
(recomputed from the terms, the GIN index rebuilt) and gives the seed index its statistics back.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_TERMS = (("subject_terms", "A"), ("address_terms", "B"), ("body_terms", "C"), ("attachment_terms", "D"))


def _expression(row: str = "") -> str:
    """Migration 0007's ``tsv`` expression over the columns (of the trigger record ``row``, e.g. ``NEW.``)."""
    return " || ".join(f"setweight(to_tsvector('simple', {row}{column}), '{weight}')" for column, weight in _TERMS)


_SEED_INDEX = "idx_email_messages_text_search"
_FUNCTION = "email_search_docs_tsv_default"
_TRIGGER = "email_search_docs_tsv_default"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("ALTER TABLE email_search_docs ALTER COLUMN tsv DROP EXPRESSION")
    changed = " OR ".join(f"NEW.{column} IS DISTINCT FROM OLD.{column}" for column, _weight in _TERMS)
    op.execute(
        f"CREATE FUNCTION {_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"NEW.tsv := {_expression('NEW.')}; RETURN NEW; END $$"
    )
    # The conditions are the triggers' WHEN clauses, checked without calling the function: a row that comes with
    # its tsv (the service's inserts) costs no PL/pgSQL call.
    op.execute(
        f"CREATE TRIGGER {_TRIGGER}_insert BEFORE INSERT ON email_search_docs "
        f"FOR EACH ROW WHEN (NEW.tsv IS NULL) EXECUTE FUNCTION {_FUNCTION}()"
    )
    op.execute(
        f"CREATE TRIGGER {_TRIGGER}_update BEFORE UPDATE ON email_search_docs FOR EACH ROW "
        f"WHEN (NEW.tsv IS NULL OR (NEW.tsv IS NOT DISTINCT FROM OLD.tsv AND ({changed}))) "
        f"EXECUTE FUNCTION {_FUNCTION}()"
    )
    op.execute(f"ALTER INDEX {_SEED_INDEX} ALTER COLUMN 1 SET STATISTICS 0")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"ALTER INDEX {_SEED_INDEX} ALTER COLUMN 1 SET STATISTICS -1")
    op.execute(f"DROP TRIGGER IF EXISTS {_TRIGGER}_insert ON email_search_docs")
    op.execute(f"DROP TRIGGER IF EXISTS {_TRIGGER}_update ON email_search_docs")
    op.execute(f"DROP FUNCTION IF EXISTS {_FUNCTION}()")
    op.execute("ALTER TABLE email_search_docs DROP COLUMN tsv")  # drops its GIN index too
    op.execute(f"ALTER TABLE email_search_docs ADD COLUMN tsv tsvector GENERATED ALWAYS AS ({_expression()}) STORED")
    op.execute("CREATE INDEX idx_email_search_docs_tsv ON email_search_docs USING GIN (tsv)")
