"""The SQL of a search (issue 11): a query tree of :mod:`.search_query` as a condition on ``email_search_docs``, and
the bounded read a search makes -- its newest hits, up to a ``LIMIT``.

Word and phrase terms match the stemmed lexemes of the doc rows (:mod:`.search_index`): on PostgreSQL
``tsv @@ to_tsquery('simple', ...)`` (phrases with ``<->``, ``subject:`` restricted to weight A, ``filename:`` to
weight D), on SQLite a lookup of the doc in ``email_search_fts`` (phrases in quotes, ``subject:`` / ``filename:`` as
FTS5 column filters).  Both see the same lexemes (stemmed in Python), so both find the same messages.  Address terms
(``from:`` ...) are ``LIKE '%part%'`` on the folded address texts (pg_trgm GIN on PostgreSQL).  Flags other than
``has:attachment`` and folders: on PostgreSQL the doc row's copies of them (migration 0014, kept in step by a
trigger on ``email_messages``); on SQLite the message's, probed in the message list's covering indexes or read
through ``EXISTS``.

Plans (measured at 100,000 messages, ``bench/search.py``; the reads are bounded by their ``LIMIT``):

* SQLite, a word term every hit must match (the *driver*) with few FTS5 hits (fewer than :data:`FEW_HITS`, a count
  capped there): start from those hits and sort them.  Otherwise walk the docs newest first on
  ``(account_id, received_at)`` and test each one (an FTS5 lookup by rowid per word term), stopping at the
  ``LIMIT``.  ``is:read``/``is:unread`` and ``in:`` probe the list's covering indexes of ``email_messages`` with the
  doc's ``(received_at, message_id)`` instead of reading the (wide) message row.
* SQLite: the word terms (AND, OR, NOT after a positive term) are one FTS5 query (:class:`Match`): one hit list.
* PostgreSQL: one statement; the planner picks the GIN / trigram indexes or the ``(account_id, received_at)`` walk
  -- for a query without words, the walk of ``idx_email_search_docs_metadata`` (index-only, migration 0014); for
  words with selective other terms, that walk joined to the doc rows for the words (``SearchSql._postgresql_where``).
  Under ``FORCE ROW LEVEL SECURITY`` it may use the GIN and trigram indexes only when ``@@`` and ``LIKE`` are
  ``LEAKPROOF`` (migration 0011, see the README).  The word terms of an AND/OR/NOT are one tsquery (the doc's
  ``tsv`` matched once per row; migration 0013 keeps it in the row), and plans are made for the values of each
  search (``plan_cache_mode``), never a generic one.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    bindparam,
    column,
    exists,
    func,
    literal_column,
    not_,
    or_,
    select,
    table,
    true,
)
from sqlalchemy.orm import Session
from sqlalchemy.sql.util import ClauseAdapter

from email_service.models import EmailFolder, EmailMessage, SearchDoc
from email_service.services.search_query import (
    Address,
    And,
    Bound,
    Flag,
    Folder,
    Node,
    Not,
    Or,
    Words,
    positive_lexemes,
)  # fmt: skip

#: SQLite starts from the driver term's FTS5 hits when it has fewer than this many (else walks the docs by date).
FEW_HITS = 3000
_FTS_COLUMN = {None: "", "subject": "subject_terms : ", "filename": "attachment_terms : "}
_WEIGHT = {None: "", "subject": ":A", "filename": ":D"}
_MESSAGE_FLAGS = {
    "unread": (EmailMessage.is_read, False),
    "read": (EmailMessage.is_read, True),
    "flagged": (EmailMessage.is_flagged, True),
    "unflagged": (EmailMessage.is_flagged, False),
    "answered": (EmailMessage.is_answered, True),
    "draft": (EmailMessage.is_draft, True),
}
_FTS = table("email_search_fts", column("rowid"), column("email_search_fts"))
#: The columns a search reads of each hit: what it counts and pages by (on SQLite both are in the walk's index).
KEY_COLUMNS = (SearchDoc.received_at, SearchDoc.doc_id)
#: What it ranks by, read for the ranking window only.
TERM_COLUMNS = (SearchDoc.doc_id, SearchDoc.subject_terms, SearchDoc.address_terms, SearchDoc.attachment_terms)


#: PostgreSQL: the search's settings, for its transaction only (see :class:`SearchSql`), as columns: selected on
#: their own, or by a statement that runs before the search's (one round trip less, ``search._scope``).
SETTINGS_COLUMNS = (
    func.set_config(literal_column("'plan_cache_mode'"), literal_column("'force_custom_plan'"), true()).label("plan"),
    func.set_config(literal_column("'max_parallel_workers_per_gather'"), literal_column("'0'"), true()).label("gather"),
)
_SETTINGS = select(*SETTINGS_COLUMNS)
#: The :data:`TERM_COLUMNS` of the docs ``doc_ids``, built once (its construction and cache key are Python).
_TERMS = select(*TERM_COLUMNS).where(SearchDoc.doc_id.in_(bindparam("doc_ids", expanding=True)))
#: PostgreSQL: ``email_search_docs`` as the walk of a search that joins its doc rows (``SearchSql._postgresql_where``).
_WALK = SearchDoc.__table__.alias("walk")


def _has(node: Node, kind: type[Node]) -> bool:
    """``node`` has a term of ``kind`` (``Address``: ``from:`` / ``to:`` / ``cc:``; ``Words``: a word or phrase,
    which needs the doc's ``tsv``), under any ``NOT`` / ``AND`` / ``OR``."""
    if isinstance(node, Not):
        return _has(node.item, kind)
    if isinstance(node, And | Or):
        return any(_has(item, kind) for item in node.items)
    return isinstance(node, kind)


def fts_match(node: Words) -> str:
    """The FTS5 MATCH expression of a word or phrase term (a column filter for ``subject:`` / ``filename:``)."""
    return _FTS_COLUMN[node.field] + '"' + " ".join(node.lexemes) + '"'


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _fts_hits(match: str) -> Any:
    """``SELECT rowid FROM email_search_fts WHERE email_search_fts MATCH :match`` (a bound parameter per term)."""
    return select(_FTS.c.rowid).where(_FTS.c.email_search_fts.op("MATCH")(bindparam("match", match, unique=True)))


@dataclass(frozen=True)
class Match:
    """SQLite: word terms combined into one FTS5 query (:func:`merged`): one hit list per search, not one per term."""

    expression: str


def _fts(node: Node) -> str | None:
    """``node`` as one FTS5 query when it is made of word terms (AND, OR, and NOT after a positive term), else
    ``None``."""
    if isinstance(node, Words):
        return fts_match(node)
    if isinstance(node, Or):
        parts = [_fts(item) for item in node.items]
        return None if None in parts else " OR ".join(f"({part})" for part in parts)
    if isinstance(node, And):
        positive = [_fts(item) for item in node.items if not isinstance(item, Not)]
        negative = [_fts(item.item) for item in node.items if isinstance(item, Not)]
        if not positive or None in positive or None in negative:
            return None
        both = " AND ".join(f"({part})" for part in positive)
        return f"({both}) NOT ({' OR '.join(f'({part})' for part in negative)})" if negative else both
    return None


def merged(tree: Node) -> Node | Match:
    """SQLite: ``tree`` with its word terms -- the whole tree, or the word items (and negated word items) of a
    top-level AND with at least one positive one -- as one :class:`Match`."""
    if (expression := _fts(tree)) is not None:
        return Match(expression)
    if isinstance(tree, And):
        words = [item for item in tree.items if _fts(item.item if isinstance(item, Not) else item) is not None]
        if len(words) > 1 and (expression := _fts(And(tuple(words)))) is not None:
            rest = tuple(item for item in tree.items if item not in words)
            return And(cast(tuple[Node, ...], (Match(expression), *rest)))  # a Match among the items: SQL only
    return tree


def _driver(tree: Node | Match) -> tuple[Node | Match, str] | None:
    """The word term (or OR of word terms, or :class:`Match`) every hit must match -- the tree itself or a top-level
    AND item -- and its FTS5 MATCH; ``None`` when there is none."""
    for item in tree.items if isinstance(tree, And) else (tree,):
        if isinstance(item, Match):
            return item, item.expression
        if isinstance(item, Words):
            return item, fts_match(item)
        if isinstance(item, Or) and all(isinstance(choice, Words) for choice in item.items):
            return item, " OR ".join(f"({fts_match(choice)})" for choice in item.items if isinstance(choice, Words))
    return None


def _cost(node: Node | Match) -> int:
    """Rough cost of testing ``node`` on one doc: columns of the doc, word membership, LIKE, nested, message rows."""
    if isinstance(node, Bound) or (isinstance(node, Flag) and node.name == "attachment"):
        return 0
    if isinstance(node, Match):  # after a LIKE on the walk's index (a membership test in a list of ~40,000)
        return 3
    if isinstance(node, Words | Address):
        return 1 if isinstance(node, Words) else 2
    return 4 if isinstance(node, Flag | Folder) else 3


def _phrase(node: Words) -> str:
    """The tsquery of a word or phrase term (weight A for ``subject:``, D for ``filename:``)."""
    return " <-> ".join(f"'{lexeme}'{_WEIGHT[node.field]}" for lexeme in node.lexemes)


def _tsquery(node: Node) -> str | None:
    """PostgreSQL: ``node`` as one tsquery when it is made of word terms only (with AND, OR, NOT), else ``None``."""
    if isinstance(node, Words):
        return _phrase(node)
    if isinstance(node, Not):
        inner = _tsquery(node.item)
        return None if inner is None else f"!({inner})"
    if isinstance(node, And | Or):
        parts = [_tsquery(item) for item in node.items]
        if any(part is None for part in parts):
            return None
        return (" & " if isinstance(node, And) else " | ").join(f"({part})" for part in parts)
    return None


def _matches(query: str) -> ColumnElement[bool]:
    """``tsv @@ to_tsquery('simple', query)``: the doc's tsv is read (and its words matched) once for the whole
    query."""
    return literal_column("email_search_docs.tsv").bool_op("@@")(func.to_tsquery("simple", query))


class SearchSql:
    """The statements of one search: ``tree`` over one account's docs (optionally one folder's), in ``session``'s
    dialect; on SQLite the plan (start from the driver's FTS5 hits or walk by date) is chosen here."""

    def __init__(
        self,
        session: Session,
        account_id: uuid.UUID,
        tree: Node,
        folder_id: uuid.UUID | None = None,
        *,
        settings: bool = True,
    ) -> None:
        """``settings``: set the transaction's PostgreSQL settings here (``False``: a statement of this transaction
        already selected :data:`SETTINGS_COLUMNS`)."""
        self.session, self.account_id = session, account_id
        self.dialect = session.get_bind().dialect.name
        self._skip: Node | Match | None = None
        # PostgreSQL, a query with words: its walk reads each hit's row (for ``tsv``), so the ranking terms come with
        # the keys.  Without words only the keys: the walk may then stay in an index (migration 0014).
        self._terms_with_keys = self.dialect == "postgresql" and bool(positive_lexemes(tree))
        self._terms: dict[int, Any] = {}
        self._keys: tuple[Any, Any] = KEY_COLUMNS
        self._from: Any = SearchDoc.__table__
        self.where: list[ColumnElement[bool]] = []
        if self.dialect == "postgresql":
            # Plans for these very values: psycopg prepares a statement run 5 times on a connection, and PostgreSQL
            # may then reuse a generic plan that cannot tell a word in half of the docs from a rare one (measured:
            # ``subject:invoice`` 82 ms planned for its value, 235-600 ms on the generic plan).  No parallel workers:
            # a search reads at most a few thousand rows, less than starting workers costs on a loaded server
            # (``bench/README.md``).  For this transaction only.
            if settings:
                session.execute(_SETTINGS)
            self.where = self._postgresql_where(tree, folder_id)
            return
        account = SearchDoc.account_id == account_id
        terms = merged(tree)  # SQLite: one FTS5 query for the word terms
        driver = _driver(terms)
        if driver is not None and self._fts_hits(driver[1], FEW_HITS) < FEW_HITS:
            # Start from the driver's hits (rowid lookups); ``+account_id``: not the account's index.
            self._skip = driver[0]
            account = literal_column("+email_search_docs.account_id", SearchDoc.account_id.type) == account_id
            self.where = [SearchDoc.doc_id.in_(_fts_hits(driver[1]))]
        else:
            self.where = []
        self.where += [account, self.condition(terms)]
        if folder_id is not None:
            self.where.append(self._in_folders([folder_id]))

    def _fts_hits(self, match: str, cap: int) -> int:
        hits = select(_FTS.c.rowid).where(_FTS.c.email_search_fts.op("MATCH")(match)).limit(cap).subquery()
        return int(self.session.execute(select(func.count()).select_from(hits)).scalar_one())

    def _postgresql_where(self, tree: Node, folder_id: uuid.UUID | None) -> list[ColumnElement[bool]]:
        """PostgreSQL: the statement's conditions.

        When ``tree`` has word terms and the AND at its top has items without words (addresses, flags, folders,
        dates, sizes; the search's folder counts as one) that are likely to be selective -- an address term, or two
        such items or more -- the statement walks ``idx_email_search_docs_metadata`` newest first as ``walk`` (those
        items tested in the index, no doc row read) and joins each candidate's doc row by ``doc_id`` for the word
        terms (:data:`_WALK`).  Measured (``bench/README.md``): 0.14-0.67x the single-table walk when those items
        pass few docs, but 2-3x (still ~20 ms) for one item that passes most of them (``in:inbox word``), hence the
        rule.  The planner may still start from the GIN index of a rare word.  Else one table."""
        items = tree.items if isinstance(tree, And) else (tree,)
        tests = [item for item in items if not _has(item, Words)]
        words = [item for item in items if _has(item, Words)]
        folder = [self._in_folders([folder_id])] if folder_id is not None else []
        if not words or (len(tests) + len(folder) < 2 and not any(_has(item, Address) for item in tests)):
            return [SearchDoc.account_id == self.account_id, self.condition(tree), *folder]
        adapt = ClauseAdapter(_WALK).traverse
        self._keys = (_WALK.c.received_at, _WALK.c.doc_id)
        self._from = _WALK.join(SearchDoc.__table__, SearchDoc.doc_id == _WALK.c.doc_id)
        walk = [_WALK.c.account_id == self.account_id, *(adapt(self.condition(item)) for item in tests)]
        return [*walk, *map(adapt, folder), self.condition(words[0] if len(words) == 1 else And(tuple(words)))]

    def _select(self, *columns: Any) -> Select[Any]:
        return select(*columns).select_from(self._from).where(*self.where)

    def newest(self, limit: int, *, offset: int = 0) -> list[Any]:
        """Up to ``limit`` hits' keys (:data:`KEY_COLUMNS`) newest first (``received_at``, then ``doc_id``), skipping
        ``offset``.  On PostgreSQL, for a query with words, the rows hold the :data:`TERM_COLUMNS` too (the statement
        reads each hit's row anyway): :meth:`terms` then needs no statement of its own."""
        columns = (*self._keys, *TERM_COLUMNS[1:]) if self._terms_with_keys else self._keys
        statement = self._select(*columns).order_by(self._keys[0].desc(), self._keys[1].desc())
        rows = list(self.session.connection().execute(statement.limit(limit).offset(offset)).all())
        if self._terms_with_keys:
            self._terms.update((row.doc_id, row) for row in rows)
        return rows

    def terms(self, doc_ids: list[int]) -> dict[int, Any]:
        """The :data:`TERM_COLUMNS` rows of the docs ``doc_ids`` (hits of this search) by doc id."""
        missing = [doc_id for doc_id in doc_ids if doc_id not in self._terms]
        if missing:
            self._terms.update(
                (row.doc_id, row) for row in self.session.connection().execute(_TERMS, {"doc_ids": missing})
            )
        return {doc_id: self._terms[doc_id] for doc_id in doc_ids if doc_id in self._terms}

    def condition(self, node: Node | Match) -> ColumnElement[bool]:
        """``node`` as a condition on a row of ``email_search_docs`` (``true`` for the term the plan starts from)."""
        if node is self._skip:
            return true()
        if isinstance(node, Match):  # SQLite only
            return literal_column("+email_search_docs.doc_id", SearchDoc.doc_id.type).in_(_fts_hits(node.expression))
        if self.dialect == "postgresql" and (query := _tsquery(node)) is not None:
            return _matches(query)
        if isinstance(node, And):  # cheap tests first: SQLite evaluates them in this order
            items = sorted(node.items, key=_cost)
            if self.dialect == "postgresql":  # the word terms as one tsquery: one match of the doc's tsv per row
                queries = [query for item in items if (query := _tsquery(item)) is not None]
                if len(queries) > 1:
                    items = [item for item in items if _tsquery(item) is None]
                    return and_(_matches(" & ".join(f"({q})" for q in queries)), *map(self.condition, items))
            return and_(*(self.condition(item) for item in items))
        if isinstance(node, Or):
            return or_(*(self.condition(item) for item in node.items))
        if isinstance(node, Not):
            return not_(self.condition(node.item))
        if isinstance(node, Words):
            return self._words(node)
        if isinstance(node, Address):
            texts = {"from": SearchDoc.from_text, "to": SearchDoc.to_text, "cc": SearchDoc.cc_text}
            return texts[node.field].like("%" + _escape_like(node.text) + "%", escape="\\")
        if isinstance(node, Flag):
            return self._flag(node.name)
        if isinstance(node, Folder):  # the folder ids first: PostgreSQL's estimates then use their statistics
            named = select(EmailFolder.id).where(
                EmailFolder.account_id == self.account_id,
                or_(func.lower(EmailFolder.name) == node.name.lower(), EmailFolder.type == node.name.lower()),
            )
            return self._in_folders(list(self.session.execute(named).scalars()))
        assert isinstance(node, Bound)
        if node.kind == "before":
            return SearchDoc.received_at < node.value
        if node.kind == "after":
            return SearchDoc.received_at >= node.value
        return SearchDoc.size > node.value if node.kind == "larger" else SearchDoc.size < node.value

    def _words(self, node: Words) -> ColumnElement[bool]:
        if self.dialect == "postgresql":
            return _matches(_phrase(node))
        # ``+doc_id``: a membership test in the term's hits (read once per statement), not an index constraint.
        return literal_column("+email_search_docs.doc_id", SearchDoc.doc_id.type).in_(_fts_hits(fts_match(node)))

    def _flag(self, name: str) -> ColumnElement[bool]:
        if name == "attachment":
            return SearchDoc.has_attachments.is_(True)
        flag, value = _MESSAGE_FLAGS[name]
        if self.dialect == "sqlite" and flag is EmailMessage.is_read:
            # A probe of the covering index (folder_id, is_read, received_at, id), one per folder of the account.
            return self._probe(self._account_folders(), EmailMessage.is_read.is_(value))
        if self.dialect == "sqlite":
            return exists().where(EmailMessage.id == SearchDoc.message_id, flag.is_(value))
        # PostgreSQL: the doc row's copy (migration 0014), tested where the walk already is.
        return cast(ColumnElement[bool], getattr(SearchDoc, flag.key).is_(value))

    def _in_folders(self, folders: Any) -> ColumnElement[bool]:
        if self.dialect == "sqlite":
            return self._probe(folders)
        return SearchDoc.folder_id.in_(folders)

    def _account_folders(self) -> Any:
        return select(EmailFolder.id).where(EmailFolder.account_id == self.account_id)

    def _probe(self, folders: Any, *extra: ColumnElement[bool]) -> ColumnElement[bool]:
        """SQLite: the doc's message is in one of ``folders`` (and matches ``extra``), found through an index keyed
        ``(folder_id, [is_read,] received_at, id)`` -- the doc's ``received_at`` is the message's (0 when the
        message has none: then the message row itself is read)."""
        probe = exists().where(  # ``+id``: not the primary key's index (which leads to the row itself)
            EmailMessage.folder_id.in_(folders),
            *extra,
            EmailMessage.received_at == SearchDoc.received_at,
            literal_column("+email_messages.id", EmailMessage.id.type) == SearchDoc.message_id,
        )
        unset = exists().where(
            EmailMessage.id == SearchDoc.message_id,
            EmailMessage.received_at.is_(None),
            EmailMessage.folder_id.in_(folders),
            *extra,
        )
        return or_(probe, and_(SearchDoc.received_at == 0, unset))
