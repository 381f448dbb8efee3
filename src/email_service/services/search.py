"""Search of an account's mirrored mail (issue 11): the query tree of :mod:`.search_query`, run by
:mod:`.search_sql`, paged and ranked with bounded work; snippets.

Bounded work per request (so that a word in half of a 100,000-message mailbox costs what a rare word costs):

* ``total`` is counted exactly up to :data:`COUNT_CAP` hits; beyond, the page says ``total_exact=False`` and
  ``total`` is a lower bound (``COUNT_CAP``, or more when the page itself reaches further) -- as Gmail's
  ``resultSizeEstimate`` or JMAP's optional ``total``.
* ``sort=relevance`` ranks the newest :data:`RANK_WINDOW` hits by a score -- per query word 4 if it is in the
  subject, 2 if in an address, 1 if in an attachment name -- then newest first among equal scores; the hits after
  that window follow newest first (offsets at or beyond ``RANK_WINDOW`` page through them by date).  A query
  without words, and ``sort=date``, is newest first throughout.  Ties in date are broken by the doc's id (the
  order it was indexed), the same on both databases.

Each hit has a ``snippet``: about :data:`SNIPPET_WORDS` words of the body (else the subject) around the first
matched word, HTML-escaped, matched words in ``<mark>``; only the page's hits are loaded and snipped.
"""

from __future__ import annotations

import html
import re
import uuid
from dataclasses import dataclass
from functools import lru_cache
from itertools import islice
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from email_service.errors import InvalidInput, NotFound
from email_service.models import EmailFolder, EmailMessage
from email_service.security.tokens import Principal
from email_service.services.accounts import load_account
from email_service.services.context import ServiceContext
from email_service.services.search_index import body_text
from email_service.services.search_query import parse_query, positive_lexemes
from email_service.services.search_sql import SearchSql
from email_service.services.search_text import MAX_BODY_WORDS, fold, stem

__all__ = ["COUNT_CAP", "RANK_WINDOW", "SORTS", "SearchHit", "SearchPage", "search_messages", "snippet"]

SNIPPET_WORDS = 30
_SNIPPET_SOURCE = 200_000  # characters of a body a snippet looks at
SORTS = ("relevance", "date")
#: Hits counted exactly; beyond, ``total`` is a lower bound.
COUNT_CAP = 1000
#: ``sort=relevance`` ranks the newest this many hits; the rest follow by date.
RANK_WINDOW = 200
_WORD = re.compile(r"[^\W_]+")
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class SearchHit:
    """A found message and its snippet (HTML: escaped text, matched words in ``<mark>``)."""

    message: EmailMessage
    snippet: str


@dataclass(frozen=True)
class SearchPage:
    """A page of hits; ``total`` is exact when ``total_exact``, else a lower bound (see the module docstring)."""

    items: list[SearchHit]
    total: int
    limit: int
    offset: int
    total_exact: bool = True


