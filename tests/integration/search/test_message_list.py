"""The message list (issue 11): filters, sorts, keyset cursors and totals from the folders' kept counts.

The property test walks a folder page by page with ``nextCursor`` while new messages keep arriving between pages
(newer and older than the page, with ties on every sort key): every message that was there when the walk began is
visited exactly once, and none twice.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from email_service.app import create_app
from email_service.services.context import ServiceContext
from tests.conftest import Caller
from tests.integration.search.conftest import BASE_MS, DAY_MS, Box, get_json, new_box, raw_message

pytestmark = pytest.mark.integration
SORTS = ("receivedAt", "sentAt", "subject", "from", "size")
_counter = itertools.count()


def listing(client: FlaskClient, box: Box, **params: Any) -> Any:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return get_json(client, box.owner, f"/api/v1/accounts/{box.account_id}/messages?{query}")


def labelled(day: int, *, subject: str = "S", sender: str = "a@x.example", size: int = 0, **extra: Any) -> bytes:
    return raw_message(
        subject=subject,
        sender=sender,
        date_ms=BASE_MS + day * DAY_MS,
        body="x" * size or "body",
        message_id=f"n{next(_counter)}@t",
        **extra,
    )


@pytest.fixture
def box(make_box: Callable[..., Box]) -> Box:
    """INBOX: six messages with known flags, senders, recipients and dates (day 0 .. 5)."""
    made = make_box()
    made.store(
        "INBOX",
        [
            labelled(0, subject="alpha", sender="Alice <alice@example.com>", to="bob@example.org"),
            labelled(1, subject="bravo", sender="Bob <bob@example.org>", to="Zoë <zoe@example.com>"),
            labelled(2, subject="charlie", sender="Alice <alice@example.com>", attachments=[("a.pdf", b"%PDF")]),
            labelled(3, subject="delta", sender="Carol <carol@example.net>", size=5000),
            labelled(4, subject="echo", sender="Álvaro <alvaro@example.es>"),
            labelled(5, subject="foxtrot", sender="Bob <bob@example.org>"),
        ],
        flags=[("\\Seen",), (), ("\\Seen", "\\Flagged"), (), ("\\Flagged",), ("\\Seen",)],
    )
    return made


def subjects(body: Any) -> list[str]:
    return [m["subject"] for m in body["messages"]]


def test_filters_and_their_totals(client: FlaskClient, box: Box) -> None:
    folder = box.folders["INBOX"]
    everything = listing(client, box, folderId=folder)
    assert subjects(everything) == ["foxtrot", "echo", "delta", "charlie", "bravo", "alpha"]
    assert everything["pagination"]["total"] == 6  # the folder's kept total_count
    unread = listing(client, box, folderId=folder, isRead="false")
    assert subjects(unread) == ["echo", "delta", "bravo"] and unread["pagination"]["total"] == 3
    read = listing(client, box, folderId=folder, isRead="true")
    assert subjects(read) == ["foxtrot", "charlie", "alpha"] and read["pagination"]["total"] == 3
    flagged = listing(client, box, folderId=folder, isFlagged="true")
    assert subjects(flagged) == ["echo", "charlie"] and flagged["pagination"]["total"] is None  # not counted
    assert subjects(listing(client, box, isFlagged="false", isRead="false")) == ["delta", "bravo"]
    assert subjects(listing(client, box, hasAttachments="true")) == ["charlie"]
    assert subjects(listing(client, box, **{"from": "ALICE"})) == ["charlie", "alpha"]
    assert subjects(listing(client, box, **{"from": "alvaro"})) == ["echo"]  # accents ignored
    assert subjects(listing(client, box, to="zoe")) == ["bravo"]
    window = listing(client, box, dateFrom=BASE_MS + DAY_MS, dateTo=BASE_MS + 3 * DAY_MS)
    assert subjects(window) == ["charlie", "bravo"]
    assert listing(client, box)["pagination"]["total"] == 6  # account-wide: the sum of the folders' counts


def test_a_folder_of_another_account_is_not_found_and_the_state_is_the_accounts(
    client: FlaskClient, box: Box, make_box: Callable[..., Box]
) -> None:
    other = make_box(owner=box.owner)  # the same user's second account
    elsewhere = other.folder("INBOX", "inbox")
    for folder in (elsewhere, uuid.uuid4()):
        response = client.get(
            f"/api/v1/accounts/{box.account_id}/messages?folderId={folder}", headers=box.owner.headers
        )
        assert response.status_code == 404 and response.get_json()["message"] == "Folder not found"
    state = get_json(client, box.owner, f"/api/v1/accounts/{box.account_id}/folders")["state"]
    assert listing(client, box)["state"] == state
    assert listing(client, other, folderId=elsewhere)["messages"] == []


def test_sorts_and_offsets(client: FlaskClient, box: Box) -> None:
    assert subjects(listing(client, box, sortBy="subject", sortOrder="asc")) == [
        "alpha", "bravo", "charlie", "delta", "echo", "foxtrot"
    ]  # fmt: skip
    by_from = [m["from"]["email"] for m in listing(client, box, sortBy="from", sortOrder="asc")["messages"]]
    assert by_from == sorted(by_from)
    assert subjects(listing(client, box, sortBy="size", limit=1)) == ["delta"]
    assert subjects(listing(client, box, sortBy="sentAt", sortOrder="asc", limit=2)) == ["alpha", "bravo"]
    assert subjects(listing(client, box, limit=2, offset=2)) == ["delta", "charlie"]


def test_bad_cursors_are_refused(client: FlaskClient, box: Box) -> None:
    first = listing(client, box, limit=2)
    cursor = first["pagination"]["nextCursor"]
    assert cursor
    base = f"/api/v1/accounts/{box.account_id}/messages"
    for query, mentions in (
        (f"cursor={cursor}&sortBy=size", "another sortBy"),
        (f"cursor={cursor}&offset=2", "offset"),
        ("cursor=not-a-cursor", "cursor"),
        ("cursor=WyJzaXplIiwiZGVzYyIsImEiLCJ4Il0", "cursor"),
        ("sortBy=date", "sortBy"),
        ("sortOrder=up", "sortOrder"),
        ("isRead=yes", "isRead"),
    ):
        response = client.get(f"{base}?{query}", headers=box.owner.headers)
        assert response.status_code == 400, (query, response.get_json())
        assert mentions.lower() in str(response.get_json()).lower(), (query, response.get_json())
    last = listing(client, box, limit=6)
    assert last["pagination"]["nextCursor"] is not None  # a full page: one more (empty) page to be sure
    assert listing(client, box, limit=6, cursor=last["pagination"]["nextCursor"])["messages"] == []


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    days=st.lists(st.integers(0, 4), min_size=1, max_size=25),
    arrivals=st.lists(st.lists(st.integers(-2, 7), max_size=3), max_size=12),
    sort_by=st.sampled_from(SORTS),
    order=st.sampled_from(("asc", "desc")),
    page=st.integers(1, 6),
    flagged_only=st.booleans(),
)
def test_a_cursor_walk_visits_every_message_once_while_mail_arrives(
    ctx: ServiceContext,
    days: list[int],
    arrivals: list[list[int]],
    sort_by: str,
    order: str,
    page: int,
    flagged_only: bool,
) -> None:
    client = create_app(context=ctx).test_client()
    box = new_box(ctx, client, Caller(ctx))

    def batch(values: list[int]) -> list[bytes]:  # ties on every key: few subjects, senders, sizes and days
        return [labelled(d, subject=f"s{d % 3}", sender=f"u{d % 2}@x.example", size=100 * (d % 2)) for d in values]

    flags = [("\\Flagged",) if i % 2 else () for i in range(len(days))]
    stored = [str(i) for i in box.store("INBOX", batch(days), flags=flags)]
    expected = {m for i, m in enumerate(stored) if i % 2 or not flagged_only}  # there when the walk began
    params: dict[str, Any] = {"folderId": box.folders["INBOX"], "sortBy": sort_by, "sortOrder": order, "limit": page}
    if flagged_only:
        params["isFlagged"] = "true"
    seen: list[str] = []
    arriving = iter(arrivals)
    for _ in range(200):
        body = listing(client, box, **params)
        seen.extend(m["id"] for m in body["messages"])
        assert len(body["messages"]) <= page
        cursor = body["pagination"]["nextCursor"]
        if cursor is None:
            break
        params["cursor"] = cursor
        box.store("INBOX", batch(next(arriving, [])), flags=[("\\Flagged",)] * 3)
    else:
        pytest.fail("the walk did not end")
    assert len(seen) == len(set(seen)), "a message was listed twice"
    assert expected <= set(seen), "a message that was there all along was skipped"
