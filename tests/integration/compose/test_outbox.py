"""The outbox (issue 9): idempotent requests, undo send, scheduled send, retries, permanent failures, partial
success, and at most once when a worker dies after the server's 250 -- all through aiosmtpd over real SMTP."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from email_service.models import now_ms
from email_service.services.context import ServiceContext
from email_service.sync import send
from email_service.tasks.periodic import work_outbox
from email_service.tasks.registry import SEND_TIME_LIMIT
from tests.integration.compose.conftest import Mirror, compose_app, draft_body, use_smtp, wait_outbox
from tests.integration.smtp.conftest import SMTPServer
from tests.integration.writeback.conftest import MakeMirror

pytestmark = pytest.mark.integration


def _send(mirror: Mirror, body: dict[str, Any], key: str | None = None, client: FlaskClient | None = None) -> Any:
    headers = {**mirror.caller.headers, **({"Idempotency-Key": key} if key else {})}
    return (client or mirror.client).post(f"/api/v1/accounts/{mirror.account_id}/send", headers=headers, json=body)


def test_the_same_idempotency_key_and_body_give_the_same_item_and_one_send(
    sender: Callable[..., Mirror], smtp: SMTPServer
) -> None:
    mirror = sender()
    body = draft_body()
    first = _send(mirror, body, key="key-1")
    again = _send(mirror, body, key="key-1")
    assert first.status_code == again.status_code == 202
    assert again.get_json()["outboxId"] == first.get_json()["outboxId"]
    conflicting = _send(mirror, {**body, "subject": "Something else"}, key="key-1")
    assert conflicting.status_code == 409 and "Idempotency-Key" in conflicting.get_json()["message"]
    other = _send(mirror, body, key="key-2")
    assert other.get_json()["outboxId"] != first.get_json()["outboxId"]
    for response in (first, other):
        assert wait_outbox(mirror, response.get_json()["outboxId"], ("sent", "failed"))["status"] == "sent"
    assert len(smtp.handler.messages) == 2
    listed = mirror.api("GET", f"/outbox?accountId={mirror.account_id}").get_json()
    assert listed["pagination"]["total"] == 2
    assert _send(mirror, body, key="k" * 256).status_code == 400


def test_a_send_is_cancelled_within_the_undo_window_and_the_draft_stays(
    make_mirror: MakeMirror,
    smtp: SMTPServer,
    data_dir: Path,
    database_urls: tuple[str, str],
    ctx: ServiceContext,
) -> None:
    client = compose_app(data_dir, database_urls, ctx, undo=60).test_client()
    mirror = make_mirror(api=client)
    use_smtp(mirror, smtp)
    draft = mirror.api("POST", f"/accounts/{mirror.account_id}/messages", json=draft_body()).get_json()
    before = now_ms()
    accepted = mirror.api("POST", "/compose/send", json={"messageId": draft["id"]}).get_json()
    assert accepted["status"] == "queued" and accepted["sendAt"] >= before + 60_000
    cancelled = mirror.api("DELETE", f"/outbox/{accepted['outboxId']}")
    assert cancelled.status_code == 200 and cancelled.get_json()["status"] == "cancelled"
    assert mirror.api("DELETE", f"/outbox/{accepted['outboxId']}").status_code == 409
    # Even when its job runs now (the scheduler finds nothing due), nothing is sent.
    assert send.send_outbox_item(ctx, tenant_id=mirror.tenant_id, outbox_id=uuid.UUID(accepted["outboxId"])) == (
        "cancelled"
    )
    assert smtp.handler.messages == []
    assert mirror.api("GET", f"/messages/{draft['id']}").get_json()["isDraft"] is True
    mirror.settle()
    assert len(mirror.on_server("Drafts")) == 1


def test_a_scheduled_send_leaves_at_its_time_not_before(
    make_mirror: MakeMirror, smtp: SMTPServer, quiet_client: FlaskClient, quiet_ctx: ServiceContext
) -> None:
    mirror = make_mirror()
    use_smtp(mirror, smtp)
    send_at = now_ms() + 3_600_000
    accepted = _send(mirror, {**draft_body(), "sendAt": send_at}, client=quiet_client).get_json()
    assert accepted == {"outboxId": accepted["outboxId"], "status": "scheduled", "sendAt": send_at}
    outbox_id = uuid.UUID(accepted["outboxId"])
    mine = [mirror.tenant_id]
    assert work_outbox(quiet_ctx, now=send_at - 1, tenant_ids=mine) == 0  # nothing due yet
    early = send.send_outbox_item(quiet_ctx, tenant_id=mirror.tenant_id, outbox_id=outbox_id, clock=now_ms)
    assert early == "early" and smtp.handler.messages == []
    assert mirror.api("GET", f"/outbox/{outbox_id}").get_json()["status"] == "scheduled"
    assert work_outbox(quiet_ctx, now=send_at, tenant_ids=mine) == 1  # due: its job is queued
    on_time = send.send_outbox_item(quiet_ctx, tenant_id=mirror.tenant_id, outbox_id=outbox_id, clock=lambda: send_at)
    assert on_time == "sent" and len(smtp.handler.messages) == 1
    too_late = _send(mirror, {**draft_body(), "sendAt": now_ms() + 400 * 86_400_000}, client=quiet_client)
    assert too_late.status_code == 400 and "sendAt" in too_late.get_json()["details"]


def test_451_then_250_is_retried_and_sent_once(sender: Callable[..., Mirror], smtp: SMTPServer) -> None:
    mirror = sender()
    smtp.handler.data_replies.append("451 4.3.0 Try again later")
    accepted = _send(mirror, draft_body()).get_json()
    item = wait_outbox(mirror, accepted["outboxId"], ("sent", "failed"))
    assert item["status"] == "sent" and item["attempts"] == 2 and item["error"] is None
    assert item["delivery"]["smtpCode"] == 250 and len(smtp.handler.messages) == 1
    assert smtp.handler.messages[0].message["Message-ID"] == item["messageId"]  # the same message both times


def test_550_fails_with_the_servers_reason(sender: Callable[..., Mirror], smtp: SMTPServer) -> None:
    mirror = sender()
    smtp.handler.data_replies.append("550 5.7.1 Message refused by policy")
    accepted = _send(mirror, draft_body()).get_json()
    item = wait_outbox(mirror, accepted["outboxId"], ("sent", "failed"))
    assert item["status"] == "failed" and item["attempts"] == 1
    assert item["error"]["kind"] == "Failed" and "Message refused by policy" in item["error"]["message"]
    assert item["delivery"]["smtpCode"] == 550 and smtp.handler.messages == []
    failed = mirror.api("GET", "/outbox?status=failed").get_json()["items"]
    assert [i["id"] for i in failed] == [accepted["outboxId"]]


def test_one_of_three_recipients_refused_is_a_partial_send(sender: Callable[..., Mirror], smtp: SMTPServer) -> None:
    mirror = sender()
    smtp.handler.refuse_rcpt["carol@example.com"] = "550 5.1.1 No such user"
    accepted = _send(mirror, draft_body()).get_json()
    item = wait_outbox(mirror, accepted["outboxId"], ("sent", "partially_sent", "failed"))
    assert item["status"] == "partially_sent"
    assert set(item["delivery"]["recipientFailures"]) == {"carol@example.com"}
    assert "No such user" in item["delivery"]["recipientFailures"]["carol@example.com"]
    (received,) = smtp.handler.messages
    assert sorted(received.rcpt_tos) == ["bob@example.com", "hidden@example.com"]


def test_a_worker_dying_after_the_250_never_sends_twice(
    make_mirror: MakeMirror,
    smtp: SMTPServer,
    quiet_client: FlaskClient,
    quiet_ctx: ServiceContext,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mirror = make_mirror()
    use_smtp(mirror, smtp)
    outbox_id = uuid.UUID(_send(mirror, draft_body(), client=quiet_client).get_json()["outboxId"])

    def crash(*_args: Any, **_kwargs: Any) -> str:
        raise SystemExit("worker killed between the server's 250 and the commit of the outcome")

    def later() -> int:  # past the undo window of the quiet app's default settings
        return now_ms() + 10_000

    monkeypatch.setattr(send, "record_delivery", crash)
    with pytest.raises(SystemExit):
        send.send_outbox_item(quiet_ctx, tenant_id=mirror.tenant_id, outbox_id=outbox_id, clock=later)
    monkeypatch.undo()
    assert len(smtp.handler.messages) == 1  # the server said 250; the outcome was never stored
    item = mirror.api("GET", f"/outbox/{outbox_id}").get_json()
    assert item["status"] == "sending" and item["attempts"] == 1
    # A redelivered or retried job finds it "sending" and does not send it again.
    assert send.send_outbox_item(quiet_ctx, tenant_id=mirror.tenant_id, outbox_id=outbox_id, clock=later) == "sending"
    mine = [mirror.tenant_id]
    assert work_outbox(quiet_ctx, now=later(), tenant_ids=mine) == 0  # within the job's time limit: maybe running
    assert work_outbox(quiet_ctx, now=later() + (SEND_TIME_LIMIT + 1) * 1000, tenant_ids=mine) == 1
    item = mirror.api("GET", f"/outbox/{outbox_id}").get_json()
    assert item["status"] == "failed" and item["error"]["kind"] == "OutcomeUnknown"
    assert send.send_outbox_item(quiet_ctx, tenant_id=mirror.tenant_id, outbox_id=outbox_id, clock=later) == "failed"
    assert len(smtp.handler.messages) == 1


def test_an_account_without_smtp_settings_gets_409_naming_them(make_mirror: MakeMirror) -> None:
    mirror = make_mirror()
    response = _send(mirror, draft_body())
    assert response.status_code == 409
    assert "smtpHostname" in response.get_json()["message"] and "smtpPort" in response.get_json()["message"]
    draft = mirror.api("POST", f"/accounts/{mirror.account_id}/messages", json=draft_body()).get_json()
    assert mirror.api("POST", "/compose/send", json={"messageId": draft["id"]}).status_code == 409


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"to": [{"email": "bob@localhost"}]}, "to"),
        ({"bcc": [{"email": f"r{i}@example.com"} for i in range(101)]}, "bcc"),
        ({"subject": "x" * 999}, "subject"),
        ({"subject": "line\r\nBcc: injected@example.com"}, "subject"),
        (
            {
                "attachments": [
                    {"filename": f"f{i}.txt", "contentType": "text/plain", "data": "eA=="} for i in range(21)
                ]
            },
            "attachments",
        ),
        ({"attachments": [{"filename": "f.txt", "contentType": "text/plain", "data": "not base64!"}]}, "attachments"),
        ({"to": [], "cc": [], "bcc": []}, "to"),
    ],
)
def test_limits_are_400s_naming_the_field(
    sender: Callable[..., Mirror], smtp: SMTPServer, change: dict[str, Any], field: str
) -> None:
    mirror = sender()
    response = _send(mirror, draft_body(**change))
    assert response.status_code == 400, response.get_json()
    assert field in response.get_json().get("details", {}) or field in response.get_json()["message"]
    assert smtp.handler.messages == []


def test_inline_attachments_may_make_a_body_larger_than_the_1_mb_json_limit(
    sender: Callable[..., Mirror], smtp: SMTPServer
) -> None:
    mirror = sender()
    data = bytes(range(256)) * 6000  # 1.5 MB, 2 MB in base64
    attachment = {
        "filename": "big.bin",
        "contentType": "application/octet-stream",
        "data": base64.b64encode(data).decode(),
    }
    accepted = _send(mirror, draft_body(attachments=[attachment]))
    assert accepted.status_code == 202, accepted.get_json()
    assert wait_outbox(mirror, accepted.get_json()["outboxId"], ("sent", "failed"))["status"] == "sent"
    (part,) = list(smtp.handler.messages[0].message.iter_attachments())
    assert part.get_payload(decode=True) == data
    too_big = {**attachment, "data": "A" * (140 * 1024 * 1024)}
    assert _send(mirror, draft_body(attachments=[too_big])).status_code == 413
