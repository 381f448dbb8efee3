"""Webhooks (issue 12) against a local HTTP receiver: the signature verifies, a 500 is retried with the same
delivery id (at-least-once, each change once), a long failure streak disables the webhook, internal addresses are
refused under the production host rule (at registration and at delivery), and the usual isolation.

The receiver is on 127.0.0.1, which the test settings allow (development: ``ALLOW_PRIVATE_WEBHOOK_HOSTS`` on);
the production rule is the same settings with it off.  Jobs are only recorded (quiet context) and run here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from flask.testing import FlaskClient

from email_service.app import create_app
from email_service.services.context import ServiceContext
from email_service.services.jobs import RecordingJobQueue
from email_service.services.webhooks import deliver, queue_deliveries
from email_service.tasks.fanout import WebhookFanout
from tests.conftest import create_imap_account, wait_for_sync
from tests.integration.changes.test_change_log_property import Scenario
from tests.integration.writeback.conftest import raw_message
from tests.support.dovecot import Dovecot
from tests.support.services import wait_until

pytestmark = pytest.mark.integration
SECRET = "receiver-shared-secret-0123456789"


class Receiver:
    """An HTTP server on 127.0.0.1 recording every request; answers with ``statuses`` in turn (then 200)."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.statuses: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.close()


@pytest.fixture
def scenario(quiet_client: FlaskClient, quiet_ctx: ServiceContext, make_caller: Any, dovecot: Dovecot) -> Scenario:
    return Scenario(quiet_client, quiet_ctx, make_caller(), dovecot)


def _deliveries_queued(ctx: ServiceContext) -> list[uuid.UUID]:
    jobs = ctx.jobs
    assert isinstance(jobs, RecordingJobQueue)
    found = [uuid.UUID(str(j.payload["deliveryId"])) for j in jobs.queued if j.name == "deliver_webhook"]
    jobs.queued.clear()
    return found


def _create(scenario: Scenario, **body: Any) -> Any:
    return scenario.api("POST", "/webhooks", json={"events": ["message.*"], **body})


def test_signed_delivery_retried_after_a_500_with_the_same_id_and_each_change_once(
    scenario: Scenario, receiver: Receiver
) -> None:
    created = _create(scenario, url=receiver.url, secret=SECRET)
    assert created.status_code == 201, created.get_json()
    webhook = created.get_json()
    assert webhook["secret"] == SECRET and webhook["scope"] == "user" and webhook["isEnabled"] is True
    ctx, tenant = scenario.ctx, scenario.caller.tenant_id
    assert queue_deliveries(ctx, [tenant]) == 0, "no backlog of changes made before the webhook"
    message = sorted(scenario.lists()[1].values(), key=lambda m: m["id"])[0]
    scenario.api_read(0, 0)  # that message: isRead flips
    receiver.statuses = [500]

    assert queue_deliveries(ctx, [tenant]) == 1
    (delivery_id,) = _deliveries_queued(ctx)
    assert deliver(ctx, tenant_id=tenant, delivery_id=delivery_id) == "pending"
    retry = ctx.jobs.queued[0]  # type: ignore[attr-defined]
    assert retry.name == "deliver_webhook" and retry.delay_seconds == ctx.settings.webhook_retry_base_seconds
    assert deliver(ctx, tenant_id=tenant, delivery_id=delivery_id) == "delivered"
    assert deliver(ctx, tenant_id=tenant, delivery_id=delivery_id) == "skipped", "a late duplicate job sends nothing"

    assert len(receiver.requests) == 2
    for headers, body in receiver.requests:
        assert headers["x-webhook-id"] == str(delivery_id)
        expected = hmac.new(SECRET.encode(), f"{headers['x-webhook-timestamp']}.".encode() + body, hashlib.sha256)
        assert hmac.compare_digest(headers["x-webhook-signature"], "v1=" + expected.hexdigest())
        payload = json.loads(body)
        assert payload["type"] == "message" and payload["updated"] == [message["id"]]
        assert payload["accountId"] == scenario.account_id and payload["id"] == str(delivery_id)
    assert queue_deliveries(ctx, [tenant]) == 0, "each change is delivered once"

    listed = scenario.api("GET", f"/webhooks/{webhook['id']}/deliveries").get_json()
    (row,) = listed["deliveries"]
    assert (row["state"], row["attempts"], row["lastStatus"]) == ("delivered", 2, 200)
    assert row["id"] == str(delivery_id) and listed["pagination"]["total"] == 1


def test_events_filter_and_a_failure_streak_disables_the_webhook(scenario: Scenario, receiver: Receiver) -> None:
    ctx, tenant = scenario.ctx, scenario.caller.tenant_id
    strict = dataclasses.replace(ctx, settings=dataclasses.replace(ctx.settings, webhook_disable_after_failures=2))
    hook = _create(scenario, url=receiver.url, events=["folder.created"]).get_json()
    scenario.api_read(0, 0)  # a message and folder update: not wanted
    assert queue_deliveries(ctx, [tenant]) == 0
    scenario.folder_create(0, 0)
    assert queue_deliveries(ctx, [tenant]) == 1
    (delivery_id,) = _deliveries_queued(ctx)
    receiver.statuses = [500, 503]
    assert deliver(strict, tenant_id=tenant, delivery_id=delivery_id) == "pending"
    assert deliver(strict, tenant_id=tenant, delivery_id=delivery_id) == "pending"  # the 2nd failure in a row ...
    assert deliver(strict, tenant_id=tenant, delivery_id=delivery_id) == "skipped"  # ... disabled the webhook
    assert len(receiver.requests) == 2
    (listed,) = scenario.api("GET", "/webhooks").get_json()["webhooks"]
    assert listed["id"] == hook["id"] and listed["isEnabled"] is False and listed["failureStreak"] == 2
    assert json.loads(receiver.requests[0][1])["created"]


