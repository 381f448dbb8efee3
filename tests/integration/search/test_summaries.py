"""The lean message summary (``api/summaries.py``) answers exactly what the marshmallow schema dumps (issue 11).

The list serialises its items without marshmallow; ``MessageSummaryOut`` stays the document's description.  These
tests read a varied mailbox (unicode names and subjects, no From, no Subject, Cc, many recipients, attachments,
keywords, a thread, a pending change, a write-back error, addresses with missing or extra keys) through the list
endpoint and compare every item with the schema's dump of the same message loaded as an ORM entity through the old
serialiser, so the two cannot drift apart.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update

from email_service.api.mailbox import message_summary
from email_service.api.mailbox_schemas import MessageSummaryOut
from email_service.api.search_schemas import SearchHitOut, ThreadMessagesOut, ThreadOut
from email_service.api.summaries import summary
from email_service.models import EmailMessage, PendingAction, now_ms
from email_service.services.context import ServiceContext
from tests.integration.search.conftest import BASE_MS, DAY_MS, Box, get_json, raw_message

pytestmark = pytest.mark.integration


def _varied(box: Box) -> list[uuid.UUID]:
    parent = "parent-summary@test.example"
    raws = [
        raw_message(subject="Grüße aus Zürich 🎉 — «naïve» 日本語", sender="Zoë Ørsted <zoe@example.com>",
                    to="Jürgen <j@example.de>, \"Doe, Jane\" <jane@example.org>", cc="Ünal <u@example.tr>",
                    message_id=parent, date_ms=BASE_MS),
        raw_message(subject="Re: Grüße", sender="bob@example.org", to="Zoë <zoe@example.com>",
                    in_reply_to=parent, references=[parent], date_ms=BASE_MS + DAY_MS,
                    attachments=[("résumé.pdf", b"%PDF-1.4"), ("a.txt", b"x")]),
        raw_message(subject="", sender="Only Name <>", to="undisclosed-recipients:;", date_ms=BASE_MS + 2 * DAY_MS),
        raw_message(subject="עברית ومرحبا", sender="=?utf-8?q?M=C3=BCller?= <mueller@example.de>",
                    to=", ".join(f"p{i} <p{i}@example.net>" for i in range(30)), date_ms=BASE_MS + 3 * DAY_MS,
                    html="<p>Hi <b>there</b></p>"),
    ]  # fmt: skip
    no_from = b"Subject: no from\r\nDate: Mon, 2 Mar 2026 10:00:00 +0000\r\n\r\nbody\r\n"
    flags = [("\\Seen", "$Important", "Projekt-X"), (), ("\\Flagged", "\\Answered", "\\Draft"), ("\\Seen",), ()]
    return box.store("INBOX", [*raws, no_from], flags=flags)


def _edit(ctx: ServiceContext, box: Box, ids: list[uuid.UUID]) -> None:
    """Rows a mirror can hold but a parse does not make: a write-back error, a pending change, odd addresses."""
    with ctx.db.tenant_session(box.owner.tenant_id) as session:
        session.execute(update(EmailMessage).where(EmailMessage.id == ids[0]).values(last_error="NO [CANNOT] ünïcode"))
        odd = [{"email": "no-name@example.com"}, {"name": "Extra", "email": "e@example.com", "group": "team"}]
        session.execute(update(EmailMessage).where(EmailMessage.id == ids[2]).values(to_addresses=odd, cc_addresses=[]))
        session.add(
            PendingAction(tenant_id=box.owner.tenant_id, account_id=box.account_id, seq=1, kind="flags",
                          message_id=ids[1], details={"add": ["\\Seen"]}, next_attempt_at=now_ms())
        )  # fmt: skip


def _schema_dump(app: Flask, message: EmailMessage, pending: bool) -> Any:
    """What the list answered before the lean serialiser: the schema's dump of ``message_summary``, as JSON."""
    with app.test_request_context():
        return json.loads(json.dumps(MessageSummaryOut().dump(message_summary(message, pending=pending))))


