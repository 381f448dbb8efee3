"""The search query language (Gmail-style operators) parsed into a small tree.

Grammar (``OR`` binds tighter than the implicit AND between terms, as in Gmail)::

    query   := and
    and     := or+                       (whitespace between terms)
    or      := unary ("OR" unary)*
    unary   := "-" unary | atom
    atom    := "(" and ")" | operator ":" value | '"' phrase '"' | word
    value   := word | '"' phrase '"'

Operators: ``from: to: cc: subject: filename:`` (text), ``has:attachment``,
``is:unread|read|flagged|unflagged|answered|draft``, ``in:<folder name or role>``, ``before: after:`` (YYYY-MM-DD,
UTC; ``after`` inclusive, ``before`` exclusive), ``larger: smaller:`` (bytes, or with a ``K``/``M``/``G`` suffix,
powers of 1024).  A bare word or a phrase matches the stemmed words of the subject, the addresses, the body or the
attachment names; a bare word that is several words (``e-mail``) is a phrase.  Errors raise
:class:`email_service.errors.InvalidInput` saying what is wrong (unbalanced quote or parenthesis, unknown
operator, bad value, nothing to search for).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime

from email_service.errors import InvalidInput
from email_service.services.search_text import fold, lexemes

TEXT_OPERATORS = ("from", "to", "cc", "subject", "filename")
IS_VALUES = ("unread", "read", "flagged", "unflagged", "answered", "draft")
OPERATORS = (*TEXT_OPERATORS, "has", "is", "in", "before", "after", "larger", "smaller")
MAX_QUERY = 1000
_SIZE = re.compile(r"^(\d{1,12})([kmg]?)b?$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
_OPERATOR = re.compile(r"^([A-Za-z]+):(.*)$", re.DOTALL)


@dataclass(frozen=True)
class Words:
    """Stemmed words that must appear in this order, adjacent (one word: anywhere) in ``field``: ``None`` (any
    field), ``subject`` or ``filename``."""

    lexemes: tuple[str, ...]
    field: str | None = None


@dataclass(frozen=True)
class Address:
    """Part of an address or display name in ``field`` (``from``, ``to``, ``cc``), folded (case and accents)."""

    field: str
    text: str


@dataclass(frozen=True)
class Flag:
    """``has:attachment`` (``name="attachment"``) or an ``is:`` value."""

    name: str


@dataclass(frozen=True)
class Folder:
    """``in:`` a folder by name (case-insensitive) or role."""

    name: str


@dataclass(frozen=True)
class Bound:
    """``received_at`` (epoch ms) or ``size`` (bytes) compared: ``kind`` is ``before | after | larger | smaller``."""

    kind: str
    value: int


@dataclass(frozen=True)
class Not:
    item: Node


@dataclass(frozen=True)
class And:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Node, ...]


Node = Words | Address | Flag | Folder | Bound | Not | And | Or


def _tokens(query: str) -> list[str]:
    """Split into tokens: ``(``, ``)``, ``-``, words, ``op:value`` and quoted phrases (kept with their quotes)."""
    tokens: list[str] = []
    i, n = 0, len(query)
    while i < n:
        char = query[i]
        if char.isspace():
            i += 1
        elif char in "()":
            tokens.append(char)
            i += 1
        elif char == "-" and i + 1 < n and not query[i + 1].isspace():
            tokens.append("-")
            i += 1
        else:
            start = i
            while i < n and not query[i].isspace() and query[i] not in "()":
                if query[i] == '"':
                    end = query.find('"', i + 1)
                    if end < 0:
                        raise InvalidInput(f"Unbalanced quote in the search query at position {i + 1}")
                    i = end + 1
                else:
                    i += 1
            tokens.append(query[start:i])
    return tokens


class _Parser:
    def __init__(self, tokens: list[str]) -> None:
        self.tokens, self.pos = tokens, 0

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> str:
        tok = self.tokens[self.pos]
        self.pos += 1
        return tok

    def conjunction(self, *, nested: bool) -> Node:
        items: list[Node] = []
        while (tok := self.peek()) is not None and tok != ")":
            item = self.disjunction()
            if item is not None:
                items.append(item)
        if self.peek() == ")" and not nested:
            raise InvalidInput("Unbalanced parenthesis in the search query: ')' without '('")
        if not items:
            raise InvalidInput("The search query has nothing to search for" + (" inside '( )'" if nested else ""))
        return items[0] if len(items) == 1 else And(tuple(items))

    def disjunction(self) -> Node | None:
        items = [self.unary()]
        while self.peek() == "OR":
            self.take()
            if self.peek() in (None, ")", "OR"):
                raise InvalidInput("OR must stand between two search terms")
            items.append(self.unary())
        kept = [item for item in items if item is not None]
        if not kept:
            return None
        return kept[0] if len(kept) == 1 else Or(tuple(kept))

    def unary(self) -> Node | None:
        tok = self.take()
        if tok == "-":
            if self.peek() in (None, ")", "OR"):
                raise InvalidInput("'-' must be followed by a search term")
            item = self.unary()
            return Not(item) if item is not None else None
        if tok == "(":
            item = self.conjunction(nested=True)
            if self.peek() != ")":
                raise InvalidInput("Unbalanced parenthesis in the search query: '(' without ')'")
            self.take()
            return item
        if tok == "OR":
            raise InvalidInput("OR must stand between two search terms")
        return _atom(tok)


def _unquote(text: str) -> str:
    return text.replace('"', " ") if text.count('"') else text


def _atom(tok: str) -> Node | None:
    match = _OPERATOR.match(tok)
    if match and not tok.startswith('"'):
        name, value = match.group(1).lower(), _unquote(match.group(2)).strip()
        if name not in OPERATORS:
            raise InvalidInput(f"Unknown search operator '{match.group(1)}:' (known: {', '.join(OPERATORS)})")
        if not value:
            raise InvalidInput(f"The search operator '{name}:' needs a value")
        return _operator(name, value)
    found = tuple(lexemes(_unquote(tok)))
    return Words(found) if found else None


def _operator(name: str, value: str) -> Node:
    if name in ("from", "to", "cc"):
        return Address(name, fold(value))
    if name in ("subject", "filename"):
        found = tuple(lexemes(value))
        if not found:
            raise InvalidInput(f"The search operator '{name}:' needs a word")
        return Words(found, name)
    if name == "has":
        if value.lower() not in ("attachment", "attachments"):
            raise InvalidInput("has: takes 'attachment'")
        return Flag("attachment")
    if name == "is":
        if value.lower() not in IS_VALUES:
            raise InvalidInput(f"is: takes one of {', '.join(IS_VALUES)}")
        return Flag(value.lower())
    if name == "in":
        return Folder(value)
    if name in ("before", "after"):
        return Bound(name, _day_ms(name, value))
    return Bound(name, _size(name, value))


def _day_ms(name: str, value: str) -> int:
    try:
        day = date.fromisoformat(value.replace("/", "-"))
    except ValueError:
        raise InvalidInput(f"{name}: takes a date as YYYY-MM-DD, not '{value}'") from None
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)


def _size(name: str, value: str) -> int:
    match = _SIZE.match(value)
    if not match:
        raise InvalidInput(f"{name}: takes a size such as 500K or 10M, not '{value}'")
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


def parse_query(query: str) -> Node:
    """Parse a search query (at most :data:`MAX_QUERY` characters) into its tree.

    Raises:
        InvalidInput: the query is empty, too long, or malformed (the message says where or what).
    """
    if len(query) > MAX_QUERY:
        raise InvalidInput(f"The search query is longer than {MAX_QUERY} characters")
    tokens = _tokens(query)
    if not tokens:
        raise InvalidInput("The search query is empty")
    parser = _Parser(tokens)
    return parser.conjunction(nested=False)


def positive_lexemes(node: Node) -> set[str]:
    """The stemmed words a hit may contain because of the query (not under a negation): for snippets and ranking."""
    if isinstance(node, Words):
        return set(node.lexemes)
    if isinstance(node, And | Or):
        return set().union(*(positive_lexemes(item) for item in node.items))
    return set()
