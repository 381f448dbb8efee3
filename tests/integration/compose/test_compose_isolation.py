"""Isolation of the compose and outbox endpoints (issue 9): another user of the tenant gets 403, another tenant's
user 404 (as for accounts and messages), an admin of the tenant may read; nobody else's draft is sent or edited."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from email_service.services.context import ServiceContext
from tests.conftest import Caller
from tests.integration.compose.conftest import Mirror, draft_body, wait_outbox
from tests.integration.smtp.conftest import SMTPServer

pytestmark = pytest.mark.integration


def test_every_compose_and_outbox_endpoint_keeps_users_and_tenants_apart(
    sender: Callable[..., Mirror], smtp: SMTPServer, ctx: ServiceContext, make_caller: Callable[..., Caller]
) -> None:
    owner = sender()
    draft = owner.api("POST", f"/accounts/{owner.account_id}/messages", json=draft_body()).get_json()
    item = owner.api("POST", f"/accounts/{owner.account_id}/send", json=draft_body()).get_json()
    assert wait_outbox(owner, item["outboxId"], ("sent", "failed"))["status"] == "sent"
    colleague, stranger = owner.caller.colleague(ctx), make_caller()
    admin = owner.caller.colleague(ctx, role="admin")

    requests: list[tuple[str, str, dict[str, Any] | None]] = [
        ("POST", f"/accounts/{owner.account_id}/messages", draft_body()),
        ("PUT", f"/messages/{draft['id']}", {"subject": "Hijacked"}),
        ("POST", "/compose/send", {"messageId": draft["id"]}),
        ("POST", f"/accounts/{owner.account_id}/send", draft_body()),
        ("GET", f"/outbox/{item['outboxId']}", None),
        ("GET", f"/outbox?accountId={owner.account_id}", None),
        ("DELETE", f"/outbox/{item['outboxId']}", None),
    ]
    for method, path, body in requests:
        for who, expected in ((colleague, 403), (stranger, 404)):
            response = owner.client.open(f"/api/v1{path}", method=method, headers=who.headers, json=body)
            assert response.status_code == expected, (method, path, who.role, response.get_json())
        alias = owner.client.open(f"/api{path}", method=method, headers=stranger.headers, json=body)
        assert alias.status_code == 404, (method, path)
    for who in (colleague, stranger):
        listed = owner.client.get("/api/v1/outbox", headers=who.headers).get_json()
        assert listed["items"] == [] and listed["pagination"]["total"] == 0
    seen = owner.client.get(f"/api/v1/outbox/{item['outboxId']}", headers=admin.headers)
    assert seen.status_code == 200 and seen.get_json()["status"] == "sent"
    assert len(smtp.handler.messages) == 1  # nobody else's request sent anything
    assert owner.api("GET", f"/messages/{draft['id']}").get_json()["subject"] == draft["subject"]
    assert owner.api("GET", "/outbox").get_json()["pagination"]["total"] == 1
