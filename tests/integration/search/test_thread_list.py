"""The thread list at any depth (issue 11): the newest-first walk of thread heads gives the same pages as the
``GROUP BY`` of every message it replaced (a reference query here), by offset and by cursor, in the account and
in a folder; a cursor walk visits every thread once, also while threads gain messages; the capped total; isolation."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import case, func, select

from email_service.models import EmailMessage
from email_service.services import thread_list
from tests.conftest import Caller
from tests.integration.search.conftest import BASE_MS, DAY_MS, Box, get_json, raw_message

pytestmark = pytest.mark.integration

HOUR_MS = 3_600_000


def _varied(box: Box, seed: int = 5) -> None:
    """About 150 messages in 3 folders: threads of 1 to 12 messages, replies filed in Sent and Archive, newest
    messages of different threads at the same second, unread and attachments scattered, parents arriving after
    their replies (merging threads), replies to Message-IDs that never arrive."""
    rng = random.Random(seed)
    roots: list[str] = []
    late: list[tuple[str, str, int]] = []  # (message id, its missing parent's id, hour) of replies sent early
    for n in range(150):
        hour = rng.choice((n, n, n - n % 4))  # every 4th hour several messages at once: ties across threads
        folder = rng.choices(("INBOX", "Sent", "Archive"), (6, 2, 1))[0]
        refs: tuple[str, ...] = ()
        if roots and rng.random() < 0.6:
            refs = (rng.choice(roots[-25:]),)
        elif rng.random() < 0.08:
            refs = (f"missing{n}@t",)
            late.append((f"m{n}@t", f"missing{n}@t", hour))
        subject = f"Topic {n}" if not refs else "Re: reply"
        raw = raw_message(
            message_id=f"m{n}@t", references=refs, subject=subject, date_ms=BASE_MS + hour * HOUR_MS,
            sender=f"Sender {n % 9} <s{n % 9}@x.example>",
            attachments=[("a.txt", b"a")] if rng.random() < 0.1 else (),
        )  # fmt: skip
        box.store(folder, [raw], flags=[("\\Seen",)] if rng.random() < 0.6 else [()])
        roots.append(f"m{n}@t")
    for _child, parent, hour in late[::2]:  # half the missing parents arrive, referring to another thread
        raw = raw_message(message_id=parent, references=(rng.choice(roots),), subject="Re: late",
                          date_ms=BASE_MS + (hour - 1) * HOUR_MS)  # fmt: skip
        box.store("INBOX", [raw])


def _reference(box: Box, folder_id: uuid.UUID | None = None) -> list[dict[str, Any]]:
    """The old thread list's query: every message grouped by thread, ordered by the newest ``receivedAt`` (in the
    folder, when given) then ``threadId`` descending; the counts over every folder."""
    message = EmailMessage
    ordered = select(message.thread_id, func.max(message.received_at).label("last")).where(
        message.account_id == box.account_id, message.thread_id.is_not(None)
    )
    if folder_id is not None:
        ordered = ordered.where(message.folder_id == folder_id)
    ordered = ordered.group_by(message.thread_id).order_by(
        func.max(message.received_at).desc(), message.thread_id.desc()
    )
    counts = (
        select(
            message.thread_id,
            func.count(),
            func.sum(case((message.is_read.is_(False), 1), else_=0)),
            func.max(case((message.has_attachments.is_(True), 1), else_=0)),
            func.max(message.received_at),
        )
        .where(message.account_id == box.account_id, message.thread_id.is_not(None))
        .group_by(message.thread_id)
    )
    with box.ctx.db.tenant_session(box.owner.tenant_id) as session:
        totals = {row[0]: row[1:] for row in session.execute(counts).all()}
        return [
            {"threadId": str(thread_id), "messageCount": totals[thread_id][0], "unreadCount": int(totals[thread_id][1]),
             "hasAttachments": bool(totals[thread_id][2]), "lastActivityAt": totals[thread_id][3]}
            for thread_id, _last in session.execute(ordered).all()
        ]  # fmt: skip


def _brief(item: dict[str, Any]) -> dict[str, Any]:
    return {key: item[key] for key in ("threadId", "messageCount", "unreadCount", "hasAttachments", "lastActivityAt")}


def _walk(client: FlaskClient, caller: Caller, base: str, limit: int, stop: int | None = None) -> list[list[Any]]:
    """The pages of a cursor walk (each a list of thread items), ``stop`` pages at most."""
    pages: list[list[Any]] = []
    url = f"{base}{'&' if '?' in base else '?'}limit={limit}"
    cursor = None
    while stop is None or len(pages) < stop:
        body = get_json(client, caller, url + (f"&cursor={cursor}" if cursor else ""))
        pages.append(body["threads"])
        cursor = body["pagination"]["nextCursor"]
        if cursor is None:
            break
        assert len(pages) < 200, "the walk does not end"
    return pages


@pytest.fixture
def varied_box(make_box: Callable[..., Box]) -> Box:
    box = make_box()
    _varied(box)
    return box


def test_pages_equal_the_group_by_of_every_message(client: FlaskClient, varied_box: Box) -> None:
    box = varied_box
    expected = _reference(box)
    assert 40 < len(expected) < 120 and any(t["messageCount"] >= 5 for t in expected)
    base = f"/api/v1/accounts/{box.account_id}/threads"
    pages = _walk(client, box.owner, base, limit=7)
    assert [_brief(t) for page in pages for t in page] == expected
    for page in pages:
        assert len({t["threadId"] for t in page}) == len(page)
    for offset in (0, 7, 20, len(expected) - 3):
        body = get_json(client, box.owner, f"{base}?limit=7&offset={offset}")
        assert [_brief(t) for t in body["threads"]] == expected[offset : offset + 7]
        assert body["pagination"]["total"] == len(expected) and body["pagination"]["totalExact"] is True
    with box.ctx.db.tenant_session(box.owner.tenant_id) as session:  # the latest message is the thread's newest
        newest = {
            str(thread_id): str(ident)
            for thread_id, ident in session.execute(
                select(EmailMessage.thread_id, EmailMessage.id)
                .where(EmailMessage.account_id == box.account_id)
                .order_by(EmailMessage.received_at, EmailMessage.id)
            ).all()
        }
    assert all(t["latestMessage"]["id"] == newest[t["threadId"]] for page in pages for t in page)


def test_a_folder_lists_its_threads_by_their_newest_message_there(client: FlaskClient, varied_box: Box) -> None:
    box = varied_box
    everywhere = {t["threadId"]: t for t in _reference(box)}
    for name in ("INBOX", "Sent", "Archive"):
        folder_id = box.folders[name]
        # the folder's order; the counts and the latest activity still cover every folder
        expected = [everywhere[t["threadId"]] for t in _reference(box, folder_id)]
        base = f"/api/v1/accounts/{box.account_id}/threads?folderId={folder_id}"
        pages = _walk(client, box.owner, base, limit=5)
        assert [_brief(t) for page in pages for t in page] == expected, name
        body = get_json(client, box.owner, f"{base}&offset=3&limit=4")
        assert [_brief(t) for t in body["threads"]] == expected[3:7]
        assert body["pagination"]["total"] == len(expected)
    sent = _reference(box, box.folders["Sent"])
    assert [t["threadId"] for t in sent] != [t["threadId"] for t in _reference(box) if t["threadId"] in
                                            {s["threadId"] for s in sent}]  # fmt: skip  # the orders differ here


def test_a_cursor_walk_visits_every_thread_once_while_threads_gain_messages(
    client: FlaskClient, varied_box: Box
) -> None:
    box = varied_box
    expected = [t["threadId"] for t in _reference(box)]
    base = f"/api/v1/accounts/{box.account_id}/threads?limit=6"
    first = get_json(client, box.owner, base)
    shown = [t["threadId"] for t in first["threads"]]
    # a reply to a thread already shown and a new thread arrive: both go above the cursor
    reply_to = first["threads"][2]["latestMessage"]["messageId"]
    box.store("INBOX", [raw_message(message_id="new-reply@t", references=(reply_to,), date_ms=BASE_MS + 400 * DAY_MS)])
    box.store("INBOX", [raw_message(message_id="new-root@t", subject="Brand new", date_ms=BASE_MS + 401 * DAY_MS)])
    cursor = first["pagination"]["nextCursor"]
    while cursor:
        body = get_json(client, box.owner, f"{base}&cursor={cursor}")
        shown += [t["threadId"] for t in body["threads"]]
        cursor = body["pagination"]["nextCursor"]
    assert shown == expected  # every thread once, none twice, in order
    top = get_json(client, box.owner, base)["threads"]
    assert [t["latestMessage"]["messageId"] for t in top[:2]] == ["new-root@t", "new-reply@t"]


def test_cursor_errors_are_400(client: FlaskClient, varied_box: Box) -> None:
    box = varied_box
    base = f"/api/v1/accounts/{box.account_id}/threads"
    cursor = get_json(client, box.owner, f"{base}?limit=3")["pagination"]["nextCursor"]
    message_cursor = get_json(client, box.owner, f"/api/v1/accounts/{box.account_id}/messages?limit=3")
    for query, words in (
        (f"cursor={cursor}&offset=3", "cannot be combined"),
        ("cursor=bm90LWEtY3Vyc29y", "not valid"),
        (f"cursor={message_cursor['pagination']['nextCursor']}", "not valid"),
    ):
        body = get_json(client, box.owner, f"{base}?{query}", status=400)
        assert words in body["message"]


def test_beyond_the_cap_the_total_is_a_flagged_lower_bound(
    client: FlaskClient, varied_box: Box, monkeypatch: pytest.MonkeyPatch
) -> None:
    box = varied_box
    threads = len(_reference(box))
    monkeypatch.setattr(thread_list, "THREAD_COUNT_CAP", 10)
    base = f"/api/v1/accounts/{box.account_id}/threads"
    first = get_json(client, box.owner, f"{base}?limit=5")["pagination"]
    assert (first["total"], first["totalExact"]) == (10, False)
    deep = get_json(client, box.owner, f"{base}?limit=5&offset=20")["pagination"]
    assert (deep["total"], deep["totalExact"]) == (25, False)  # what the page itself shows exists
    monkeypatch.setattr(thread_list, "THREAD_COUNT_CAP", threads)
    exact = get_json(client, box.owner, f"{base}?limit=5")["pagination"]
    assert (exact["total"], exact["totalExact"]) == (threads, True)


def test_the_list_follows_the_usual_isolation(
    client: FlaskClient, make_box: Callable[..., Box], make_caller: Callable[..., Caller]
) -> None:
    mine, theirs = make_box(), make_box()
    mine.store("INBOX", [raw_message(message_id="mine@t", date_ms=BASE_MS)])
    theirs.store("INBOX", [raw_message(message_id="theirs@t", date_ms=BASE_MS + DAY_MS)])
    same_tenant = mine.owner.colleague(mine.ctx)
    other = make_box(same_tenant)
    other.store("INBOX", [raw_message(message_id="colleague@t", date_ms=BASE_MS + 2 * DAY_MS)])
    listed = get_json(client, mine.owner, f"/api/v1/accounts/{mine.account_id}/threads")["threads"]
    assert [t["latestMessage"]["messageId"] for t in listed] == ["mine@t"]
    base = f"/api/v1/accounts/{mine.account_id}/threads"
    assert client.get(base, headers=same_tenant.headers).status_code in (403, 404)
    assert client.get(base, headers=theirs.owner.headers).status_code == 404
    foreign_folder = f"{base}?folderId={theirs.folders['INBOX']}"
    assert client.get(foreign_folder, headers=mine.owner.headers).status_code == 404
    colleague_folder = f"{base}?folderId={other.folders['INBOX']}"
    assert client.get(colleague_folder, headers=mine.owner.headers).status_code == 404
    # a cursor only says where to start: in another account it shows that account's threads, never its own
    cursor = thread_list.ThreadCursor(BASE_MS + 10 * DAY_MS, uuid.UUID(int=2**128 - 1), uuid.UUID(int=0)).encode()
    after = get_json(client, mine.owner, f"{base}?cursor={cursor}")["threads"]
    assert [t["latestMessage"]["messageId"] for t in after] == ["mine@t"]
