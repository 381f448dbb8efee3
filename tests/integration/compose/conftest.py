"""Helpers of the compose and send tests (issue 9): a Dovecot mailbox mirrored through the API (the write-back
tests' :class:`Mirror`) whose account sends through an aiosmtpd server in this process, and waits for outbox items.

Everything asserted about delivery is read from the aiosmtpd handler (envelope and bytes as received); everything
about the IMAP side from Dovecot over its own connection.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from apiflask import APIFlask
from flask.testing import FlaskClient

from email_service.app import create_app
from email_service.services.context import ServiceContext, build_context
from tests.conftest import Caller, make_settings
from tests.integration.smtp.conftest import SMTPServer, smtp_server, tls_material  # noqa: F401  (fixtures)
from tests.integration.writeback.conftest import (  # noqa: F401  (fixtures)
    MakeMirror,
    Mirror,
    make_mirror,
    quiet_client,
    quiet_ctx,
    relay,
)

pytestmark = pytest.mark.integration


def _accept_any_login(*_args: Any) -> Any:
    from aiosmtpd.smtp import AuthResult

    return AuthResult(success=True, handled=False)


def compose_app(
    data_dir: Path, database_urls: tuple[str, str], ctx: ServiceContext, *, undo: int = 0, **overrides: Any
) -> APIFlask:
    """An app over the session's database with ``SEND_UNDO_SECONDS=undo`` and a rate limit tests do not reach."""
    settings = make_settings(data_dir, database_urls, RATE_LIMIT="100000 per minute", SEND_UNDO_SECONDS=str(undo))
    fresh = build_context(settings, jobs=ctx.jobs)
    fresh.db.dispose()
    return create_app(context=dataclasses.replace(fresh, db=ctx.db, **overrides))


@pytest.fixture
def app(data_dir: Path, database_urls: tuple[str, str], ctx: ServiceContext) -> APIFlask:
    """The app over the session's database and job runner; sends leave at once (no undo window)."""
    return compose_app(data_dir, database_urls, ctx)


@pytest.fixture
def smtp(smtp_server: Callable[..., SMTPServer]) -> SMTPServer:  # noqa: F811
    """A plain (no TLS) aiosmtpd server accepting any AUTH login."""
    return smtp_server(authenticator=_accept_any_login)


def use_smtp(mirror: Mirror, server: SMTPServer, client: FlaskClient | None = None) -> None:
    """Give the mirror's account the SMTP settings of ``server``."""
    body = {"smtpHostname": server.host, "smtpPort": server.port, "smtpEncryption": "none"}
    response = (client or mirror.client).put(
        f"/api/v1/accounts/{mirror.account_id}", headers=mirror.caller.headers, json=body
    )
    assert response.status_code == 200, response.get_json()


@pytest.fixture
def sender(make_mirror: MakeMirror, smtp: SMTPServer) -> Callable[..., Mirror]:  # noqa: F811
    """``sender(seed=None)`` -> a synced mirror whose account sends through ``smtp``."""

    def make(seed: dict[str, list[str]] | None = None) -> Mirror:
        mirror = make_mirror(seed)
        use_smtp(mirror, smtp)
        return mirror

    return make


def wait_outbox(mirror: Mirror, outbox_id: str, states: tuple[str, ...], timeout: float = 30.0) -> dict[str, Any]:
    """Poll ``GET /outbox/{id}`` until its status is one of ``states``; return the item."""
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = mirror.api("GET", f"/outbox/{outbox_id}").get_json()
        if body.get("status") in states:
            return body
        time.sleep(0.1)
    raise AssertionError(f"outbox item {outbox_id} did not reach {states}: {body}")


def draft_body(**overrides: Any) -> dict[str, Any]:
    """A draft with To, Cc, Bcc, a text body and one attachment."""
    body: dict[str, Any] = {
        "to": [{"name": "Bob Example", "email": "bob@example.com"}],
        "cc": [{"email": "carol@example.com"}],
        "bcc": [{"email": "hidden@example.com"}],
        "subject": f"Report {uuid.uuid4().hex[:8]}",
        "textBody": "Hello Bob,\nthe report is attached.\n",
        "attachments": [{"filename": "report.txt", "contentType": "text/plain", "data": "UmVwb3J0IDEK"}],
    }
    body.update(overrides)
    return body


__all__ = ["Caller", "Mirror", "compose_app", "draft_body", "use_smtp", "wait_outbox"]
