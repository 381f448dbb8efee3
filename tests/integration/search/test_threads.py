"""Conversations (issue 11): JWZ threading (RFC 5256 REFERENCES) on a corpus of awkward cases, the thread endpoints,
the backfill of messages stored without threads, isolation."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from email_service.models import EmailMessage, ThreadContainer
from email_service.services.search_index import backfill_account
from email_service.services.threads import base_subject
from tests.conftest import Caller
from tests.integration.search.conftest import BASE_MS, DAY_MS, Box, get_json, raw_message

pytestmark = pytest.mark.integration


def threads_of(box: Box) -> dict[str, uuid.UUID | None]:
    """``{Message-ID: thread id}`` of the box's messages (a duplicated Message-ID: the last row read)."""
    with box.ctx.db.tenant_session(box.owner.tenant_id) as session:
        rows = session.execute(
            select(EmailMessage.message_id, EmailMessage.thread_id).where(EmailMessage.account_id == box.account_id)
        ).all()
    return {str(message_id): thread_id for message_id, thread_id in rows}


def msg(message_id: str, *, refs: tuple[str, ...] = (), day: float = 0, subject: str = "Topic", **extra: Any) -> bytes:
    return raw_message(
        message_id=message_id, references=refs, subject=subject, date_ms=BASE_MS + int(day * DAY_MS), **extra
    )


def test_out_of_order_delivery_keeps_one_thread_and_its_id(make_box: Callable[..., Box]) -> None:
    box = make_box()
    box.store("INBOX", [msg("c@t", refs=("a@t", "b@t"), day=2)])
    first = threads_of(box)["c@t"]
    box.store("INBOX", [msg("b@t", refs=("a@t",), day=1)])
    box.store("INBOX", [msg("a@t", day=0)])
    assert set(threads_of(box).values()) == {first}


def test_missing_parents_hold_their_children_together(make_box: Callable[..., Box]) -> None:
    box = make_box()
    box.store("INBOX", [msg("x@t", refs=("never-arrives@t",)), msg("y@t", refs=("never-arrives@t",), day=1)])
    threads = threads_of(box)
    assert threads["x@t"] == threads["y@t"] is not None
    with box.ctx.db.tenant_session(box.owner.tenant_id) as session:
        parent = session.execute(
            select(ThreadContainer).where(
                ThreadContainer.account_id == box.account_id, ThreadContainer.msgid == "never-arrives@t"
            )
        ).scalar_one()
    assert parent.has_message is False and parent.thread_id == threads["x@t"]


def test_a_late_parent_merges_threads_and_the_larger_keeps_its_id(make_box: Callable[..., Box]) -> None:
    box = make_box()
    box.store("INBOX", [msg("x1@t", refs=("q@t",)), msg("x2@t", refs=("q@t",), day=1)])
    box.store("INBOX", [msg("y1@t", refs=("r@t",), day=2)])
    before = threads_of(box)
    assert before["x1@t"] != before["y1@t"]
    box.store("INBOX", [msg("r@t", refs=("q@t",), day=3)])  # r is y1's parent and a reply in q's thread
    after = threads_of(box)
    assert set(after.values()) == {before["x1@t"]}  # the two-message thread kept its id


def test_broken_and_looping_references_never_loop_or_fail(make_box: Callable[..., Box]) -> None:
    box = make_box()
    box.store("INBOX", [msg("a@t", refs=("b@t",)), msg("b@t", refs=("a@t",), day=1)])  # a loop
    box.store("INBOX", [msg("self@t", refs=("self@t",), day=2, subject="Alone")])  # names itself
    box.store("INBOX", [msg("c@t", refs=("c@t", "a@t", "a@t", "b@t"), day=3)])  # duplicates and itself
    threads = threads_of(box)
    assert threads["a@t"] == threads["b@t"] == threads["c@t"] is not None
    assert threads["self@t"] not in (None, threads["a@t"])
    with box.ctx.db.tenant_session(box.owner.tenant_id) as session:
        parents = dict(
            session.execute(
                select(ThreadContainer.msgid, ThreadContainer.parent_msgid).where(
                    ThreadContainer.account_id == box.account_id
                )
            ).all()
        )
    assert parents["self@t"] is None
    for start in parents:  # following parents from any container ends (no cycle was recorded)
        node: str | None = start
        for _ in range(len(parents) + 1):
            node = parents.get(node) if node is not None else None
        assert node is None, f"parent cycle through {start}"


def test_subject_joins_only_reference_less_messages_within_the_window(make_box: Callable[..., Box]) -> None:
    box = make_box()
    box.store("INBOX", [msg("l1@t", subject="Lunch?", day=0)])
    box.store("INBOX", [msg("l2@t", subject="Re: Lunch?", day=1)])  # no references: joins by subject
    box.store("INBOX", [msg("l3@t", subject="Lunch?", day=30)])  # same subject a month later: a new thread
    box.store("INBOX", [msg("s1@t", subject="Status", day=0)])
    box.store("INBOX", [msg("s2@t", subject="Re: Status", refs=("elsewhere@t",), day=0.5)])  # has references
    threads = threads_of(box)
    assert threads["l1@t"] == threads["l2@t"]
    assert threads["l3@t"] != threads["l1@t"]
    assert threads["s2@t"] != threads["s1@t"]


