"""Words of the search index and of search queries: one tokenizer and one stemmer for both databases.

A text is folded (NFKD, combining marks dropped, casefolded), cut into runs of letters and digits, and each word
is stemmed with the Snowball English stemmer (PyStemmer).  The index stores these lexemes separated by single
spaces; PostgreSQL indexes them as ``to_tsvector('simple', ...)`` would (written as a ``tsvector`` literal,
:mod:`email_service.services.search_tsvector`) and SQLite with FTS5 ``unicode61``, and both see the same plain
words, so results do not depend on the database.  A body is indexed up to
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
#: ASCII bytes -> themselves lower-cased if a letter or digit, else a space (the ASCII tokenizer of :func:`words`).
_ASCII_WORDS = bytes(c if chr(c).isalnum() else 32 for c in range(128)).lower() + b" " * 128
_STEMMER = Stemmer.Stemmer("english")


def fold(text: str) -> str:
    """``text`` without diacritics, casefolded (``"Ärger"`` -> ``"arger"``)."""
    if text.isascii():  # the common case, without a Python loop over the characters
        return text.casefold()
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def words(text: str, *, limit: int | None = None) -> list[str]:
    """The folded words of ``text`` (runs of letters and digits of at most :data:`MAX_WORD` characters; the first
    ``limit`` of them)."""
    if text.isascii():
        # The same words as the regex below for ASCII (letters and digits are [A-Za-z0-9], casefold is lower),
        # cut by one C-level translate and split instead of a regex match object per word: ~4x faster.
        found = text.encode("ascii").translate(_ASCII_WORDS).decode("ascii").split()
    else:
        found = _WORD.findall(fold(text))
    if found and max(map(len, found)) > MAX_WORD:
        found = [word for word in found if len(word) <= MAX_WORD]
    if limit is not None:
        del found[limit:]
    return found


@lru_cache(maxsize=65_536)
def stem(word: str) -> str:
    """The Snowball English stem of a folded word (``"meetings"`` -> ``"meet"``)."""
    result: str = _STEMMER.stemWord(word)
    return result


def lexemes(text: str, *, limit: int | None = None) -> list[str]:
    """Stems of the words of ``text`` in order (:func:`words` then :func:`stem`).

    Each distinct word is stemmed once (a 5 KB body repeats most of its words) and the stems mapped back in
    order, instead of a Python call per word.
    """
    found = words(text, limit=limit)
    stems = {word: stem(word) for word in set(found)}
    return list(map(stems.__getitem__, found))


def terms(text: str, *, limit: int | None = None) -> str:
    """:func:`lexemes` joined by spaces: the stored form of an indexed field."""
    return " ".join(lexemes(text, limit=limit))
