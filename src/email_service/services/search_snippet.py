"""The snippet of a search hit (issue 11): about :data:`SNIPPET_WORDS` words of the body (else the subject) around
the first word whose stem the query asked for, HTML-escaped, matched words in ``<mark>``.

Finding that word means stemming the text's words.  The doc row already holds them stemmed, in order
(``body_terms`` / ``subject_terms`` of :mod:`.search_index`), so for an ASCII text -- where the words of the text
and of its terms are the same runs of ``[A-Za-z0-9]`` (:func:`.search_text.words`) -- the first match is the first
matching lexeme of the terms, found without stemming anything (a 50-hit page: ~2 ms instead of ~12 ms).  Any other
text, or terms that do not line up with the text, take the general path: stem each distinct word of the text.
Both give the same snippet (``tests/unit/test_search_snippet.py``).
"""

from __future__ import annotations

import html
import re
from functools import lru_cache
from itertools import islice
from typing import Any, Literal

from email_service.services.search_index import body_text
from email_service.services.search_text import MAX_BODY_WORDS, MAX_WORD, fold, stem

__all__ = ["SNIPPET_WORDS", "snippet"]

SNIPPET_WORDS = 30
_SNIPPET_SOURCE = 200_000  # characters of a body a snippet looks at
_WORD = re.compile(r"[^\W_]+")
_SPACES = re.compile(r"\s+")
#: ASCII letters and digits -> ``a``, any other byte -> a space; a word over ``MAX_WORD`` letters is then a run of
#: :data:`_LONG_RUN` (:func:`_has_long_word`).
_LETTERS_AS_A = bytes(97 if chr(c).isascii() and chr(c).isalnum() else 32 for c in range(256))
_LONG_RUN = b"a" * (MAX_WORD + 1)
_TERM = re.compile(r"[^ ]+")
#: A match of ``(spans, leading, marker)``: the word spans around the first match, whether words precede them,
#: the regex of the words to mark.
Found = tuple[list[tuple[int, int]], bool, re.Pattern[str]]


def snippet(message: Any, words: set[str], terms: tuple[str, str] | None = None) -> str:
    """About :data:`SNIPPET_WORDS` words of the body around its first word whose stem is in ``words`` (else of the
    subject, else the start of the body), HTML-escaped, matched words wrapped in ``<mark>``.

    ``message``: anything with ``text_body``, ``html_body`` and ``subject`` (an ``EmailMessage``, a row);
    ``terms``: its doc row's ``(body_terms, subject_terms)`` when at hand (faster, the same result).
    """
    sources = [body_text({"text_body": message.text_body, "html_body": message.html_body}), message.subject or ""]
    for source, lexemes in zip(sources, terms or (None, None), strict=True):
        found = _first_match(source, words, lexemes)
        if found is not None:
            return _marked(source, *found)
    source = sources[0] or sources[1]
    spans = [m.span() for m in islice(_WORD.finditer(source, 0, 20_000), SNIPPET_WORDS + 1)]
    return _marked(source, spans, False, None) if spans else ""


@lru_cache(maxsize=65_536)
def _stemmed(word: str) -> str:
    return stem(fold(word))


@lru_cache(maxsize=1024)
def _marker(matching: frozenset[str]) -> re.Pattern[str]:
    """A regex finding any of ``matching`` as a whole word (captured, for ``split``)."""
    alternatives = "|".join(re.escape(word) for word in sorted(matching, key=lambda word: (-len(word), word)))
    return re.compile(rf"(?<![^\W_])({alternatives})(?![^\W_])")


@lru_cache(maxsize=32)
def _words_regex(count: int) -> re.Pattern[str]:
    """A regex matching ``count`` words of an ASCII text and the non-word characters before each."""
    return re.compile(rf"(?:[^A-Za-z0-9]*+[A-Za-z0-9]++){{{count}}}")  # possessive: no backtracking


def _word_start(source: str, index: int) -> int | None:
    """Where the word at ``index`` of an ASCII ``source`` starts (``None``: it has fewer words): the words before
    it skipped by regexes of 2**k words (a few C-level matches, no regex compiled per index)."""
    position = 0
    for bit in range(index.bit_length()):
        if index >> bit & 1:
            skipped = _words_regex(1 << bit).match(source, position)
            if skipped is None:
                return None
            position = skipped.end()
    found = _WORD.search(source, position)
    return None if found is None else found.start()


