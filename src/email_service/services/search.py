"""Search of an account's mirrored mail (issue 11): the query tree of :mod:`.search_query` as SQL, relevance, snippets.

Word and phrase terms match the stemmed lexemes of ``email_search_docs`` (:mod:`.search_index`): on PostgreSQL
``tsv @@ to_tsquery('simple', ...)`` (phrases with ``<->``, ``subject:`` restricted to weight A, ``filename:`` to
weight D), on SQLite ``doc_id IN (SELECT rowid FROM email_search_fts WHERE email_search_fts MATCH ...)`` (phrases in
quotes, ``subject:`` / ``filename:`` as FTS5 column filters).  Both see the same lexemes (stemmed in Python), so
both find the same messages.  Address terms (``from:`` ...) are ``LIKE '%part%'`` on the folded address texts
(pg_trgm GIN on PostgreSQL); flags, folders, dates and sizes are the message row's columns, read at query time.

``sort=relevance`` ranks by a score computed the same way on both databases -- per query word: 4 if it is in the
subject, 2 if in an address, 1 if in an attachment name -- then newest first; ``sort=date`` is newest first.
Each hit has a ``snippet``: about :data:`SNIPPET_WORDS` words of the body (else the subject) around the first
matched word, HTML-escaped, matched words in ``<mark>``.
"""

from __future__ import annotations

import html
import re
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    and_,
    bindparam,
    case,
    column,
    func,
    literal,
    literal_column,
    not_,
    or_,
    select,
    table,
    text,
)
from sqlalchemy.orm import Session

from email_service.errors import InvalidInput, NotFound
from email_service.models import EmailFolder, EmailMessage, SearchDoc
from email_service.security.tokens import Principal
from email_service.services.accounts import load_account
from email_service.services.context import ServiceContext
from email_service.services.search_index import body_text
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
    parse_query,
    positive_lexemes,
)
from email_service.services.search_text import MAX_BODY_WORDS, fold, stem

SNIPPET_WORDS = 30
SORTS = ("relevance", "date")
_WORD = re.compile(r"[^\W_]+")
_SPACES = re.compile(r"\s+")
_FLAG_COLUMNS = {
    "attachment": (SearchDoc.has_attachments, True),
    "unread": (EmailMessage.is_read, False),
    "read": (EmailMessage.is_read, True),
    "flagged": (EmailMessage.is_flagged, True),
    "unflagged": (EmailMessage.is_flagged, False),
    "answered": (EmailMessage.is_answered, True),
    "draft": (EmailMessage.is_draft, True),
}
_FTS_COLUMN = {None: "", "subject": "subject_terms : ", "filename": "attachment_terms : "}
_WEIGHT = {None: "", "subject": ":A", "filename": ":D"}


@dataclass(frozen=True)
class SearchHit:
    """A found message and its snippet (HTML: escaped text, matched words in ``<mark>``)."""

    message: EmailMessage
    snippet: str


@dataclass(frozen=True)
class SearchPage:
    items: list[SearchHit]
    total: int
    limit: int
    offset: int


class _Compiler:
    """Turns a query tree into a SQL condition for one database dialect and one account."""

    def __init__(self, dialect: str, account_id: uuid.UUID) -> None:
        self.dialect, self.account_id = dialect, account_id

    def condition(self, node: Node) -> ColumnElement[bool]:
        if isinstance(node, And):
            return and_(*(self.condition(item) for item in node.items))
        if isinstance(node, Or):
            return or_(*(self.condition(item) for item in node.items))
        if isinstance(node, Not):
            return not_(self.condition(node.item))
        if isinstance(node, Words):
            return self.words(node)
        if isinstance(node, Address):
            texts = {"from": SearchDoc.from_text, "to": SearchDoc.to_text, "cc": SearchDoc.cc_text}
            return texts[node.field].like("%" + _escape_like(node.text) + "%", escape="\\")
        if isinstance(node, Flag):
            flag, value = _FLAG_COLUMNS[node.name]
            return flag.is_(value)
        if isinstance(node, Folder):
            return EmailMessage.folder_id.in_(
                select(EmailFolder.id).where(
                    EmailFolder.account_id == self.account_id,
                    or_(func.lower(EmailFolder.name) == node.name.lower(), EmailFolder.type == node.name.lower()),
                )
            )
        assert isinstance(node, Bound)
        if node.kind == "before":
            return SearchDoc.received_at < node.value
        if node.kind == "after":
            return SearchDoc.received_at >= node.value
        return SearchDoc.size > node.value if node.kind == "larger" else SearchDoc.size < node.value

    def words(self, node: Words) -> ColumnElement[bool]:
        if self.dialect == "postgresql":
            weight = _WEIGHT[node.field]
            query = " <-> ".join(f"'{lexeme}'{weight}" for lexeme in node.lexemes)
            return literal_column("email_search_docs.tsv").bool_op("@@")(func.to_tsquery("simple", query))
        hits = text("SELECT rowid FROM email_search_fts WHERE email_search_fts MATCH :match").bindparams(
            bindparam("match", fts_match(node), unique=True)  # one per term: a query has several
        )
        # ``+doc_id``: a membership test, not an index constraint (SQLite would otherwise probe the docs' index
        # once per message and per hit).
        return literal_column("+email_search_docs.doc_id").in_(hits.columns(rowid=SearchDoc.doc_id.type))


