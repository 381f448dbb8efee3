"""Snippets (issue 11): the fast path from the doc's stored terms gives exactly the snippet of the general path
(stemming the text's words), on random texts with the cases where they could differ: non-ASCII words, words over
``MAX_WORD`` letters (the index skips them), HTML bodies, matches past ``MAX_BODY_WORDS`` words, terms that are not
the text's."""

from __future__ import annotations

import html
import random
import re
from types import SimpleNamespace

import pytest

from email_service.services.search_index import body_text
from email_service.services.search_snippet import snippet
from email_service.services.search_text import MAX_BODY_WORDS, MAX_WORD, fold, lexemes, stem, terms

_WORDS = ["budget", "Budgets", "meeting", "MEETINGS", "review", "café", "naïve", "ß", "straße", "ﬁle", "a\u0301b",
          "x", "1", "42", "foo-bar", "a_b", "&", "<b>", "'", '"', "amp", "lt", "quick", "brown", "fox", "lorem",
          "ipsum", "x" * (MAX_WORD + 1), "y" * MAX_WORD, "report", "reports"]  # fmt: skip
_GAPS = [" ", "", "\n", "  \t ", " - ", "_", ". "]


def _message(text: str, subject: str, html: bool) -> SimpleNamespace:
    return SimpleNamespace(text_body=None if html else text, html_body=f"<p>{text}</p>" if html else None,
                           subject=subject)  # fmt: skip


def _stored_terms(message: SimpleNamespace) -> tuple[str, str]:
    """The ``(body_terms, subject_terms)`` the index stores for ``message`` (``search_index.doc_row``)."""
    body = body_text({"text_body": message.text_body, "html_body": message.html_body})
    return terms(body, limit=MAX_BODY_WORDS), terms(message.subject)


@pytest.mark.parametrize("seed", range(8))
def test_the_snippet_from_the_stored_terms_is_the_snippet_from_the_text(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(400):
        ascii_only = rng.random() < 0.7
        pool = [word for word in _WORDS if word.isascii() and len(word) <= MAX_WORD] if ascii_only else _WORDS
        text = "".join(rng.choice(pool) + rng.choice(_GAPS) for _ in range(rng.choice([0, 1, 5, 40, 300])))
        message = _message(text, " ".join(rng.choices(pool, k=rng.randint(0, 6))), rng.random() < 0.1)
        words = set(lexemes(" ".join(rng.choices(_WORDS, k=rng.randint(0, 3)))))
        assert snippet(message, words, _stored_terms(message)) == snippet(message, words)


def test_a_match_after_the_indexed_words_and_terms_of_another_text() -> None:
    late = _message(" ".join(["x"] * (MAX_BODY_WORDS + 5)) + " budget", "budget today", False)
    assert snippet(late, {"budget"}, _stored_terms(late)) == snippet(late, {"budget"}) == "<mark>budget</mark> today"
    edge = _message(" ".join(["x"] * (MAX_BODY_WORDS - 3)) + " budget" * 40, "s", False)
    assert snippet(edge, {"budget"}, _stored_terms(edge)) == snippet(edge, {"budget"})
    assert snippet(edge, {"budget"}).count("<mark>budget</mark>") == 23  # 7 words before it, 30 in all
    message = _message("alpha beta gamma budget delta", "s", False)
    expected = "alpha beta gamma <mark>budget</mark> delta"
    for stale in [("alpha budget", "s"), ("a b c d e f g h budget", "s")]:  # not this text's: the general path
        assert snippet(message, {"budget"}, stale) == expected


def _reference(message: SimpleNamespace, words: set[str]) -> str:
    """The snippet rule written the plain way: every word of the text (``[^\\W_]+``) stemmed in order, the first
    match within the first ``MAX_BODY_WORDS`` words, 7 words before it and 30 in all, white space runs as one
    space, HTML-escaped, matched words marked; else the subject; else the first 30 words of the body (or
    subject)."""
    sources = [body_text({"text_body": message.text_body, "html_body": message.html_body}), message.subject or ""]
    for source in sources:
        found = list(re.finditer(r"[^\W_]+", source[:200_000]))
        first = next((i for i, m in enumerate(found) if words and stem(fold(m.group())) in words), None)
        if first is not None and first < MAX_BODY_WORDS:
            lead = min(first, 7)
            return _plain(source, found[first - lead :], words, first > lead)
    source = sources[0] or sources[1]
    return _plain(source, list(re.finditer(r"[^\W_]+", source[:20_000])), set(), False)


def _plain(source: str, found: list[re.Match[str]], words: set[str], leading: bool) -> str:
    if not found:
        return ""
    window = found[:30]
    parts = []
    for index, match in enumerate(window):
        if index:
            parts.append(html.escape(re.sub(r"\s+", " ", source[window[index - 1].end() : match.start()])))
        marked = stem(fold(match.group())) in words
        parts.append(f"<mark>{html.escape(match.group())}</mark>" if marked else html.escape(match.group()))
    return (("… " if leading else "") + "".join(parts) + (" …" if len(found) > 30 else "")).strip()


_BODIES = [
    "",
    "budget",
    "Budgets were reviewed. The meeting is on Monday.",
    "nothing to see here at all, just words and more words",
    " ".join(f"w{i}" for i in range(60)) + " meetings",
    "meeting " + " ".join(f"w{i}" for i in range(60)),
    " ".join(["filler"] * (MAX_BODY_WORDS + 20)) + " budget at the very end",
    " ".join(["filler"] * (MAX_BODY_WORDS - 2)) + " x budget edge",
    "Caf\u00e9 na\u00efve stra\u00dfe \uff46ile budgeting \u00c4rger reviews",
    "a" * (MAX_WORD + 5) + "ing budget " + "z" * (MAX_WORD + 1) + " meeting",
    "tabs\tand\nnew\r\nlines   budget\t\treview <b>&amp;</b> \"quoted\" 'single'",
    "reviewing reviewed reviews review reviewer",
]


@pytest.mark.parametrize("seed", range(6))
def test_the_snippet_is_the_plain_rule_on_varied_bodies(seed: int) -> None:
    rng = random.Random(seed)
    queries = [set(), {"budget"}, {"meet"}, {"review"}, {"budget", "review"}, {"cafe", "file"}, {"a" * (MAX_WORD + 5)},
               {"zzz"}, {"arger"}, {"filler"}]  # fmt: skip
    for body in _BODIES:
        for html_body in (False, True):
            subject = rng.choice(["", "Budget meeting", "no match", "Reviews \u00e9t\u00e9"])
            message = _message(body, subject, html_body)
            for words in queries:
                expected = _reference(message, words)
                assert snippet(message, words) == expected, (body[:60], words)
                assert snippet(message, words, _stored_terms(message)) == expected, (body[:60], words)


@pytest.mark.parametrize("seed", range(4))
def test_random_texts_give_the_plain_rule(seed: int) -> None:
    rng = random.Random(100 + seed)
    for _ in range(150):
        text = "".join(rng.choice(_WORDS) + rng.choice(_GAPS) for _ in range(rng.choice([0, 1, 5, 40, 300])))
        message = _message(text, " ".join(rng.choices(_WORDS, k=rng.randint(0, 6))), rng.random() < 0.2)
        words = set(lexemes(" ".join(rng.choices(_WORDS, k=rng.randint(0, 3)))))
        assert snippet(message, words, _stored_terms(message)) == _reference(message, words)