def _first_match(source: str, words: set[str], lexemes: str | None = None) -> Found | None:
    """The word spans of ``source`` around its first word whose stem is in ``words`` (within its first
    :data:`MAX_BODY_WORDS` words) -- from :data:`SNIPPET_WORDS` // 4 words before it (or the first word) to one past
    the snippet window --, whether words precede them, and the regex of the words to mark; ``None`` when there is
    no such word.  ``lexemes``: the stored terms of ``source`` (used when they line up with it)."""
    if not words:
        return None
    if lexemes is not None and source.isascii() and len(source) <= _SNIPPET_SOURCE:
        found = _by_terms(source, words, lexemes)
        if found is not False:
            return found
    # The distinct words first (in C), stemmed once each (cached); then the first of the matching ones by a regex.
    matching = frozenset(word for word in set(_WORD.findall(source, 0, _SNIPPET_SOURCE)) if _stemmed(word) in words)
    if not matching:
        return None
    marker = _marker(matching)
    first = marker.search(source, 0, _SNIPPET_SOURCE)
    if first is None:  # pragma: no cover - every matching word occurs
        return None
    before = len(_WORD.findall(source, 0, first.start()))
    if before >= MAX_BODY_WORDS:
        return None
    lead = min(before, SNIPPET_WORDS // 4)
    spans: list[tuple[int, int]] = []
    if lead:  # the ``lead`` words before the match: found walking back from it
        back = max(0, first.start() - 64 * (lead + 1))
        while len(tail := [m.span() for m in _WORD.finditer(source, back, first.start())]) <= lead and back > 0:
            back = max(0, back - 64 * (lead + 1))
        spans = tail[-lead:]
    for match in _WORD.finditer(source, first.start(), _SNIPPET_SOURCE):
        spans.append(match.span())
        if len(spans) > SNIPPET_WORDS:
            break
    return spans, before > lead, marker


def _by_terms(source: str, words: set[str], lexemes: str) -> Found | Literal[False] | None:
    """:func:`_first_match` of an ASCII ``source`` from its stored ``lexemes`` (single spaces between them);
    ``False`` when they do not line up with it (a word over :data:`.search_text.MAX_WORD` letters, which the index
    skips; or terms that are not this text's).  The terms are searched in place (``str.find``, ``str.count``): only
    the window's ~30 are cut out, not the thousands of a long body."""
    padded = f" {lexemes} "
    found = [at for word in words if (at := padded.find(f" {word} ")) >= 0]
    if not found:  # unless a word the index skipped (over MAX_WORD letters) would have matched
        return False if _has_long_word(source, len(source)) else None
    position = min(found)  # where the first matching term's space is; its index: the spaces before it
    at = padded.count(" ", 0, position)
    if at >= MAX_BODY_WORDS:
        return False
    lead = min(at, SNIPPET_WORDS // 4)
    first = position
    for _ in range(lead):  # back to the space before the window's first term
        first = padded.rfind(" ", 0, first)
    window = [term.group() for term in islice(_TERM.finditer(padded, first), SNIPPET_WORDS + 1)]
    start = _word_start(source, at - lead)
    spans = [] if start is None else [m.span() for m in islice(_WORD.finditer(source, start), SNIPPET_WORDS + 1)]
    if len(spans) <= lead or _has_long_word(source, spans[-1][1]):
        return False  # fewer words than terms, or a word the index skipped: the terms do not line up with the text
    if window[lead] != _stemmed(source[slice(*spans[lead])]):
        return False  # another word there: not this text's terms
    matching = frozenset(
        source[a:b]
        for index, (a, b) in enumerate(spans[:SNIPPET_WORDS])
        if (window[index] if index < len(window) else _stemmed(source[a:b])) in words
    )
    return spans, at > lead, _marker(matching)


def _has_long_word(source: str, end: int) -> bool:
    """Whether the ASCII ``source[:end]`` has a word over :data:`.search_text.MAX_WORD` letters (one that the index
    skips): its letters and digits turned into ``a`` and the rest into spaces by one C-level ``bytes.translate``,
    then a substring search for ``MAX_WORD + 1`` ``a``s (~10x a split of the text on white space)."""
    return _LONG_RUN in source[:end].encode("ascii").translate(_LETTERS_AS_A)


def _marked(source: str, spans: list[tuple[int, int]], leading: bool, marker: re.Pattern[str] | None) -> str:
    """The first :data:`SNIPPET_WORDS` of ``spans`` as HTML (runs of white space as one space), ``…`` before when
    ``leading`` and after when ``spans`` has more; the words ``marker`` finds in ``<mark>``."""
    window = spans[:SNIPPET_WORDS]
    text = _SPACES.sub(" ", source[window[0][0] : window[-1][1]])  # words hold no white space: only gaps change
    # ``split`` on the captured words: even items are the text between them, odd items the words
    parts = marker.split(text) if marker is not None else [text]
    body = "".join(f"<mark>{html.escape(part)}</mark>" if i % 2 else html.escape(part) for i, part in enumerate(parts))
    return (("… " if leading else "") + body + (" …" if len(spans) > SNIPPET_WORDS else "")).strip()
