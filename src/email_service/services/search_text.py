"""Words of the search index and of search queries: one tokenizer and one stemmer for both databases.

A text is folded (NFKD, combining marks dropped, casefolded), cut into runs of letters and digits, and each word
is stemmed with the Snowball English stemmer (PyStemmer).  The index stores these lexemes separated by single
spaces; PostgreSQL parses them with ``to_tsvector('simple', ...)`` and SQLite with FTS5 ``unicode61``, and both
parsers see the same plain words, so results do not depend on the database.  A body is indexed up to
:data:`MAX_BODY_WORDS` words (PostgreSQL keeps word positions only up to 16,383; past that a phrase would match
on SQLite and not on PostgreSQL).
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import Stemmer

#: Words of a body that are indexed (the first ones).
MAX_BODY_WORDS = 10_000
#: Longest indexed word (PostgreSQL refuses lexemes over 2,047 bytes; FTS5 has no limit).
MAX_WORD = 100
_WORD = re.compile(r"[^\W_]+")
_STEMMER = Stemmer.Stemmer("english")


def fold(text: str) -> str:
    """``text`` without diacritics, casefolded (``"Ärger"`` -> ``"arger"``)."""
    if text.isascii():  # the common case, without a Python loop over the characters
        return text.casefold()
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def words(text: str, *, limit: int | None = None) -> list[str]:
    """The folded words of ``text`` (runs of letters and digits, at most ``limit`` of them)."""
    found: list[str] = []
    for match in _WORD.finditer(fold(text)):
        word = match.group()
        if len(word) <= MAX_WORD:
            found.append(word)
            if limit is not None and len(found) >= limit:
                break
    return found


@lru_cache(maxsize=65_536)
def stem(word: str) -> str:
    """The Snowball English stem of a folded word (``"meetings"`` -> ``"meet"``)."""
    result: str = _STEMMER.stemWord(word)
    return result


def lexemes(text: str, *, limit: int | None = None) -> list[str]:
    """Stems of the words of ``text`` in order (:func:`words` then :func:`stem`)."""
    return [stem(word) for word in words(text, limit=limit)]


def terms(text: str, *, limit: int | None = None) -> str:
    """:func:`lexemes` joined by spaces: the stored form of an indexed field."""
    return " ".join(lexemes(text, limit=limit))
