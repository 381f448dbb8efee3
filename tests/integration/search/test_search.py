"""Search (issue 11): a table of queries with the exact message sets they must find on a known mailbox.

The suite runs on SQLite and, with ``TEST_DATABASE_URL``, on PostgreSQL: the same table, so both databases give the
same results.  Also: snippets, relevance and date order, errors naming the problem, isolation.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import delete, func, select, text

from email_service.app import create_app
from email_service.models import EmailFolder, EmailMessage, SearchDoc
from email_service.services import search as search_service
from email_service.services import search_sql
from email_service.services.context import ServiceContext
from email_service.sync.store import delete_messages
from tests.conftest import Caller
from tests.integration.search.conftest import BASE_MS, DAY_MS, Box, new_box, raw_message

pytestmark = pytest.mark.integration
HOUR_MS = 3_600_000
BOB = "Bob Baker <bob@example.org>"
#: label -> (folder, flags, raw_message arguments)
MAILBOX: dict[str, tuple[str, tuple[str, ...], dict[str, Any]]] = {
    "m01": ("INBOX", (), dict(subject="Quarterly budget review", to=BOB, date_ms=BASE_MS,
                             body="Please review the quarterly budget before Friday's meeting.")),
    "m02": ("INBOX", ("\\Seen",), dict(subject="Re: Quarterly budget review", sender=BOB,
                                       to="Alice Able <alice@example.com>", references=["m01@t"],
                                       body="The budgets look fine. Running late for the meeting.",
                                       date_ms=BASE_MS + DAY_MS)),
    "m03": ("INBOX", ("\\Flagged", "\\Answered"), dict(subject="Team lunch on Thursday",
                                                       sender="Carol Clark <carol@sample.net>",
                                                       to="team@example.com", cc=BOB,
                                                       body="Let's have lunch at the Italian place.",
                                                       date_ms=BASE_MS + 2 * DAY_MS)),
    "m04": ("INBOX", ("\\Seen",), dict(subject="Invoice 2026-031", sender="billing@vendor.example",
                                       body="Your invoice is attached.", date_ms=BASE_MS + 3 * DAY_MS,
                                       attachments=[("invoice-031.pdf", b"%PDF-1.4 invoice")])),
    "m05": ("INBOX", (), dict(subject="Photos from the trip", sender="Dave Diaz <dave@photos.example>",
                             body="Here are the pictures from our trip to Zürich.", date_ms=BASE_MS + 5 * DAY_MS,
                             attachments=[("beach.jpg", b"\xff\xd8" + bytes(300_000)),
                                          ("mountains.jpg", b"\xff\xd8" + bytes(300_000))])),
    "m06": ("INBOX", (), dict(subject="Newsletter: spring edition", sender="news@letters.example",
                             html="<html><body><h1>Spring</h1><p>Gardening tips &amp; <b>flowers</b></p>"
                                  "<script>var hidden = 'secretword';</script></body></html>",
                             date_ms=BASE_MS + 6 * DAY_MS)),
    "m07": ("Sent", ("\\Seen",), dict(subject="Re: Team lunch on Thursday", sender=BOB,
                                      to="Carol Clark <carol@sample.net>", references=["m03@t"],
                                      body="Count me in for lunch!", date_ms=BASE_MS + 2 * DAY_MS + HOUR_MS)),
    "m08": ("Drafts", ("\\Draft",), dict(subject="Draft proposal", sender=BOB,
                                         body="An unfinished proposal about the budget.",
                                         date_ms=BASE_MS + 7 * DAY_MS)),
    "m09": ("INBOX", (), dict(subject="Exact phrase test", sender="eve@example.com",
                             body="the quick brown fox jumps over the lazy dog", date_ms=BASE_MS + 8 * DAY_MS)),
    "m10": ("INBOX", ("\\Flagged",), dict(subject="Foxes and dogs", sender="eve@example.com",
                                          body="A dog was quick. The fox was brown.", date_ms=BASE_MS + 9 * DAY_MS)),
    "m11": ("Archive", ("\\Seen",), dict(subject="Old contract", sender="Frank <frank@legal.example>",
                                         body="The contract expired in 2025.", date_ms=BASE_MS - 30 * DAY_MS,
                                         attachments=[("contract.docx", b"PK\x03\x04 contract")])),
    "m12": ("INBOX", (), dict(subject="Café meeting", sender="José Núñez <jose@example.es>",
                             body="Meet at the café near the station.", date_ms=BASE_MS + 10 * DAY_MS)),
}  # fmt: skip
INBOX = {"m01", "m02", "m03", "m04", "m05", "m06", "m09", "m10", "m12"}
READ = {"m02", "m04", "m07", "m11"}

QUERIES: list[tuple[str, set[str]]] = [
    ("budget", {"m01", "m02", "m08"}),
    ("budgets", {"m01", "m02", "m08"}),
    ('"quarterly budget"', {"m01", "m02"}),
    ("meeting", {"m01", "m02", "m12"}),
    ("meet", {"m01", "m02", "m12"}),
    ("lunch", {"m03", "m07"}),
    ("from:alice", {"m01"}),
    ("from:ALICE@EXAMPLE.COM", {"m01"}),
    ("from:example.org", {"m02", "m07", "m08"}),
    ("from:Carol", {"m03"}),
    ("to:alice", {"m02"}),
    ("to:team", {"m03"}),
    ("cc:bob", {"m03"}),
    ("subject:lunch", {"m03", "m07"}),
    ("subject:budget", {"m01", "m02"}),
    ('subject:"budget review"', {"m01", "m02"}),
    ("filename:invoice", {"m04"}),
    ("filename:pdf", {"m04"}),
    ("filename:jpg", {"m05"}),
    ("has:attachment", {"m04", "m05", "m11"}),
    ("is:unread", set(MAILBOX) - READ),
    ("is:read", READ),
    ("is:flagged", {"m03", "m10"}),
    ("is:unflagged in:sent", {"m07"}),
    ("is:answered", {"m03"}),
    ("is:draft", {"m08"}),
    ("in:sent", {"m07"}),
    ("in:Sent", {"m07"}),
    ("in:drafts", {"m08"}),
    ("in:archive", {"m11"}),
    ("in:inbox", INBOX),
    ("before:2026-03-01", {"m11"}),
    ("after:2026-03-09", {"m09", "m10", "m12"}),
    ("after:2026-03-03 before:2026-03-05", {"m03", "m04", "m07"}),
    ("larger:500K", {"m05"}),
    ("larger:1M", set()),
    ("smaller:100K", set(MAILBOX) - {"m05"}),
    ('"quick brown fox"', {"m09"}),
    ("quick brown fox", {"m09", "m10"}),
    ("fox -lazy", {"m10"}),
    ("dog OR dogs", {"m09", "m10"}),
    ("lunch OR invoice", {"m03", "m04", "m07"}),
    ("budget -from:alice", {"m02", "m08"}),
    ("-is:read in:inbox", INBOX - READ),
    ("(lunch OR budget) is:unread", {"m01", "m03", "m08"}),
    ("-(lunch OR budget) in:inbox", INBOX - {"m01", "m02", "m03"}),
    ("trip", {"m05"}),
    ("zurich", {"m05"}),
    ("Zürich", {"m05"}),
    ("cafe", {"m12"}),
    ("café", {"m12"}),
    ("jose", {"m12"}),
    ("nunez", {"m12"}),
    ("gardening", {"m06"}),
    ("flowers", {"m06"}),
    ("secretword", set()),
    ("spring", {"m06"}),
    ("contract has:attachment", {"m11"}),
    ("2025", {"m11"}),
    ("031", {"m04"}),
    ('"invoice 2026"', {"m04"}),
    ("nothingmatchesthis", set()),
]


@pytest.fixture(scope="module")
def mailbox(ctx: ServiceContext) -> Box:
    """The known mailbox, stored once for the module (through the store functions every writer uses)."""
    box = new_box(ctx, create_app(context=ctx).test_client(), Caller(ctx))
    box.labels = {}  # type: ignore[attr-defined]
    for label, (folder, flags, fields) in MAILBOX.items():
        [row_id] = box.store(folder, [raw_message(message_id=f"{label}@t", **fields)], flags=[flags])
        box.labels[str(row_id)] = label  # type: ignore[attr-defined]
    return box


def search(client: FlaskClient, box: Box, q: str, **params: Any) -> Any:
    response = client.get(
        f"/api/v1/accounts/{box.account_id}/messages/search",
        query_string={"q": q, "limit": 100, **params},
        headers=box.owner.headers,
    )
    return response


def labels(box: Box, body: Any) -> list[str]:
    return [box.labels[m["id"]] for m in body["messages"]]  # type: ignore[attr-defined]


@pytest.mark.parametrize(("query", "expected"), QUERIES, ids=[q for q, _ in QUERIES])
def test_query_finds_exactly_its_messages(client: FlaskClient, mailbox: Box, query: str, expected: set[str]) -> None:
    response = search(client, mailbox, query)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert set(labels(mailbox, body)) == expected
    assert body["pagination"]["total"] == len(expected)


def test_the_table_is_large_enough_and_covers_every_operator() -> None:
    assert len(QUERIES) >= 40
    text = " ".join(q for q, _ in QUERIES)
    for operator in ("from:", "to:", "cc:", "subject:", "filename:", "has:", "is:", "in:", "before:", "after:",
                     "larger:", "smaller:", " OR ", '"', "-"):  # fmt: skip
        assert operator in text, operator


def test_folder_id_narrows_the_search(client: FlaskClient, mailbox: Box) -> None:
    body = search(client, mailbox, "lunch", folderId=str(mailbox.folders["Sent"])).get_json()
    assert labels(mailbox, body) == ["m07"]


def test_snippets_mark_the_matched_words(client: FlaskClient, mailbox: Box) -> None:
    body = search(client, mailbox, '"quick brown fox"').get_json()
    snippet = body["messages"][0]["snippet"]
    assert "<mark>quick</mark> <mark>brown</mark> <mark>fox</mark>" in snippet
    assert "lazy" in snippet and "<mark>lazy</mark>" not in snippet
    stemmed = search(client, mailbox, "budget from:bob").get_json()["messages"][0]["snippet"]
    assert "<mark>budgets</mark>" in stemmed
    html_only = search(client, mailbox, "flowers").get_json()["messages"][0]["snippet"]
    assert "<mark>flowers</mark>" in html_only and "<b>" not in html_only and "secretword" not in html_only


def test_relevance_puts_subject_matches_first_and_date_sort_is_newest_first(client: FlaskClient, mailbox: Box) -> None:
    relevance = labels(mailbox, search(client, mailbox, "budget").get_json())
    assert relevance == ["m02", "m01", "m08"]  # subject matches (newest first), then the body-only match
    by_date = labels(mailbox, search(client, mailbox, "budget", sort="date").get_json())
    assert by_date == ["m08", "m02", "m01"]


def test_pages_of_a_search(client: FlaskClient, mailbox: Box) -> None:
    first = search(client, mailbox, "in:inbox", sort="date", limit=4).get_json()
    second = search(client, mailbox, "in:inbox", sort="date", limit=4, offset=4).get_json()
    assert first["pagination"] == {"total": len(INBOX), "limit": 4, "offset": 0, "totalExact": True}
    seen = labels(mailbox, first) + labels(mailbox, second)
    assert len(seen) == len(set(seen)) == 8


@pytest.mark.parametrize(("query", "expected"), QUERIES, ids=[q for q, _ in QUERIES])
def test_walking_by_date_finds_what_starting_from_the_word_hits_finds(
    client: FlaskClient, mailbox: Box, monkeypatch: pytest.MonkeyPatch, query: str, expected: set[str]
) -> None:
    """SQLite's other plan (walk the docs newest first, an FTS5 lookup per word term), taken for common words, finds
    the same messages (on PostgreSQL the table runs twice)."""
    monkeypatch.setattr(search_sql, "FEW_HITS", 0)
    body = search(client, mailbox, query).get_json()
    assert set(labels(mailbox, body)) == expected
    assert body["pagination"]["total"] == len(expected)


def test_the_total_is_exact_up_to_the_cap_then_a_lower_bound(
    client: FlaskClient, mailbox: Box, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(search_service, "COUNT_CAP", 3)
    capped = search(client, mailbox, "in:inbox", sort="date", limit=2).get_json()["pagination"]
    assert capped == {"total": 3, "limit": 2, "offset": 0, "totalExact": False}
    deep = search(client, mailbox, "in:inbox", sort="date", limit=2, offset=4).get_json()["pagination"]
    assert (deep["total"], deep["totalExact"]) == (6, False)  # at least the hits up to this page
    whole = search(client, mailbox, "in:inbox", sort="date").get_json()["pagination"]
    assert (whole["total"], whole["totalExact"]) == (len(INBOX), True)  # the page itself holds every hit
    assert search(client, mailbox, "lunch", limit=1).get_json()["pagination"]["totalExact"] is True


def test_relevance_ranks_the_newest_hits_and_the_rest_follow_by_date(
    client: FlaskClient, mailbox: Box, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(search_service, "RANK_WINDOW", 2)
    # newest two hits (m08 body-only, m02 subject) ranked, then m01 (a subject match, but older) by date
    assert labels(mailbox, search(client, mailbox, "budget").get_json()) == ["m02", "m08", "m01"]
    pages = [labels(mailbox, search(client, mailbox, "budget", limit=1, offset=i).get_json()) for i in range(4)]
    assert pages == [["m02"], ["m08"], ["m01"], []]


@pytest.mark.parametrize(
    ("query", "mentions"),
    [
        ('"unbalanced', "quote"),
        ('subject:"open', "quote"),
        ("foo:bar", "unknown search operator 'foo:'"),
        ("(lunch", "parenthesis"),
        ("lunch)", "parenthesis"),
        ("OR lunch", "OR"),
        ("lunch OR", "OR"),
        ("is:weird", "is:"),
        ("has:nothing", "has:"),
        ("before:2026-13-01", "YYYY-MM-DD"),
        ("after:yesterday", "YYYY-MM-DD"),
        ("larger:big", "size"),
        ("from:", "needs a value"),
        ("()", "nothing to search"),
        ("...", "nothing to search"),
    ],
)
def test_a_bad_query_is_a_400_that_says_what_is_wrong(
    client: FlaskClient, mailbox: Box, query: str, mentions: str
) -> None:
    response = search(client, mailbox, query)
    assert response.status_code == 400, response.get_json()
    body = response.get_json()
    assert body["error"] == "Invalid request"
    assert mentions.lower() in body["message"].lower()


def test_a_search_never_crosses_users_or_tenants(
    client: FlaskClient, mailbox: Box, make_box: Callable[..., Box], make_caller: Callable[..., Caller]
) -> None:
    colleague = make_box(mailbox.owner.colleague(mailbox.ctx))  # same tenant, another user
    colleague.store("INBOX", [raw_message(subject="Quarterly budget review", body="budget budget")])
    stranger = make_box()  # another tenant
    stranger.store("INBOX", [raw_message(subject="Quarterly budget review", body="budget budget")])
    assert set(labels(mailbox, search(client, mailbox, "budget").get_json())) == {"m01", "m02", "m08"}
    for other in (colleague, stranger):
        assert search(client, other, "is:unread").get_json()["pagination"]["total"] == 1
        intruder = client.get(
            f"/api/v1/accounts/{mailbox.account_id}/messages/search",
            query_string={"q": "budget"},
            headers=other.owner.headers,
        )
        assert intruder.status_code in (403, 404), intruder.get_json()
    outsider = make_caller()
    response = client.get(
        f"/api/v1/accounts/{mailbox.account_id}/messages/search", query_string={"q": "x"}, headers=outsider.headers
    )
    assert response.status_code == 404


def test_deleted_messages_leave_the_index(client: FlaskClient, make_box: Callable[..., Box]) -> None:
    """A delete by the sync's path and a folder's cascade both take the doc rows (and, on SQLite, the FTS5 entries:
    its integrity check compares the index with the doc rows) with them; a later message reusing a doc row id is
    not found by the deleted words."""
    box = make_box()
    kept = box.store("INBOX", [raw_message(subject="kept walrus")])
    gone = box.store("INBOX", [raw_message(subject="gone narwhal"), raw_message(subject="gone narwhal too")])
    box.store("Old", [raw_message(subject="old narwhal")])
    with box.ctx.db.tenant_session(box.owner.tenant_id) as session:
        assert delete_messages(session, box.folders["INBOX"], EmailMessage.id, gone) == 2
        session.execute(delete(EmailFolder).where(EmailFolder.id == box.folders["Old"]))
    assert labels_of(search(client, box, "narwhal")) == []
    box.store("INBOX", [raw_message(subject="fresh beluga")])
    assert labels_of(search(client, box, "narwhal")) == []
    assert [m["id"] for m in search(client, box, "walrus").get_json()["messages"]] == [str(kept[0])]
    with box.ctx.db.tenant_session(box.owner.tenant_id) as session:
        docs = session.execute(
            select(func.count()).select_from(SearchDoc).where(SearchDoc.account_id == box.account_id)
        )
        assert docs.scalar_one() == 2
        if session.get_bind().dialect.name == "sqlite":
            session.execute(text("INSERT INTO email_search_fts(email_search_fts, rank) VALUES ('integrity-check', 1)"))


def labels_of(response: Any) -> list[str]:
    return [m["subject"] for m in response.get_json()["messages"]]


#: Word terms combined with AND, OR and NOT (one FTS5 query on SQLite, one tsquery on PostgreSQL) and what they
#: must equal: the set algebra of their parts, each searched alone.
COMBINED: list[tuple[str, Callable[[Callable[[str], set[str]]], set[str]]]] = [
    ("budget -meeting", lambda f: f("budget") - f("meeting")),
    ("budget quarterly", lambda f: f("budget") & f("quarterly")),
    ("(lunch OR budget) -invoice", lambda f: (f("lunch") | f("budget")) - f("invoice")),
    ("(lunch OR budget) -quarterly -draft", lambda f: (f("lunch") | f("budget")) - f("quarterly") - f("draft")),
    ('"quarterly budget" -running', lambda f: f('"quarterly budget"') - f("running")),
    ("subject:budget -fine", lambda f: f("subject:budget") - f("fine")),
    ("fox -lazy from:eve", lambda f: (f("fox") - f("lazy")) & f("from:eve")),
    ("(fox OR lunch) (quick OR team) -dog", lambda f: (f("fox") | f("lunch")) & (f("quick") | f("team")) - f("dog")),
    ("-budget -lunch in:inbox", lambda f: f("in:inbox") - f("budget") - f("lunch")),
    ("budget -meeting is:unread", lambda f: (f("budget") - f("meeting")) & f("is:unread")),
]


@pytest.mark.parametrize("few_hits", [None, 0], ids=["start-from-hits", "walk"])
@pytest.mark.parametrize(("query", "expected"), COMBINED, ids=[q for q, _ in COMBINED])
def test_combined_word_terms_equal_the_set_algebra_of_their_parts(
    client: FlaskClient,
    mailbox: Box,
    monkeypatch: pytest.MonkeyPatch,
    query: str,
    expected: Callable[[Callable[[str], set[str]]], set[str]],
    few_hits: int | None,
) -> None:
    def found(q: str) -> set[str]:
        return set(labels(mailbox, search(client, mailbox, q).get_json()))

    want = expected(found)
    if few_hits is not None:
        monkeypatch.setattr(search_sql, "FEW_HITS", few_hits)
    assert want, "a query of this table finds something"
    assert found(query) == want


#: Word terms with selective terms of other kinds -- an address, or two such terms -- (PostgreSQL walks the metadata
#: index and joins the doc rows for the words, ``SearchSql._postgresql_where``) and what they must equal.
WALKED: list[tuple[str, Callable[[Callable[[str], set[str]]], set[str]]]] = [
    ("budget is:unread in:inbox", lambda f: f("budget") & f("is:unread") & f("in:inbox")),
    ("(lunch OR budget) from:example.org", lambda f: (f("lunch") | f("budget")) & f("from:example.org")),
    ("budget -from:alice -is:read", lambda f: (f("budget") - f("from:alice")) - f("is:read")),
    (
        "(lunch OR budget) -is:flagged after:2026-03-01 -invoice",
        lambda f: (f("lunch") | f("budget")) - f("is:flagged") & f("after:2026-03-01") - f("invoice"),
    ),
    ('"quick brown" to:bob', lambda f: f('"quick brown"') & f("to:bob")),
]


@pytest.mark.parametrize(("query", "expected"), WALKED, ids=[q for q, _ in WALKED])
def test_word_terms_with_selective_other_terms_equal_the_set_algebra_of_their_parts(
    client: FlaskClient, mailbox: Box, query: str, expected: Callable[[Callable[[str], set[str]]], set[str]]
) -> None:
    def found(q: str) -> set[str]:
        return set(labels(mailbox, search(client, mailbox, q).get_json()))

    want = expected(found)
    assert want, "a query of this table finds something"
    assert found(query) == want
    assert found(query + " -nothingmatchesthis") == want


def test_the_account_and_folder_checks_of_a_search(
    client: FlaskClient, mailbox: Box, make_box: Callable[..., Box]
) -> None:
    """The account and the folder are checked in the search's first statement: another account's folder, an unknown
    folder or account is a 404, a colleague's account a 403; the caller's own folder narrows the search."""
    mine = make_box(mailbox.owner)  # the same user's other account
    mine.store("INBOX", [raw_message(subject="budget")])
    path = f"/api/v1/accounts/{mailbox.account_id}/messages/search"
    for folder in (mine.folders["INBOX"], uuid.uuid4()):
        response = client.get(
            path, query_string={"q": "budget", "folderId": str(folder)}, headers=mailbox.owner.headers
        )
        assert response.status_code == 404 and response.get_json()["message"] == "Folder not found"
    unknown = client.get(f"/api/v1/accounts/{uuid.uuid4()}/messages/search", query_string={"q": "budget"},
                         headers=mailbox.owner.headers)  # fmt: skip
    assert unknown.status_code == 404 and unknown.get_json()["message"] == "Account not found"
    colleague = make_box(mailbox.owner.colleague(mailbox.ctx))
    response = client.get(path, query_string={"q": "budget"}, headers=colleague.owner.headers)
    assert response.status_code == 403
    inbox = search(client, mailbox, "budget", folderId=str(mailbox.folders["INBOX"])).get_json()
    assert inbox["pagination"]["total"] >= 1
    # the errors in the order the API always gave them: the account, then the query, then the folder
    bad = {"q": '"unbalanced', "folderId": str(mine.folders["INBOX"])}
    assert client.get(path, query_string=bad, headers=colleague.owner.headers).status_code == 403
    assert client.get(path, query_string=bad, headers=mailbox.owner.headers).status_code == 400


def test_a_search_answers_the_state_of_the_account(client: FlaskClient, mailbox: Box) -> None:
    """``state`` (read in the search's own transaction) is the account's change-log state, as the list gives it."""
    listed = client.get(f"/api/v1/accounts/{mailbox.account_id}/messages", headers=mailbox.owner.headers)
    assert listed.status_code == 200
    state = listed.get_json()["state"]
    assert state and search(client, mailbox, "budget").get_json()["state"] == state
    message = search(client, mailbox, "budget").get_json()["messages"][0]
    flagged = client.patch(f"/api/v1/messages/{message['id']}", json={"isFlagged": True},
                           headers=mailbox.owner.headers)  # fmt: skip
    assert flagged.status_code == 200, flagged.get_json()
    after = search(client, mailbox, "budget").get_json()["state"]
    assert int(after) > int(state)
    listed_after = client.get(f"/api/v1/accounts/{mailbox.account_id}/messages", headers=mailbox.owner.headers)
    assert listed_after.get_json()["state"] == after
