"""PostgreSQL's weighted ``tsvector`` of a search doc, made in Python from the already-stemmed terms.

Migration 0007 made ``email_search_docs.tsv`` a generated column::

    setweight(to_tsvector('simple', subject_terms), 'A') || setweight(to_tsvector('simple', address_terms), 'B')
    || setweight(to_tsvector('simple', body_terms), 'C') || setweight(to_tsvector('simple', attachment_terms), 'D')

which ran the text-search parser over every doc (~0.5 ms a 5 KB message) inside the writer's transaction.  The
terms are already lexemes (:mod:`email_service.services.search_text`), so migration 0012 made ``tsv`` a plain
column and the writer sends it as a ``tsvector`` literal made by :func:`tsvector_literal`: the SAME lexemes,
positions and weights as that expression, by the rules of PostgreSQL 15 (``src/backend/tsearch/to_tsany.c``
``uniqueWORD``, ``src/backend/utils/adt/tsvector_op.c`` ``tsvector_concat`` / ``add_pos``):

* ``to_tsvector('simple', terms)``: the n-th word has position n, clamped to 16,383; a lexeme keeps its first
  255 positions and none after one at 16,383;
* ``left || right``: the right operand's positions are offset by the largest position in the left operand
  (clamped to 16,383); a lexeme in both keeps the left's positions, then the right's, up to 256 and none after
  16,383; ``setweight`` gives every position its operand's weight (D is the default and is not written).

Only terms that the parser reads back as exactly their own words take this path: words of ASCII letters and
digits, except a word that starts like a number in exponent notation and goes on with a letter (``1e10x``, which
the parser cuts in two).  For any other text -- non-ASCII words, whose letters and case depend on the database's
``LC_CTYPE`` -- :func:`tsvector_literal` returns ``None`` and the database computes the expression itself (a
``BEFORE INSERT`` trigger of migration 0012 fills a ``tsv`` left NULL).  ``tests/integration/search/
test_search_tsv_postgresql.py`` compares the two on PostgreSQL for many random and awkward texts.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Sequence
from functools import lru_cache
from itertools import repeat
from operator import add, call, itemgetter

#: Largest word position (PostgreSQL ``MAXENTRYPOS - 1``); larger positions are clamped to it.
MAX_POSITION = 16_383
#: Most positions a lexeme keeps in ``to_tsvector`` (``MAXNUMPOS - 1``) and after ``||`` (``MAXNUMPOS``).
PARSED_POSITIONS = 255
MAX_POSITIONS = 256
#: Weights of ``setweight`` as stored in a position's two low bits (A is the highest), and as written.
_WEIGHTS = {"A": 3, "B": 2, "C": 1, "D": 0}
_LETTERS = ("", "C", "B", "A")
#: Terms the parser reads back word for word: ASCII letters and digits separated by spaces ...
_PLAIN = re.compile(r"[a-z0-9 ]*")
#: ... without a word that starts as ``<digits>e<digits>`` and goes on with a letter (``sfloat`` then a word;
#: a digit, ``e``, a digit -- found as ``0e0`` once every digit is ``0`` -- is a cheaper first test).
_SPLIT_NUMBER = re.compile(r"(?:^| )[0-9]+e[0-9]+[a-z]")
_DIGITS_TO_0 = str.maketrans("123456789", "000000000")
_last = itemgetter(-1)


def _plain(terms: str) -> bool:
    """Whether the parser reads ``terms`` back as exactly its words (see the module docstring)."""
    if not _PLAIN.fullmatch(terms):
        return False
    return not ("0e0" in terms.translate(_DIGITS_TO_0) and _SPLIT_NUMBER.search(terms))


@lru_cache(maxsize=4)
def _tags(weight: int) -> tuple[str, ...]:
    """Text of each position 0..16,383 with ``weight`` (``"12A"``; weight D is not written)."""
    return tuple(f"{position}{_LETTERS[weight]}" for position in range(MAX_POSITION + 1))


def tsvector_literal(fields: Sequence[tuple[str, str]], *, split: Sequence[list[str]] | None = None) -> str | None:
    """The text of ``setweight(to_tsvector('simple', t1), w1) || setweight(to_tsvector('simple', t2), w2) || ...``
    for ``fields`` ``[(terms, weight letter "A".."D"), ...]`` (terms: stemmed words separated by spaces), lexemes
    in PostgreSQL's order, to be cast to ``tsvector``; ``None`` when some terms are not plain ASCII words (see the
    module docstring); ``split``: each field's terms as a list of words, if at hand.  About 0.15 ms for a 5 KB
    message of the benchmark (2-vCPU VM)."""
    if not all(_plain(terms) for terms, _weight in fields):
        return None
    weights = [_WEIGHTS[weight] for _terms, weight in fields]
    found_words = split if split is not None else [terms.split() for terms, _weight in fields]
    split_fields = list(zip(found_words, weights, strict=True))
    words: list[str] = []
    tags: list[str] = []  # the text of each word's position with its field's weight
    for found, weight in split_fields:
        tags += _tags(weight)[len(words) + 1 : len(words) + 1 + len(found)]
        words += found
    # Each word's tag appended to its lexeme's list, in order, by C-level calls (no Python step per word).
    lists: dict[str, list[str]] = {word: [] for word in set(words)}
    appenders = {word: found.append for word, found in lists.items()}
    deque(map(call, map(appenders.__getitem__, words), tags), maxlen=0)
    lexemes = sorted(lists)
    positions = list(map(lists.__getitem__, lexemes))
    if len(words) >= MAX_POSITION or max(map(len, positions), default=0) > PARSED_POSITIONS:
        return _clamped(split_fields)
    # The common case: nothing clamped nor dropped, so the n-th word of all the fields has position n, with its
    # field's weight: "lexeme:p1,p2 lexeme2:p3".
    return " ".join(map(add, map(add, lexemes, repeat(":")), map(",".join, positions)))


def _parsed(words: list[str], weight: int) -> dict[str, list[int]]:
    """``setweight(to_tsvector('simple', terms), weight)`` of the plain ``words`` of terms, as lexeme -> coded
    positions (``position * 4 + weight``)."""
    positions: dict[str, list[int]] = {}
    last = MAX_POSITION * 4 + weight
    for code, lexeme in zip(range(4 + weight, last, 4), words, strict=False):
        found = positions.get(lexeme)
        if found is None:
            positions[lexeme] = [code]
        elif len(found) < PARSED_POSITIONS:
            found.append(code)
    for lexeme in words[MAX_POSITION - 1 :]:  # every word from the 16,383rd on is at 16,383
        found = positions.setdefault(lexeme, [])
        if len(found) < PARSED_POSITIONS and (not found or found[-1] < last):
            found.append(last)
    return positions


def _concat(left: dict[str, list[int]], right: dict[str, list[int]]) -> None:
    """``left || right`` into ``left`` (coded positions, see :func:`_parsed`)."""
    if not right:
        return
    offset = (max(map(_last, left.values())) >> 2 << 2) if left else 0
    limit = MAX_POSITION << 2
    for lexeme, codes in right.items():
        moved = [code + offset for code in codes]
        if moved[-1] >= limit:  # clamped to 16,383, and nothing after the first one there
            moved = [code for code in moved if code < limit] + [limit | (moved[-1] & 3)]
        found = left.get(lexeme)
        if found is None:
            left[lexeme] = moved[:MAX_POSITIONS]
        elif found[-1] < limit:
            found.extend(moved[: MAX_POSITIONS - len(found)])


def _clamped(split: Sequence[tuple[list[str], int]]) -> str:
    """:func:`tsvector_literal` of long or repetitive terms, where positions are clamped or dropped: every rule of
    the module docstring, a Python step per word (~2x slower)."""
    vector: dict[str, list[int]] = {}
    for words, weight in split:
        _concat(vector, _parsed(words, weight))
    texts = [_tags(weight) for weight in range(4)]
    return " ".join(
        f"{lexeme}:{','.join(texts[code & 3][code >> 2] for code in vector[lexeme])}" for lexeme in sorted(vector)
    )
