"""Search of an account's mirrored mail (issue 11): the query tree of :mod:`.search_query`, run by
:mod:`.search_sql`, paged and ranked with bounded work; snippets.

Bounded work per request (so that a word in half of a 100,000-message mailbox costs what a rare word costs):

* ``total`` is counted exactly up to :data:`COUNT_CAP` (250) hits; beyond, the page says ``total_exact=False``
  and ``total`` is a lower bound (``COUNT_CAP``, or more when the page itself reaches further) -- as Gmail's
  ``resultSizeEstimate``, JMAP's optional ``total`` or Elasticsearch's ``track_total_hits``.  Pages at any
  ``offset`` keep coming (read further by date past the bound).
* ``sort=relevance`` ranks the newest :data:`RANK_WINDOW` hits by a score -- per query word 4 if it is in the
  subject, 2 if in an address, 1 if in an attachment name -- then newest first among equal scores; the hits after
  that window follow newest first (offsets at or beyond ``RANK_WINDOW`` page through them by date).  A query
  without words, and ``sort=date``, is newest first throughout.  Ties in date are broken by the doc's id (the
  order it was indexed), the same on both databases.

Each hit has a ``snippet`` (:mod:`.search_snippet`): about :data:`SNIPPET_WORDS` words of the body (else the
subject) around the first matched word, HTML-escaped, matched words in ``<mark>``; only the page's hits are loaded
(their summary columns, bodies and terms: no ORM entities) and snipped.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import Row, Select, bindparam, exists, select
from sqlalchemy.orm import Session

from email_service.errors import InvalidInput, NotFound
from email_service.models import EmailAccount, EmailFolder, EmailMessage, SearchDoc
from email_service.security.tokens import Principal
from email_service.services.accounts import VISIBILITY_COLUMNS, require_visible_account
from email_service.services.changes import state_string
from email_service.services.context import ServiceContext
from email_service.services.message_list import PAGE_COLUMNS
from email_service.services.search_query import parse_query, positive_lexemes
from email_service.services.search_snippet import SNIPPET_WORDS, snippet
from email_service.services.search_sql import SETTINGS_COLUMNS, SearchSql

__all__ = [
    "COUNT_CAP", "RANK_WINDOW", "SNIPPET_WORDS", "SORTS", "SearchHit", "SearchPage", "search_messages", "snippet"
]  # fmt: skip

SORTS = ("relevance", "date")
#: ``sort=relevance`` ranks the newest this many hits; the rest follow by date.
RANK_WINDOW = 200
#: Hits counted exactly; beyond, ``total`` is a lower bound.  The ranking window and one default page (50): what a
#: first page needs, read once (a search's cost is the docs it walks to find this many hits, ``bench/README.md``).
COUNT_CAP = RANK_WINDOW + 50
#: What a hit's row holds: the summary columns (ids as the driver gives them, see ``message_list.PAGE_COLUMNS``),
#: the bodies and the doc's terms for the snippet.
_HIT_COLUMNS = (*PAGE_COLUMNS, EmailMessage.text_body, EmailMessage.html_body, SearchDoc.doc_id,
                SearchDoc.body_terms, SearchDoc.subject_terms)  # fmt: skip
#: The hit rows of the docs ``doc_ids``, built once (not per request: its construction and cache key are Python).
#: The search's statements run on the session's connection (Core): plain columns, so the ORM's result layer would
#: only add its per-row Python (~0.2 ms for a page of 50 on PostgreSQL).
_HITS = (
    select(*_HIT_COLUMNS)
    .join(SearchDoc, SearchDoc.message_id == EmailMessage.id)
    .where(SearchDoc.doc_id.in_(bindparam("doc_ids", expanding=True)))
)


@dataclass(frozen=True)
class SearchHit:
    """A found message and its snippet (HTML: escaped text, matched words in ``<mark>``).  ``message``: a row with
    the attributes of ``message_list.SUMMARY_COLUMNS`` (what ``api.summaries.summary`` reads; ids as text on
    SQLite, ``message_list.row_uuid``) and the bodies."""

    message: Row[Any]
    snippet: str


@dataclass(frozen=True)
class SearchPage:
    """A page of hits; ``total`` is exact when ``total_exact``, else a lower bound (see the module docstring)."""

    items: list[SearchHit]
    total: int
    limit: int
    offset: int
    total_exact: bool = True
    state: str = ""


def score(words: set[str], terms: Any) -> int:
    """Relevance of a hit from its doc's terms (a row with ``subject_terms``, ``address_terms``,
    ``attachment_terms``): per query word (at most 8, in sorted order) 4 if in the subject, 2 if in an address, 1
    if in an attachment name."""
    return _scorer(words)(terms)


def _scorer(words: set[str]) -> Callable[[Any], int]:
    """:func:`score` for ``words``: each word looked up as `` word `` in the space-padded fields (stored terms are
    lexemes joined by single spaces, ``search_text.terms``), in C, without a set of each field's terms per hit."""
    needles = [f" {lexeme} " for lexeme in sorted(words)[:8]]

    def scored(terms: Any) -> int:
        subject, address = f" {terms.subject_terms} ", f" {terms.address_terms} "
        attachment = f" {terms.attachment_terms} "
        return sum(4 * (needle in subject) + 2 * (needle in address) + (needle in attachment) for needle in needles)

    return scored


