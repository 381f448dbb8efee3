"""Helpers of the list, thread and search tests: accounts made through the API, messages built as RFC 5322 bytes
and stored through the sync's own store functions (:func:`message_rows` / :func:`insert_rows`), so the threads and
the search index are made by the code path every writer uses."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage as MimeMessage
from email.utils import format_datetime
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select, update

from email_service.models import EmailAccount, EmailFolder, Tenant, folder_counts_delta, now_ms
from email_service.services.context import ServiceContext
from email_service.sync.store import insert_rows, message_rows
from tests.conftest import Caller, account_body

DAY_MS = 86_400_000
#: 2026-03-01 00:00 UTC, epoch ms: the base of the test mailboxes' dates.
BASE_MS = 1_772_323_200_000


def raw_message(
    *,
    subject: str = "Hello",
    sender: str = "Alice Able <alice@example.com>",
    to: str = "Bob Baker <bob@example.org>",
    cc: str | None = None,
    body: str = "Hello there.",
    html: str | None = None,
    message_id: str | None = None,
    in_reply_to: str | None = None,
    references: Sequence[str] = (),
    date_ms: int = BASE_MS,
    attachments: Sequence[tuple[str, bytes]] = (),
) -> bytes:
    """RFC 5322 bytes of a message with these headers, a text (or HTML) body and attachments ``(filename, bytes)``."""
    message = MimeMessage()
    message["From"] = sender
    message["To"] = to
    if cc:
        message["Cc"] = cc
    message["Subject"] = subject
    message["Date"] = format_datetime(datetime.fromtimestamp(date_ms / 1000, UTC))
    message["Message-ID"] = f"<{message_id or uuid.uuid4().hex + '@test.example'}>"
    if in_reply_to:
        message["In-Reply-To"] = f"<{in_reply_to}>"
    if references:
        message["References"] = " ".join(f"<{r}>" for r in references)
    if html is not None:
        message.set_content(html, subtype="html")
    else:
        message.set_content(body)
    for filename, data in attachments:
        message.add_attachment(data, maintype="application", subtype="octet-stream", filename=filename)
    return message.as_bytes()


@dataclass
class Box:
    """An account of ``owner`` (made through the API) and its folders by name."""

    ctx: ServiceContext
    owner: Caller
    account_id: uuid.UUID
    folders: dict[str, uuid.UUID] = field(default_factory=dict)
    next_uid: int = 1

    def folder(self, name: str, role: str = "custom") -> uuid.UUID:
        """The folder ``name`` (created on first use with ``role``)."""
        if name not in self.folders:
            folder_id = uuid.uuid4()
            with self.ctx.db.tenant_session(self.owner.tenant_id) as session:
                session.add(
                    EmailFolder(
                        id=folder_id, tenant_id=self.owner.tenant_id, account_id=self.account_id, name=name,
                        type=role, attributes=[],
                    )
                )  # fmt: skip
            self.folders[name] = folder_id
        return self.folders[name]

    def store(self, folder: str, raws: Sequence[bytes], *, flags: Sequence[Sequence[str]] = ()) -> list[uuid.UUID]:
        """Store ``raws`` in ``folder`` as a sync batch does (rows, counts); their row ids in order."""
        folder_id = self.folder(folder, "inbox" if folder == "INBOX" else "sent" if folder == "Sent" else "custom")
        messages, parts = [], []
        for index, raw in enumerate(raws):
            row, attachment_rows = message_rows(
                raw,
                identity={"uid": self.next_uid, "uidvalidity": 1},
                tenant_id=self.owner.tenant_id,
                account_id=self.account_id,
                folder_id=folder_id,
                flags=flags[index] if index < len(flags) else (),
            )
            self.next_uid += 1
            messages.append(row)
            parts.extend(attachment_rows)
        unread = sum(1 for m in messages if not m["is_read"])
        with self.ctx.db.tenant_session(self.owner.tenant_id) as session:
            insert_rows(session, messages, parts)
            session.execute(folder_counts_delta(folder_id, total=len(messages), unread=unread))
        return [m["id"] for m in messages]


@pytest.fixture(scope="package", autouse=True)
def _no_account_left_due_for_sync(ctx: ServiceContext) -> Iterator[None]:
    """These accounts have no server: switch their scheduled sync off when the package is done."""
    started = now_ms()
    yield
    with ctx.db.system_session() as session:
        tenants = list(session.execute(select(Tenant.tenant_id)).scalars())
    for tenant_id in tenants:
        with ctx.db.tenant_session(tenant_id) as session:
            session.execute(
                update(EmailAccount)
                .where(EmailAccount.tenant_id == tenant_id, EmailAccount.created_at >= started)
                .values(is_sync_enabled=False)
            )


def new_box(ctx: ServiceContext, client: FlaskClient, caller: Caller) -> Box:
    """A :class:`Box` of a new account of ``caller``, made through the API (no server: sync off)."""
    body = account_body(hostname="127.0.0.1", port=1, encryption="none", isSyncEnabled=False)
    response = client.post("/api/v1/accounts", headers=caller.headers, json=body)
    assert response.status_code == 201, response.get_json()
    return Box(ctx, caller, uuid.UUID(response.get_json()["id"]))


@pytest.fixture
def make_box(client: FlaskClient, ctx: ServiceContext, make_caller: Callable[..., Caller]) -> Callable[..., Box]:
    """``make_box(owner=None)`` -> a :class:`Box` of a new account (of a new user unless ``owner``)."""

    def make(owner: Caller | None = None) -> Box:
        return new_box(ctx, client, owner or make_caller())

    return make


def get_json(client: FlaskClient, caller: Caller, path: str, status: int = 200) -> Any:
    """GET ``path`` as ``caller``; asserts ``status`` and returns the JSON body."""
    response = client.get(path, headers=caller.headers)
    assert response.status_code == status, response.get_json()
    return response.get_json()
