"""The index's words (issue 11): the fast ASCII tokenizer and the batched stemming give exactly the words and
stems of the defining rule -- runs of Unicode letters and digits of the folded text, at most ``MAX_WORD`` long,
the first ``limit`` of them, each stemmed by Snowball English -- so the search finds the same messages."""

from __future__ import annotations

import random
import re

import pytest
import Stemmer

from email_service.services.search_text import MAX_WORD, fold, lexemes, terms, words

_RULE = re.compile(r"[^\W_]+")
_SNOWBALL = Stemmer.Stemmer("english")


def rule_words(text: str, limit: int | None = None) -> list[str]:
    found = [word for word in _RULE.findall(fold(text)) if len(word) <= MAX_WORD]
    return found if limit is None else found[:limit]


SAMPLES = [
    "",
    "   \t\n",
    "Meetings, meeting; MEETING_notes -- re-scheduled: 2026-03-01 at 10:30 (v2.1)",
    "snake_case_words and under__scores_ are two words each",
    "Ärger über Grüße aus Köln, straße, ﬁle, ①②, x²",
    "İstanbul \u0131i Σίσυφος ΣΊΣΥΦΟΣ",
    "日本語のテキスト mixed with ASCII words",
    "a" * MAX_WORD + " " + "b" * (MAX_WORD + 1) + " running " + "c" * 500,
    "\x00\x7f\x1b[0m control characters\x0cbetween words",
    "tabs\tand\r\nnewlines\vand\x1cfile separators",
]


@pytest.mark.parametrize("text", SAMPLES)
@pytest.mark.parametrize("limit", [None, 1, 3])
def test_words_and_stems_follow_the_rule(text: str, limit: int | None) -> None:
    expected = rule_words(text, limit)
    assert words(text, limit=limit) == expected
    assert lexemes(text, limit=limit) == [_SNOWBALL.stemWord(word) for word in expected]
    assert terms(text, limit=limit) == " ".join(_SNOWBALL.stemWord(word) for word in expected)


def test_random_ascii_and_unicode_texts_follow_the_rule() -> None:
    rng = random.Random(11)
    alphabet = "abcXYZ019 _-.,'\"\t\n\x00\x7féäßİ\u0131Σ\u03c3ςﬁ①²\u0301"
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40))) for _ in range(2000)]
    texts += ["".join(chr(rng.randint(0, 127)) for _ in range(60)) for _ in range(2000)]
    for text in texts:
        assert words(text, limit=5) == rule_words(text, 5), repr(text)
        assert lexemes(text) == [_SNOWBALL.stemWord(word) for word in rule_words(text)], repr(text)


def test_words_past_the_limit_and_overlong_words_are_not_indexed() -> None:
    text = "x" * (MAX_WORD + 1) + " " + " ".join(f"w{i}" for i in range(20))
    assert words(text, limit=10) == [f"w{i}" for i in range(10)]
