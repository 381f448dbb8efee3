"""Helpers of the write-back tests (issue 8): a Dovecot mailbox mirrored through the API, the server's state read
through a separate IMAP session, and waits for the write-back job.

``Mirror`` talks to the service only through HTTP, except for waiting: "no action pending any more" is read from the
database, so that polling never runs into the per-user rate limit.  Everything asserted about the server is read
from Dovecot over its own connection.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from apiflask import APIFlask
from flask.testing import FlaskClient

from email_service.app import create_app
from email_service.services import actions, sync_runs
from email_service.services.context import ServiceContext, build_context
from email_service.services.jobs import RecordingJobQueue
from email_service.sync.account import sync_account
from email_service.sync.syncback import syncback_account
from tests.conftest import Caller, create_imap_account, make_settings, wait_for_sync
from tests.support.dovecot import Dovecot
from tests.support.imap_relay import ImapRelay
from tests.support.services import wait_until


def raw_message(subject: str, body: str = "hello") -> bytes:
    """A small RFC 5322 message with ``subject``."""
    message = EmailMessage()
    message["From"] = "Alice <alice@example.com>"
    message["To"] = "bob@example.com"
    message["Subject"] = subject
    message["Message-ID"] = f"<{uuid.uuid4().hex}@example.com>"
    message.set_content(body)
    return bytes(message)


def server_state(server: Dovecot, user: str, mailbox: str) -> dict[int, tuple[str, set[str]]]:
    """``{uid: (subject, flags)}`` of ``mailbox`` as the server holds it, read over a separate IMAP session."""
    with server.imap(user) as imap:
        imap.select_folder(mailbox, readonly=True)
        uids = imap.search("ALL")
        fetched = imap.fetch(uids, ["FLAGS", "BODY.PEEK[HEADER.FIELDS (SUBJECT)]"]) if uids else {}
    state = {}
    for uid, data in fetched.items():
        header = data[b"BODY[HEADER.FIELDS (SUBJECT)]"].decode().strip()
        flags = {f.decode() if isinstance(f, bytes) else str(f) for f in data[b"FLAGS"]} - {"\\Recent"}
        state[uid] = (header.removeprefix("Subject: "), flags)
    return state


@dataclass
class Mirror:
    """An IMAP account of ``user`` on ``server`` (or through ``relay``), registered and synced through the API."""

    client: FlaskClient
    ctx: ServiceContext
    caller: Caller
    server: Dovecot
    user: str
    account_id: str

    @property
    def tenant_id(self) -> uuid.UUID:
        return self.caller.tenant_id

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.client.open(f"/api/v1{path}", method=method, headers=self.caller.headers, **kwargs)

    def sync(self) -> dict[str, Any]:
        started = self.api("POST", f"/accounts/{self.account_id}/sync")
        assert started.status_code == 202, started.get_json()
        status = wait_for_sync(self.client, self.account_id, self.caller.headers)
        assert status["state"] == "succeeded", status
        return status

    def folders(self) -> dict[str, dict[str, Any]]:
        body = self.api("GET", f"/accounts/{self.account_id}/folders").get_json()
        return {f["name"]: f for f in body["folders"]}

    def messages(self, folder: str) -> dict[str, dict[str, Any]]:
        """``{subject: message}`` of one folder."""
        folder_id = self.folders()[folder]["id"]
        body = self.api("GET", f"/accounts/{self.account_id}/messages?folderId={folder_id}&limit=100").get_json()
        return {m["subject"]: m for m in body["messages"]}

    def settle(self, timeout: float = 30.0) -> None:
        """Wait until the write-back has worked every pending action of the account."""
        account = uuid.UUID(self.account_id)
        wait_until(lambda: not actions.has_pending(self.ctx, self.tenant_id, account), timeout, "write-back")

    def actions(self, state: str) -> list[dict[str, Any]]:
        body = self.api("GET", f"/accounts/{self.account_id}/actions?state={state}").get_json()
        return list(body["actions"])

    def on_server(self, mailbox: str) -> dict[int, tuple[str, set[str]]]:
        return server_state(self.server, self.user, mailbox)

    def imap(self) -> Any:
        """A separate IMAP session of the user (context manager)."""
        return self.server.imap(self.user)


MakeMirror = Callable[..., Mirror]


def _fast_app(data_dir: Path, database_urls: tuple[str, str], ctx: ServiceContext, **overrides: Any) -> APIFlask:
    settings = make_settings(data_dir, database_urls, RATE_LIMIT="100000 per minute")
    fresh = build_context(settings, jobs=ctx.jobs)
    fresh.db.dispose()
    return create_app(context=dataclasses.replace(fresh, db=ctx.db, **overrides))


@pytest.fixture
def app(data_dir: Path, database_urls: tuple[str, str], ctx: ServiceContext) -> APIFlask:
    """The app over the session's database and job runner, with a rate limit these tests do not reach."""
    return _fast_app(data_dir, database_urls, ctx)


@pytest.fixture
def quiet_ctx(ctx: ServiceContext) -> ServiceContext:
    """The session's context with a job queue that only records: the test runs write-back and sync itself."""
    return dataclasses.replace(ctx, jobs=RecordingJobQueue())


@pytest.fixture
def quiet_client(data_dir: Path, database_urls: tuple[str, str], quiet_ctx: ServiceContext) -> FlaskClient:
    """A client of an app whose jobs are only recorded (nothing runs in the background)."""
    return _fast_app(data_dir, database_urls, quiet_ctx, jobs=quiet_ctx.jobs).test_client()


def run_sync(ctx: ServiceContext, tenant_id: uuid.UUID, account_id: str) -> str:
    """One sync of the account now, on this thread."""
    run, _created = sync_runs.enqueue_sync(
        ctx, tenant_id=tenant_id, account_id=uuid.UUID(account_id), trigger="api", principal=None
    )
    return sync_account(ctx, tenant_id=tenant_id, account_id=uuid.UUID(account_id), run_id=run.id)


def run_syncback(ctx: ServiceContext, tenant_id: uuid.UUID, account_id: str) -> str:
    """One write-back of the account now, on this thread."""
    return syncback_account(ctx, tenant_id=tenant_id, account_id=uuid.UUID(account_id))


@pytest.fixture
def make_mirror(
    client: FlaskClient, ctx: ServiceContext, caller: Caller, dovecot: Dovecot, mail_user: tuple[str, str]
) -> MakeMirror:
    """``make(seed={mailbox: [subject, ...]}, server=dovecot, port=None, client=client)`` -> a synced
    :class:`Mirror` of a fresh user (``port``: e.g. a relay's, instead of the server's IMAP port)."""

    def make(
        seed: dict[str, list[str]] | None = None,
        *,
        server: Dovecot = dovecot,
        port: int | None = None,
        api: FlaskClient = client,
    ) -> Mirror:
        user, password = mail_user if server is dovecot else server.new_user()
        for mailbox, subjects in (seed or {}).items():
            if mailbox not in ("INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive"):
                server.create_mailbox(user, mailbox)
            for subject in subjects:
                server.append(user, mailbox, raw_message(subject))
        account_id = create_imap_account(api, caller, server.host, port or server.imap_port, user, password)
        mirror = Mirror(api, ctx, caller, server, user, account_id)
        mirror.sync()
        return mirror

    return make


@pytest.fixture
def relay(dovecot: Dovecot) -> Iterator[ImapRelay]:
    """A command-counting relay in front of the session's Dovecot."""
    with ImapRelay(dovecot.host, dovecot.imap_port) as running:
        yield running