def score(words: set[str], hit: Any) -> int:
    """Relevance of a hit (a row of :data:`.search_sql.HIT_COLUMNS`): per query word (at most 8, in sorted order)
    4 if in the subject, 2 if in an address, 1 if in an attachment name."""
    fields = [(set(hit.subject_terms.split()), 4), (set(hit.address_terms.split()), 2),
              (set(hit.attachment_terms.split()), 1)]  # fmt: skip
    return sum(weight for lexeme in sorted(words)[:8] for terms, weight in fields if lexeme in terms)


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
    ``limit`` hits from ``offset``; ``total`` exact up to :data:`COUNT_CAP` (see the module docstring).

    Raises:
        InvalidInput: the query is malformed (the message says what is wrong) or ``sort`` is unknown.
        NotFound: unknown account, or a folder that is not this account's.
    """
    if sort not in SORTS:
        raise InvalidInput("sort must be relevance or date")
    tree = parse_query(query)
    words = positive_lexemes(tree)
    with ctx.db.tenant_session(principal.tenant_id) as session:
        load_account(session, principal, account_id)
        _check_folder(session, account_id, folder_id)
        sql = SearchSql(session, account_id, tree, folder_id)
        newest = sql.newest(COUNT_CAP + 1)  # one read: the count (capped), the ranking window, most pages
        rows = _page(sql, newest, words if sort == "relevance" else set(), limit, offset)
        exact = len(newest) <= COUNT_CAP or 0 < len(rows) < limit  # a short page ends the hits
        total = len(newest) if len(newest) <= COUNT_CAP else max(COUNT_CAP, offset + len(rows))
        ids = [row.message_id for row in rows]
        found = {m.id: m for m in session.execute(select(EmailMessage).where(EmailMessage.id.in_(ids))).scalars()}
        hits = [SearchHit(found[i], snippet(found[i], words)) for i in ids if i in found]
    return SearchPage(hits, total, limit, offset, exact)


def _page(sql: SearchSql, newest: list[Any], words: set[str], limit: int, offset: int) -> list[Any]:
    """The hits at ``offset`` .. ``offset + limit``: by date, except that with ``words`` (relevance) the first
    :data:`RANK_WINDOW` positions hold the newest that many hits ranked by :func:`score`.  ``newest``: the newest
    hits (every hit when it is shorter than :data:`COUNT_CAP` + 1)."""
    rows: list[Any] = []
    if words and offset < RANK_WINDOW:
        window = newest[:RANK_WINDOW]
        ranked = sorted(window, key=lambda hit: (-score(words, hit), -hit.received_at, -hit.doc_id))
        rows = ranked[offset : offset + limit]
    start = offset + len(rows)
    if len(rows) < limit and (start >= RANK_WINDOW or not words):  # by date from ``start`` (position = date rank)
        end = offset + limit
        if end <= len(newest) or len(newest) <= COUNT_CAP:
            rows += newest[start:end]
        else:
            rows += sql.newest(end - start, offset=start)
    return rows


def _check_folder(session: Session, account_id: uuid.UUID, folder_id: uuid.UUID | None) -> None:
    if folder_id is None:
        return
    folder = session.get(EmailFolder, folder_id)
    if folder is None or folder.account_id != account_id:
        raise NotFound("Folder not found")


def snippet(message: EmailMessage, words: set[str]) -> str:
    """About :data:`SNIPPET_WORDS` words of the body around its first word whose stem is in ``words`` (else of the
    subject, else the start of the body), HTML-escaped, matched words wrapped in ``<mark>``."""
    sources = [body_text({"text_body": message.text_body, "html_body": message.html_body}), message.subject or ""]
    for source in sources:
        found = _first_match(source, words)
        if found is not None:
            return _marked(source, *found, words)
    source = sources[0] or sources[1]
    spans = [m.span() for m in islice(_WORD.finditer(source, 0, 20_000), SNIPPET_WORDS + 1)]
    return _marked(source, spans, False, set()) if spans else ""


@lru_cache(maxsize=65_536)
def _stemmed(word: str) -> str:
    return stem(fold(word))


def _first_match(source: str, words: set[str]) -> tuple[list[tuple[int, int]], bool] | None:
    """The word spans of ``source`` around its first word whose stem is in ``words`` (within its first
    :data:`MAX_BODY_WORDS` words) -- from :data:`SNIPPET_WORDS` // 4 words before it (or the first word) to one past
    the snippet window -- and whether words precede them; ``None`` when there is no such word."""
    if not words:
        return None
    # The distinct words first (in C), stemmed once each; then the first of the matching ones by a regex (in C).
    matching = {word for word in set(_WORD.findall(source, 0, _SNIPPET_SOURCE)) if _stemmed(word) in words}
    if not matching:
        return None
    alternatives = "|".join(re.escape(word) for word in sorted(matching, key=len, reverse=True))
    found = re.search(rf"(?<![^\W_])(?:{alternatives})(?![^\W_])", source[:_SNIPPET_SOURCE])
    if found is None:  # pragma: no cover - every matching word occurs
        return None
    before = _WORD.findall(source, 0, found.start())
    if len(before) >= MAX_BODY_WORDS:
        return None
    lead = min(len(before), SNIPPET_WORDS // 4)
    spans: list[tuple[int, int]] = []
    if lead:  # the ``lead`` words before the match: found walking back from it
        back = max(0, found.start() - 64 * (lead + 1))
        while len(tail := [m.span() for m in _WORD.finditer(source, back, found.start())]) <= lead and back > 0:
            back = max(0, back - 64 * (lead + 1))
        spans = tail[-lead:]
    for match in _WORD.finditer(source, found.start(), _SNIPPET_SOURCE):
        spans.append(match.span())
        if len(spans) > SNIPPET_WORDS:
            break
    return spans, len(before) > lead


def _marked(source: str, spans: list[tuple[int, int]], leading: bool, words: set[str]) -> str:
    """The first :data:`SNIPPET_WORDS` of ``spans`` as HTML, ``…`` before when ``leading`` and after when ``spans``
    has more; words whose stem is in ``words`` in ``<mark>``."""
    window = spans[:SNIPPET_WORDS]
    out: list[str] = ["… " if leading else ""]
    cursor = window[0][0]
    for a, b in window:
        out.append(html.escape(_SPACES.sub(" ", source[cursor:a])))
        word = html.escape(source[a:b])
        out.append(f"<mark>{word}</mark>" if _stemmed(source[a:b]) in words else word)
        cursor = b
    if len(spans) > SNIPPET_WORDS:
        out.append(" …")
    return "".join(out).strip()