def search_messages(
    ctx: ServiceContext,
    *,
    principal: Principal,
    account_id: uuid.UUID,
    query: str,
    folder_id: uuid.UUID | None = None,
    sort: str = "relevance",
    limit: int = 50,
    offset: int = 0,
) -> SearchPage:
    """Messages of an account (or one of its folders) matching ``query``, ``sort`` ``relevance`` or ``date``,
    ``limit`` hits from ``offset``; ``total`` exact up to :data:`COUNT_CAP` (see the module docstring); ``state``:
    the account's change-log state, read in the same transaction before the rows (``GET .../changes?since=``).

    Raises (checked in this order):
        InvalidInput: ``sort`` is unknown.
        NotFound / Forbidden: unknown account / another user's account (as ``accounts.load_account``).
        InvalidInput: the query is malformed (the message says what is wrong).
        NotFound: a folder that is not this account's.
    """
    if sort not in SORTS:
        raise InvalidInput("sort must be relevance or date")
    with ctx.db.tenant_session(principal.tenant_id) as session:
        scope = _scope(session, principal, account_id, folder_id)
        tree = parse_query(query)
        words = positive_lexemes(tree)
        if folder_id is not None and not scope.in_account:
            raise NotFound("Folder not found")
        sql = SearchSql(session, account_id, tree, folder_id, settings=not ctx.db.is_postgres)
        newest = sql.newest(COUNT_CAP + 1)  # one read: the count (capped), the ranking window, most pages
        keys = _page(sql, newest, words if sort == "relevance" else set(), limit, offset)
        exact = len(newest) <= COUNT_CAP or 0 < len(keys) < limit  # a short page ends the hits
        total = len(newest) if len(newest) <= COUNT_CAP else max(COUNT_CAP, offset + len(keys) if keys else 0)
        rows = _rows(session, [key.doc_id for key in keys])
        hits = [SearchHit(row, snippet(row, words, (row.body_terms, row.subject_terms))) for row in rows]
    return SearchPage(hits, total, limit, offset, exact, state_string(scope.change_seq))


def _rows(session: Session, doc_ids: Sequence[int]) -> list[Row[Any]]:
    """The rows (:data:`_HIT_COLUMNS`) of the docs ``doc_ids``, in that order."""
    found = {row.doc_id: row for row in session.connection().execute(_HITS, {"doc_ids": list(doc_ids)})}
    return [found[doc_id] for doc_id in doc_ids if doc_id in found]


def _page(sql: SearchSql, newest: list[Any], words: set[str], limit: int, offset: int) -> list[Any]:
    """The hits' keys (``received_at``, ``doc_id``) at ``offset`` .. ``offset + limit``: by date, except that with
    ``words`` (relevance) the first :data:`RANK_WINDOW` positions hold the newest that many hits ranked by
    :func:`score`.  ``newest``: the newest hits' keys (every hit when it is shorter than :data:`COUNT_CAP` + 1)."""
    keys: list[Any] = []
    if words and offset < RANK_WINDOW:
        window = newest[:RANK_WINDOW]
        terms: Mapping[int, Any] = sql.terms([key.doc_id for key in window])
        scored = _scorer(words)
        ranked = sorted(window, key=lambda key: (-scored(terms[key.doc_id]), -key.received_at, -key.doc_id))
        keys = ranked[offset : offset + limit]
    start = offset + len(keys)
    if len(keys) < limit and (start >= RANK_WINDOW or not words):  # by date from ``start`` (position = date rank)
        end = offset + limit
        if end <= len(newest) or len(newest) <= COUNT_CAP:
            keys += newest[start:end]
        else:
            keys += sql.newest(end - start, offset=start)
    return keys


def _scope(session: Session, principal: Principal, account_id: uuid.UUID, folder_id: uuid.UUID | None) -> Any:
    """The account checked as ``accounts.load_account`` checks it, its ``change_seq`` and (``in_account``, when
    ``folder_id`` is given) whether the folder is this account's: one statement of plain columns, no entities.  On
    PostgreSQL the same statement sets the search's settings (``search_sql.SETTINGS_COLUMNS``: one round trip
    less).  It is the transaction's first statement: the state is read before the rows.

    Raises:
        NotFound: unknown account.
        Forbidden: another user's account and the caller is not an admin.
    """
    postgres = session.get_bind().dialect.name == "postgresql"
    values = {"account_id": account_id, "folder_id": folder_id}
    row = session.connection().execute(_scope_statement(folder_id is not None, postgres), values).first()
    return require_visible_account(principal, row)


@cache
def _scope_statement(by_folder: bool, postgres: bool) -> Select[Any]:
    """The statement of :func:`_scope`, built once per shape; binds ``account_id`` (and ``folder_id``)."""
    account_id = bindparam("account_id", type_=EmailAccount.id.type)
    columns: list[Any] = [*VISIBILITY_COLUMNS, EmailAccount.change_seq]
    if by_folder:
        folder = exists().where(EmailFolder.id == bindparam("folder_id", type_=EmailFolder.id.type),
                                EmailFolder.account_id == account_id)  # fmt: skip
        columns.append(folder.label("in_account"))
    if postgres:
        columns += SETTINGS_COLUMNS
    return select(*columns).where(EmailAccount.id == account_id)