def test_internal_urls_are_refused_under_the_production_rule(
    scenario: Scenario, receiver: Receiver, quiet_ctx: ServiceContext
) -> None:
    production = dataclasses.replace(quiet_ctx.settings, allow_private_webhook_hosts=False)
    strict_ctx = dataclasses.replace(quiet_ctx, settings=production)
    client = create_app(context=strict_ctx).test_client()
    for url in (receiver.url, "http://10.1.2.3/hook", "http://[::1]:8080/x", "http://169.254.169.254/latest"):
        refused = client.post("/api/v1/webhooks", headers=scenario.caller.headers, json={"url": url, "events": ["*"]})
        assert refused.status_code == 400, url
        assert "url" in refused.get_json()["details"]
    allowed = dataclasses.replace(production, webhook_host_allowlist=("127.0.0.1",))
    assert (
        create_app(context=dataclasses.replace(quiet_ctx, settings=allowed))
        .test_client()
        .post("/api/v1/webhooks", headers=scenario.caller.headers, json={"url": receiver.url, "events": ["*"]})
        .status_code
        == 201
    )

    tenant = scenario.caller.tenant_id
    scenario.api_read(0, 0)
    queue_deliveries(quiet_ctx, [tenant])
    delivery_id = _deliveries_queued(quiet_ctx)[0]
    assert deliver(strict_ctx, tenant_id=tenant, delivery_id=delivery_id) == "pending"  # refused when dialling
    assert receiver.requests == []
    rows = scenario.api("GET", "/webhooks").get_json()["webhooks"]
    deliveries = scenario.api("GET", f"/webhooks/{rows[0]['id']}/deliveries").get_json()["deliveries"]
    refused = next(d for d in deliveries if d["id"] == str(delivery_id))
    assert "a non-public address: loopback" in refused["lastError"] and refused["lastStatus"] is None


def test_input_rules_roles_and_isolation(scenario: Scenario, receiver: Receiver, make_caller: Any) -> None:
    assert _create(scenario, url="ftp://example.com/x").status_code == 400
    assert _create(scenario, url=receiver.url, events=["mail.created"]).status_code == 400
    assert _create(scenario, url=receiver.url, secret="short").status_code == 400
    assert _create(scenario, url=receiver.url, scope="tenant").status_code == 403
    assert _create(scenario, url=receiver.url, extra=1).status_code == 400
    hook = _create(scenario, url=receiver.url).get_json()
    colleague = scenario.caller.colleague(scenario.ctx)
    stranger = make_caller()
    other = scenario.client.get(f"/api/v1/webhooks/{hook['id']}/deliveries", headers=colleague.headers)
    assert other.status_code == 403
    assert scenario.client.get(f"/api/v1/webhooks/{hook['id']}/deliveries", headers=stranger.headers).status_code == 404
    assert scenario.client.get("/api/v1/webhooks", headers=colleague.headers).get_json() == {"webhooks": []}
    admin = scenario.caller.colleague(scenario.ctx, role="admin")
    tenant_wide = scenario.client.post(
        "/api/v1/webhooks", headers=admin.headers, json={"url": receiver.url, "events": ["*"], "scope": "tenant"}
    )
    assert tenant_wide.status_code == 201 and tenant_wide.get_json()["scope"] == "tenant"
    assert {w["id"] for w in scenario.client.get("/api/webhooks", headers=admin.headers).get_json()["webhooks"]} == {
        tenant_wide.get_json()["id"]
    }
    assert scenario.client.delete(f"/api/v1/webhooks/{hook['id']}", headers=colleague.headers).status_code == 403
    assert scenario.api("DELETE", f"/webhooks/{hook['id']}").status_code == 200
    assert scenario.api("GET", f"/webhooks/{hook['id']}/deliveries").status_code == 404


def test_the_fan_out_thread_delivers_soon_after_the_commit_through_the_job_runner(
    client: FlaskClient, ctx: ServiceContext, make_caller: Any, dovecot: Dovecot, receiver: Receiver
) -> None:
    """No manual step: the commit wakes the fan-out thread, which makes the delivery and queues its job on the
    session's in-process runner, which POSTs it."""
    caller = make_caller()
    user, password = dovecot.new_user()
    dovecot.append(user, "INBOX", raw_message("fan-out"))
    account_id = create_imap_account(client, caller, dovecot.host, dovecot.imap_port, user, password)
    assert client.post(f"/api/v1/accounts/{account_id}/sync", headers=caller.headers).status_code == 202
    assert wait_for_sync(client, account_id, caller.headers)["state"] == "succeeded"
    (message,) = client.get(f"/api/v1/accounts/{account_id}/messages", headers=caller.headers).get_json()["messages"]
    fanout = WebhookFanout(ctx).start()
    try:
        body = {"url": receiver.url, "secret": SECRET, "events": ["message.updated"]}
        hook = client.post("/api/v1/webhooks", headers=caller.headers, json=body).get_json()
        assert (
            client.patch(f"/api/v1/messages/{message['id']}", headers=caller.headers, json={"isRead": True}).status_code
            == 200
        )
        wait_until(lambda: receiver.requests, timeout=10, what="the webhook POST")
        payload = json.loads(receiver.requests[0][1])
        assert payload["webhookId"] == hook["id"] and payload["updated"] == [message["id"]]
    finally:
        fanout.stop()