def test_every_list_item_equals_the_schema_dump(
    app: Flask, client: FlaskClient, ctx: ServiceContext, make_box: Callable[..., Box]
) -> None:
    box = make_box()
    ids = _varied(box)
    _edit(ctx, box, ids)
    body = get_json(client, box.owner, f"/api/v1/accounts/{box.account_id}/messages?folderId={box.folders['INBOX']}")
    listed = {item["id"]: item for item in body["messages"]}
    assert set(listed) == {str(i) for i in ids}
    with ctx.db.tenant_session(box.owner.tenant_id) as session:
        messages = session.execute(select(EmailMessage).where(EmailMessage.id.in_(ids))).scalars().all()
        expected = {str(m.id): _schema_dump(app, m, pending=m.id == ids[1]) for m in messages}
        entities = {str(m.id): summary(m, pending=m.id == ids[1]) for m in messages}
    for message_id, item in listed.items():
        assert item == expected[message_id], message_id
        assert entities[message_id] == expected[message_id], message_id
    # the cases the set was made for are really in it
    assert listed[str(ids[1])]["pendingChanges"] is True and listed[str(ids[1])]["hasAttachments"] is True
    assert listed[str(ids[1])]["threadId"] == listed[str(ids[0])]["threadId"] is not None
    assert listed[str(ids[0])]["lastError"] == "NO [CANNOT] ünïcode"
    assert listed[str(ids[2])]["to"] == [{"email": "no-name@example.com"}, {"name": "Extra", "email": "e@example.com"}]
    assert listed[str(ids[4])]["from"] is None and listed[str(ids[2])]["subject"] == ""
    assert set(listed[str(ids[0])]["flags"]) == {"\\Seen", "$Important", "Projekt-X"}


def test_every_search_hit_equals_the_schema_dump(
    app: Flask, client: FlaskClient, ctx: ServiceContext, make_box: Callable[..., Box]
) -> None:
    box = make_box()
    ids = _varied(box)
    _edit(ctx, box, ids)
    body = get_json(client, box.owner, f"/api/v1/accounts/{box.account_id}/messages/search?q=in%3Ainbox")
    found = {item["id"]: item for item in body["messages"]}
    assert set(found) == {str(i) for i in ids}
    with ctx.db.tenant_session(box.owner.tenant_id) as session, app.test_request_context():
        for message in session.execute(select(EmailMessage).where(EmailMessage.id.in_(ids))).scalars():
            hit = found[str(message.id)]
            expected = SearchHitOut().dump({**message_summary(message), "snippet": hit["snippet"]})
            assert hit == json.loads(json.dumps(expected)), message.id
    assert body["pagination"] == {"total": len(ids), "limit": 50, "offset": 0, "totalExact": True}


def _thread_dump(app: Flask, message_count: int, messages: list[EmailMessage], listed: dict[str, Any]) -> Any:
    """What the thread list answered before the lean serialiser: ``ThreadOut``'s dump of the old view's dict."""
    latest = messages[-1]
    with app.test_request_context():
        value = {
            "threadId": latest.thread_id, "subject": messages[0].subject, "participants": listed["participants"],
            "messageCount": message_count, "unreadCount": sum(not m.is_read for m in messages),
            "hasAttachments": any(m.has_attachments for m in messages),
            "lastActivityAt": latest.received_at, "latestMessage": message_summary(latest),
        }  # fmt: skip
        return json.loads(json.dumps(ThreadOut().dump(value)))


def test_every_thread_and_thread_message_equals_the_schema_dump(
    app: Flask, client: FlaskClient, ctx: ServiceContext, make_box: Callable[..., Box]
) -> None:
    box = make_box()
    ids = _varied(box)
    _edit(ctx, box, ids)
    body = get_json(client, box.owner, f"/api/v1/accounts/{box.account_id}/threads")
    assert body["pagination"] == {
        "total": len(body["threads"]), "limit": 50, "offset": 0, "totalExact": True, "nextCursor": None
    }  # fmt: skip
    with ctx.db.tenant_session(box.owner.tenant_id) as session:
        by_thread: dict[str, list[EmailMessage]] = {}
        for message in session.execute(
            select(EmailMessage).where(EmailMessage.id.in_(ids)).order_by(EmailMessage.received_at)
        ).scalars():
            by_thread.setdefault(str(message.thread_id), []).append(message)
        assert {item["threadId"] for item in body["threads"]} == set(by_thread)
        for item in body["threads"]:
            messages = by_thread[item["threadId"]]
            assert item == _thread_dump(app, len(messages), messages, item), item["threadId"]
            one = get_json(client, box.owner, f"/api/v1/threads/{item['threadId']}")
            with app.test_request_context():
                dumped = ThreadMessagesOut().dump({"threadId": messages[0].thread_id,
                                                   "messages": [message_summary(m) for m in messages]})  # fmt: skip
            assert one == json.loads(json.dumps(dumped))
    # the cases the set was made for are really in it: a thread of two with an attachment, unicode senders
    pair = next(item for item in body["threads"] if item["messageCount"] == 2)
    assert pair["hasAttachments"] is True and pair["latestMessage"]["id"] == str(ids[1])
    assert pair["participants"][0] == {"name": "Zoë Ørsted", "email": "zoe@example.com"}
