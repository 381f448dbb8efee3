"""Relevance score (issue 11): the substring lookups of ``search.score`` give the score of its rule (per query
word, at most 8 in sorted order: 4 if a subject term, 2 if an address term, 1 if an attachment-name term) on
stored terms, words that are prefixes or suffixes of terms included."""

from __future__ import annotations

import random
from types import SimpleNamespace

from email_service.services.search import score

_TERMS = ["meet", "meeting", "budget", "budg", "review", "preview", "a", "com", "example0", "sender42", "pdf", "x1"]


def _rule(words: set[str], row: SimpleNamespace) -> int:
    fields = [(row.subject_terms, 4), (row.address_terms, 2), (row.attachment_terms, 1)]
    return sum(weight for word in sorted(words)[:8] for text, weight in fields if word in text.split())


def test_score_is_the_rule_on_random_terms() -> None:
    rng = random.Random(7)
    for _ in range(2000):
        row = SimpleNamespace(**{field: " ".join(rng.choices(_TERMS, k=rng.randint(0, 8)))
                                 for field in ("subject_terms", "address_terms", "attachment_terms")})  # fmt: skip
        words = set(rng.choices(_TERMS, k=rng.randint(1, 10)))
        assert score(words, row) == _rule(words, row)


def test_a_word_counts_only_as_a_whole_term() -> None:
    row = SimpleNamespace(subject_terms="meeting preview", address_terms="budg com", attachment_terms="")
    assert score({"meet", "review", "budget"}, row) == 0
    assert score({"meeting", "budg"}, row) == 6