def fts_match(node: Words) -> str:
    """The FTS5 MATCH expression of a word or phrase term (a column filter for ``subject:`` / ``filename:``)."""
    return _FTS_COLUMN[node.field] + '"' + " ".join(node.lexemes) + '"'


_FTS = table("email_search_fts", column("rowid"), column("email_search_fts"))


def _driver(tree: Node) -> str | None:
    """The FTS5 MATCH of a word term (or an OR of word terms) every hit must match -- the tree itself or a top-level
    AND item -- from whose hits SQLite starts; ``None`` when there is none."""
    for item in tree.items if isinstance(tree, And) else (tree,):
        if isinstance(item, Words):
            return fts_match(item)
        if isinstance(item, Or) and all(isinstance(choice, Words) for choice in item.items):
            return " OR ".join(f"({fts_match(choice)})" for choice in item.items if isinstance(choice, Words))
    return None


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _score(words: set[str]) -> ColumnElement[Any]:
    """Relevance, the same on both databases: per query word 4 (subject) + 2 (address) + 1 (attachment name)."""
    score: ColumnElement[Any] = literal(0)
    for lexeme in sorted(words)[:8]:
        for terms, weight in (
            (SearchDoc.subject_terms, 4),
            (SearchDoc.address_terms, 2),
            (SearchDoc.attachment_terms, 1),
        ):
            padded = literal(" ") + terms + literal(" ")
            score = score + case((padded.like(f"% {lexeme} %"), weight), else_=0)
    return score


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
    """Messages of an account (or one of its folders) matching ``query``, ``sort`` ``relevance`` or ``date``.

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
        compiler = _Compiler(session.get_bind().dialect.name, account_id)
        conditions = [
            SearchDoc.tenant_id == principal.tenant_id,
            SearchDoc.account_id == account_id,
            compiler.condition(tree),
        ]
        joined = _joined(compiler.dialect, tree, folder_id is not None, conditions)
        if folder_id is not None:
            conditions.append(EmailMessage.folder_id == folder_id)
        total = session.execute(select(func.count()).select_from(joined).where(*conditions)).scalar_one()
        newest = (SearchDoc.received_at.desc(), SearchDoc.message_id.desc())
        ordering = (_score(words).desc(), *newest) if sort == "relevance" and words else newest
        ids = list(
            session.execute(
                select(SearchDoc.message_id)
                .select_from(joined)
                .where(*conditions)
                .order_by(*ordering)
                .limit(limit)
                .offset(offset)
            ).scalars()
        )
        found = {m.id: m for m in session.execute(select(EmailMessage).where(EmailMessage.id.in_(ids))).scalars()}
        hits = [SearchHit(found[i], snippet(found[i], words)) for i in ids if i in found]
    return SearchPage(hits, int(total), limit, offset)


def _joined(dialect: str, tree: Node, by_folder: bool, conditions: list[ColumnElement[bool]]) -> Any:
    """What a search reads: the doc rows -- on SQLite starting from the FTS5 hits of a word every hit must match
    (adding that MATCH to ``conditions``) -- and the message rows only when the query needs their mutable columns
    (flags, folder)."""
    joined: Any = SearchDoc.__table__
    driver = _driver(tree) if dialect == "sqlite" else None
    if driver is not None:
        joined = _FTS.join(SearchDoc, SearchDoc.doc_id == _FTS.c.rowid)
        conditions.append(_FTS.c.email_search_fts.op("MATCH")(driver))
    if by_folder or _reads_message(tree):
        joined = joined.join(EmailMessage, EmailMessage.id == SearchDoc.message_id)
    return joined


def _reads_message(node: Node) -> bool:
    """Whether a condition of the tree is on ``email_messages`` (flags other than attachments, folders)."""
    if isinstance(node, And | Or):
        return any(_reads_message(item) for item in node.items)
    if isinstance(node, Not):
        return _reads_message(node.item)
    return isinstance(node, Folder) or (isinstance(node, Flag) and node.name != "attachment")


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
        spans = [m.span() for m in _WORD.finditer(source[:200_000])][:MAX_BODY_WORDS]
        hits = [i for i, (a, b) in enumerate(spans) if words and stem(fold(source[a:b])) in words]
        if hits:
            return _marked(source, spans, hits[0], words)
    source = sources[0] or sources[1]
    spans = [m.span() for m in _WORD.finditer(source[:20_000])][:SNIPPET_WORDS]
    return _marked(source, spans, 0, set()) if spans else ""


def _marked(source: str, spans: list[tuple[int, int]], first: int, words: set[str]) -> str:
    start = max(0, first - SNIPPET_WORDS // 4)
    window = spans[start : start + SNIPPET_WORDS]
    out: list[str] = ["… " if start > 0 else ""]
    cursor = window[0][0]
    for a, b in window:
        out.append(html.escape(_SPACES.sub(" ", source[cursor:a])))
        word = html.escape(source[a:b])
        out.append(f"<mark>{word}</mark>" if stem(fold(source[a:b])) in words else word)
        cursor = b
    if start + SNIPPET_WORDS < len(spans):
        out.append(" …")
    return "".join(out).strip()
