"""PostgreSQL only (collected with ``TEST_DATABASE_URL``, ``tests/conftest.py``; CI runs it): PostgreSQL's ``tsv``
written by the service (migration 0012) is exactly migration 0007's generated expression
``setweight(to_tsvector('simple', subject_terms), 'A') || ... 'B' || ... 'C' || ... 'D'`` of the row's terms: the
Python ``tsvector`` literal (:mod:`email_service.services.search_tsvector`) is compared with the expression that
PostgreSQL computes on many random and awkward terms, and every doc row stored by the write paths (the store path
of sync, write-back and sending; reindexing; the backfill; an insert without ``tsv``) is checked against it."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import pytest
from sqlalchemy import delete, select, text, update

from email_service.models import EmailMessage, SearchDoc
from email_service.services.context import ServiceContext
from email_service.services.search_index import TSV_FIELDS, backfill_account, doc_tsv, reindex_messages
from email_service.services.search_text import terms
from email_service.services.search_tsvector import MAX_POSITION, tsvector_literal
from tests.integration.search.conftest import Box, raw_message
from tests.integration.search.test_search_tsv import UNICODE_WORDS

pytestmark = pytest.mark.integration

_EXPRESSION = " || ".join(f"setweight(to_tsvector('simple', {c}), '{w}')" for c, w in TSV_FIELDS)
#: Words of the random texts: stems, repeats, digits, the parser's number forms, long words, punctuation.
_ASCII = (
    "meeting meetings the a I running ran 2026 007 1e5 1e10 3e 0x1f e5 v2 x1y2 snake_case re-scheduled "
    "10:30 1.5 a.b@c.de http://x.y/z don't ok! " + "x" * 100 + " " + "y" * 101
).split()


def _text(rng: random.Random, vocabulary: Sequence[str], length: int) -> str:
    return " ".join(rng.choices(vocabulary, k=length))


def _length(rng: random.Random) -> int:
    return rng.choice((0, 0, 1, 2, 5, 40, 254, 255, 256, 300, 2000, rng.randint(0, 17_000)))


def _random_fields(rng: random.Random, vocabulary: Sequence[str]) -> tuple[str, str, str, str]:
    """Four term strings as :func:`terms` makes them from random texts (the body not cut to MAX_BODY_WORDS, so
    positions reach and pass 16,383)."""
    small = vocabulary[: rng.randint(1, len(vocabulary))]  # few distinct words: many repeats
    subject, addresses, body, names = (terms(_text(rng, rng.choice((vocabulary, small)), _length(rng))) for _ in "1234")
    return subject, addresses, body, names


def _awkward_fields() -> list[tuple[str, str, str, str]]:
    """Edges of the positions: 255/256 per lexeme, clamping at 16,383 inside a field and through the offsets."""
    return [
        ("", "", "", ""),
        ("a", "", "", "a"),
        ("a " * 255, "a " * 2, "a", ""),
        ("a " * 300, "a " * 300, "b a", "a b"),
        ("b " * 16_390, "a", "b a", "c"),
        ("x " * (MAX_POSITION - 1), "x y", "y", "x"),
        ("x " * MAX_POSITION, "", "x y", "y"),
        ("w " * 16_000, "a " * 300, "w " * 500 + "z", "a w z"),
        (" ".join(f"w{i}" for i in range(20_000)), "w1 w19999", "", "w3"),
    ]


def _mismatches(ctx: ServiceContext, rows: Sequence[tuple[str, str, str, str]]) -> list[int]:
    """Indexes of ``rows`` whose :func:`tsvector_literal` differs from PostgreSQL's expression (text and ``=``)."""
    literals = [tsvector_literal(list(zip(row, "ABCD", strict=True))) for row in rows]
    assert None not in literals, [row for row, lit in zip(rows, literals, strict=True) if lit is None][:1]
    columns = [list(column) for column in zip(*rows, strict=True)]
    query = text(
        "SELECT i - 1 FROM unnest(CAST(:lit AS text[]), CAST(:s AS text[]), CAST(:a AS text[]), "  # noqa: S608
        "CAST(:b AS text[]), CAST(:f AS text[])) WITH ORDINALITY "
        "AS t(lit, subject_terms, address_terms, body_terms, attachment_terms, i) "
        f"WHERE NOT (CAST(lit AS tsvector) = ({_EXPRESSION}) AND CAST(lit AS tsvector)::text = ({_EXPRESSION})::text)"
    )
    with ctx.db.engine.connect() as connection:
        found = connection.execute(query, dict(zip(("lit", "s", "a", "b", "f"), (literals, *columns), strict=True)))
        return [int(index) for index in found.scalars()]


def test_the_literal_is_the_expression_of_the_terms(ctx: ServiceContext) -> None:
    rng = random.Random(20261130)
    plain = [_random_fields(rng, _ASCII) for _ in range(400)]
    rows = _awkward_fields() + plain
    bad = _mismatches(ctx, rows)
    assert bad == [], [[field[:200] for field in rows[i]] for i in bad[:2]]


def test_every_stored_tsv_is_the_expression_of_its_terms(ctx: ServiceContext, make_box: Callable[..., Box]) -> None:
    """Rows written by the store path (literal or trigger), by reindexing, by the backfill, by an ORM insert without
    ``tsv`` and by an update of the terms all hold the expression of their terms."""
    rng = random.Random(7)
    box = make_box()
    vocabulary = _ASCII + UNICODE_WORDS
    raws = [
        raw_message(
            subject=_text(rng, rng.choice((_ASCII, vocabulary)), rng.randint(0, 12)),
            sender=f"{rng.choice(rng.choice((_ASCII, vocabulary)))} <s{index}@example.com>",
            body=_text(rng, rng.choice((_ASCII, vocabulary)), rng.choice((0, 3, 700, 12_000))),
            attachments=[(f"{rng.choice(vocabulary)}.pdf", b"%PDF")] if index % 3 == 0 else [],
        )
        for index in range(60)
    ]
    ids = box.store("INBOX", raws)
    with ctx.db.tenant_session(box.owner.tenant_id) as session:
        docs = session.execute(select(SearchDoc).where(SearchDoc.account_id == box.account_id)).scalars().all()
        literal = [doc for doc in docs if doc_tsv({c: getattr(doc, c) for c, _ in TSV_FIELDS}) is not None]
        assert 0 < len(literal) < len(docs)  # both the literal and the trigger wrote some
        reindex_messages(session, ids[:5])
        session.execute(delete(SearchDoc).where(SearchDoc.message_id.in_(ids[5:10])))
        session.execute(update(EmailMessage).where(EmailMessage.id.in_(ids[5:10])).values(thread_id=None))
        backfill_account(session, tenant_id=box.owner.tenant_id, account_id=box.account_id)
        session.execute(delete(SearchDoc).where(SearchDoc.message_id == ids[10]))
        session.add(SearchDoc(tenant_id=box.owner.tenant_id, account_id=box.account_id, message_id=ids[10],
                              subject_terms="orm insert", body_terms="no tsv given"))  # fmt: skip
        session.flush()
        session.execute(update(SearchDoc).where(SearchDoc.message_id == ids[11]).values(subject_terms="new words"))
        wrong = session.execute(
            text(
                "SELECT message_id FROM email_search_docs WHERE account_id = :account "  # noqa: S608
                f"AND (tsv IS NULL OR tsv::text <> ({_EXPRESSION})::text)"
            ),
            {"account": box.account_id},
        ).all()
        assert wrong == []
        count = session.execute(select(SearchDoc.message_id).where(SearchDoc.account_id == box.account_id)).all()
        assert len(count) == len(ids)
