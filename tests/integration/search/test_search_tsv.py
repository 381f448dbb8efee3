"""The ``tsvector`` literal of migration 0012 on both databases: words that PostgreSQL's parser would cut or re-case
get none (the row's trigger computes them), and a message written by each path is found by a phrase and by
``subject:``.  The literal is compared with PostgreSQL's own expression in ``test_search_tsv_postgresql.py``."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from flask.testing import FlaskClient
from sqlalchemy import delete, text, update

from email_service.models import EmailMessage, SearchDoc
from email_service.services.context import ServiceContext
from email_service.services.search_index import backfill_account, reindex_messages
from email_service.services.search_text import terms
from email_service.services.search_tsvector import tsvector_literal
from tests.integration.search.conftest import Box, raw_message

pytestmark = pytest.mark.integration

#: Words whose letters, digits or case depend on the database's LC_CTYPE (no literal: the trigger computes them).
UNICODE_WORDS = ["Köln", "Łukasz", "日本語", "½", "x²", "İstanbul", "ǅemal", "ꭰ", "ﬁle", "Σίσυφος", "٣٤", "Ⅻ", "straße"]


def test_terms_that_the_parser_would_cut_or_recase_get_no_literal(ctx: ServiceContext) -> None:
    """The parser reads ``1e10x`` as two words, and non-ASCII letters by the database's LC_CTYPE: no literal."""
    assert tsvector_literal([("1e10x", "A")]) is None and tsvector_literal([("a 12e3abc", "C")]) is None
    assert tsvector_literal([("1e10 x 3e x1e5", "A")]) == "1e10:1A 3e:3A x:2A x1e5:4A"
    folded = {word: terms(word) for word in UNICODE_WORDS}  # some fold to ASCII: Köln -> koln, ﬁle -> file
    assert sum(not lexemes.isascii() for lexemes in folded.values()) >= 4
    for word, lexemes in folded.items():
        assert (tsvector_literal([("", "A"), (lexemes, "B")]) is None) == (not lexemes.isascii()), word
    if ctx.db.is_postgres:
        with ctx.db.engine.connect() as connection:
            assert connection.execute(text("SELECT to_tsvector('simple', '1e10x')::text")).scalar() == "'1e10':1 'x':2"


def _found(client: FlaskClient, box: Box, query: str) -> set[str]:
    response = client.get(
        f"/api/v1/accounts/{box.account_id}/messages/search", query_string={"q": query}, headers=box.owner.headers
    )
    assert response.status_code == 200, response.get_json()
    return {uuid.UUID(message["id"]) for message in response.get_json()["messages"]}


def test_a_message_of_each_write_path_is_found_by_phrase_and_subject(
    client: FlaskClient, ctx: ServiceContext, make_box: Callable[..., Box]
) -> None:
    """The store path (sync, write-back, sending), a reindex and the backfill each leave a message that a phrase
    (word positions) and ``subject:`` (weight A) find, on both databases; a non-ASCII one too (the trigger)."""
    box = make_box()
    paths = ("stored", "reindexed", "backfilled", "unicode")
    ids = {}
    for path in paths:
        subject = f"Quarterly {path} walrus review" if path != "unicode" else "Grüße aus Łódź walrus review"
        body = f"The meeting about the {path} narwhal budget. " + "filler words " * 100 + "closing budget"
        (ids[path],) = box.store("INBOX", [raw_message(subject=subject, body=body)])
    with ctx.db.tenant_session(box.owner.tenant_id) as session:
        reindex_messages(session, [ids["reindexed"]])
        session.execute(delete(SearchDoc).where(SearchDoc.message_id == ids["backfilled"]))
        session.execute(update(EmailMessage).where(EmailMessage.id == ids["backfilled"]).values(thread_id=None))
        backfill_account(session, tenant_id=box.owner.tenant_id, account_id=box.account_id)
    everything = set(ids.values())
    assert _found(client, box, '"walrus review"') == everything
    assert _found(client, box, "subject:walrus") == everything
    assert _found(client, box, "subject:narwhal") == set()
    assert _found(client, box, '"review walrus"') == set()
    assert _found(client, box, '"words closing budget"') == everything
    for path in ("stored", "reindexed", "backfilled"):
        assert _found(client, box, f'"the {path} narwhal"') == {ids[path]}
        assert _found(client, box, f"subject:{path}") == {ids[path]}
    assert _found(client, box, '"aus łódź walrus"') == {ids["unicode"]}
    assert _found(client, box, "subject:łódź") == {ids["unicode"]}
