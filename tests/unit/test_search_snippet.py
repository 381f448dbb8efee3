"""Snippets (issue 11): the fast path from the doc's stored terms gives exactly the snippet of the general path
(stemming the text's words), on random texts with the cases where they could differ: non-ASCII words, words over
``MAX_WORD`` letters (the index skips them), HTML bodies, matches past ``MAX_BODY_WORDS`` words, terms that are not
the text's."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest

from email_service.services.search_index import body_text
from email_service.services.search_snippet import snippet
from email_service.services.search_text import MAX_BODY_WORDS, MAX_WORD, lexemes, terms

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