def test_duplicate_message_ids_share_a_thread(make_box: Callable[..., Box]) -> None:
    box = make_box()
    box.store("INBOX", [msg("dup@t")])
    box.store("Archive", [msg("dup@t")])
    with box.ctx.db.tenant_session(box.owner.tenant_id) as session:
        threads = set(
            session.execute(select(EmailMessage.thread_id).where(EmailMessage.account_id == box.account_id)).scalars()
        )
    assert len(threads) == 1 and None not in threads


def test_replies_across_inbox_and_sent_are_one_conversation(client: FlaskClient, make_box: Callable[..., Box]) -> None:
    box = make_box()
    box.store("INBOX", [msg("q@t", subject="Question", sender="Carol <carol@x.example>", day=0)])
    box.store("Sent", [msg("a@t", subject="Re: Question", refs=("q@t",), day=1)], flags=[("\\Seen",)])
    box.store(
        "INBOX",
        [msg("f@t", subject="Re: Question", refs=("q@t", "a@t"), sender="Carol <carol@x.example>", day=2,
             attachments=[("notes.txt", b"notes")])],
    )  # fmt: skip
    box.store("INBOX", [msg("other@t", subject="Unrelated", day=5)])
    base = f"/api/v1/accounts/{box.account_id}/threads"
    listed = get_json(client, box.owner, base)
    assert listed["pagination"]["total"] == 2
    assert [t["subject"] for t in listed["threads"]] == ["Unrelated", "Question"]  # newest activity first
    conversation = listed["threads"][1]
    assert conversation["messageCount"] == 3 and conversation["unreadCount"] == 2
    assert conversation["hasAttachments"] is True
    assert conversation["latestMessage"]["messageId"] == "f@t"
    assert [p["email"] for p in conversation["participants"]] == ["carol@x.example", "alice@example.com"]
    in_sent = get_json(client, box.owner, f"{base}?folderId={box.folders['Sent']}")
    assert [t["threadId"] for t in in_sent["threads"]] == [conversation["threadId"]]
    assert in_sent["threads"][0]["messageCount"] == 3  # counts cover every folder
    thread = get_json(client, box.owner, f"/api/v1/threads/{conversation['threadId']}")
    assert [m["messageId"] for m in thread["messages"]] == ["q@t", "a@t", "f@t"]
    assert {m["folderId"] for m in thread["messages"]} == {str(box.folders["INBOX"]), str(box.folders["Sent"])}
    page = get_json(client, box.owner, f"{base}?limit=1&offset=1")
    assert [t["threadId"] for t in page["threads"]] == [conversation["threadId"]]


def test_messages_stored_without_threads_are_backfilled_and_indexed(
    client: FlaskClient, make_box: Callable[..., Box]
) -> None:
    box = make_box()
    box.store("INBOX", [msg("root@t", subject="Backfill", day=0)])
    folder_id = box.folders["INBOX"]
    with box.ctx.db.tenant_session(box.owner.tenant_id) as session:  # as before migration 0007: no hooks
        for n, refs in ((1, ["root@t"]), (2, ["root@t", "old1@t"])):
            session.add(
                EmailMessage(
                    tenant_id=box.owner.tenant_id, account_id=box.account_id, folder_id=folder_id, uid=100 + n,
                    uidvalidity=1, message_id=f"old{n}@t", references=refs, subject="Re: Backfill",
                    text_body="legacy zebra text", received_at=BASE_MS + n * DAY_MS,
                )
            )  # fmt: skip
    search = f"/api/v1/accounts/{box.account_id}/messages/search?q=zebra"
    assert get_json(client, box.owner, search)["messages"] == []
    with box.ctx.db.tenant_session(box.owner.tenant_id) as session:
        assert backfill_account(session, tenant_id=box.owner.tenant_id, account_id=box.account_id) == 2
    threads = threads_of(box)
    assert threads["old1@t"] == threads["old2@t"] == threads["root@t"] is not None
    assert {m["messageId"] for m in get_json(client, box.owner, search)["messages"]} == {"old1@t", "old2@t"}
    with box.ctx.db.tenant_session(box.owner.tenant_id) as session:
        assert backfill_account(session, tenant_id=box.owner.tenant_id, account_id=box.account_id) == 0


def test_threads_follow_the_usual_isolation(
    client: FlaskClient, make_box: Callable[..., Box], make_caller: Callable[..., Caller]
) -> None:
    box = make_box()
    box.store("INBOX", [msg("iso@t")])
    thread_id = threads_of(box)["iso@t"]
    colleague, stranger = box.owner.colleague(box.ctx), make_caller()
    assert client.get(f"/api/v1/threads/{thread_id}", headers=colleague.headers).status_code in (403, 404)
    assert client.get(f"/api/v1/threads/{thread_id}", headers=stranger.headers).status_code == 404
    assert client.get(f"/api/v1/threads/{uuid.uuid4()}", headers=box.owner.headers).status_code == 404
    listing = client.get(f"/api/v1/accounts/{box.account_id}/threads", headers=stranger.headers)
    assert listing.status_code == 404
    assert client.get(f"/api/threads/{thread_id}", headers=box.owner.headers).status_code == 200  # the alias


@pytest.mark.parametrize(
    ("subject", "base"),
    [
        ("Re: Hello", "hello"),
        ("RE: re: Fwd: Hello", "hello"),
        ("[list] Re: Hello (fwd)", "hello"),
        ("[Fwd: Re: Hello]", "hello"),
        ("  Hello   world  ", "hello world"),
        ("Re:", "re:"),
        ("", ""),
    ],
)
def test_base_subject_follows_rfc_5256_section_2_1(subject: str, base: str) -> None:
    assert base_subject(subject) == base
