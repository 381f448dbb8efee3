"""Helpers of the HTTP API tests: accounts created through the API, mailbox rows written straight to the
database (so isolation can be checked without a mail server), and apps built with other settings."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from apiflask import APIFlask
from flask.testing import FlaskClient
from sqlalchemy import select, update

from email_service.app import create_app
from email_service.models import (
    EmailAccount,
    EmailAttachment,
    EmailCredential,
    EmailFolder,
    EmailMessage,
    Tenant,
    now_ms,
)
from email_service.services.accounts import account_password
from email_service.services.context import ServiceContext, build_context
from tests.conftest import Caller, account_body, make_settings

#: The mirrored message's attachment (part 2 of RAW_MESSAGE, base64 there).
ATTACHMENT_BYTES = b"%PDF-1.4\n% quarterly numbers\n" + bytes(range(256)) * 4
RAW_MESSAGE = (
    b"From: Alice <alice@example.com>\r\nTo: Bob <bob@example.com>\r\nSubject: Quarterly numbers\r\n"
    b"Message-ID: <q1@example.com>\r\nDate: Sun, 01 Mar 2026 12:00:00 +0000\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\n'
    b"Confidential body text\r\n--b1\r\nContent-Type: application/pdf\r\n"
    b'Content-Disposition: attachment; filename="numbers.pdf"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
    + base64.encodebytes(ATTACHMENT_BYTES).replace(b"\n", b"\r\n")
    + b"--b1--\r\n"
)
#: Values of the seeded mailbox that must never leak to a caller without access.
SECRET_SUBJECT = "Quarterly numbers"
SECRET_BODY = "Confidential body text"


@dataclass(frozen=True)
class Mailbox:
    """An account created through the API plus one folder, one message and one attachment row (a real part of
    the stored raw message)."""

    owner: Caller
    account: dict[str, Any]
    folder_id: uuid.UUID
    message_id: uuid.UUID
    attachment_id: uuid.UUID

    @property
    def account_id(self) -> str:
        return str(self.account["id"])


def assert_invalid(response: Any, *, mentions: str | None = None, message: str | None = None) -> None:
    """400 with the seed body ``{"error": "Invalid request", "message": ...}`` (+ optional ``details``)."""
    assert response.status_code == 400, response.get_json()
    body = response.get_json()
    assert body["error"] == "Invalid request"
    assert set(body) <= {"error", "message", "details"}
    assert isinstance(body["message"], str) and body["message"]
    if message is not None:
        assert body["message"] == message
    if mentions is not None:
        assert mentions.lower() in body["message"].lower()


def create_account(client: FlaskClient, caller: Caller, **overrides: Any) -> dict[str, Any]:
    """POST /api/v1/accounts as ``caller``; asserts 201 and returns the body."""
    response = client.post("/api/v1/accounts", headers=caller.headers, json=account_body(**overrides))
    assert response.status_code == 201, response.get_json()
    body: dict[str, Any] = response.get_json()
    return body


def seed_mailbox(ctx: ServiceContext, tenant_id: uuid.UUID, account_id: uuid.UUID) -> tuple[uuid.UUID, uuid.UUID]:
    """Write an INBOX, one message (raw bytes in the blob store) and one attachment row; ``(folder, message)``."""
    return seed_mailbox_rows(ctx, tenant_id, account_id)[:2]


def seed_draft(ctx: ServiceContext, tenant_id: uuid.UUID, account_id: uuid.UUID) -> uuid.UUID:
    """Write a Drafts folder (if missing) and an empty draft message row (``is_draft``); return the draft's id."""
    draft_id = uuid.uuid4()
    with ctx.db.tenant_session(tenant_id) as session:
        folder = session.execute(
            select(EmailFolder).where(EmailFolder.account_id == account_id, EmailFolder.name == "Drafts")
        ).scalar_one_or_none()
        if folder is None:
            folder = EmailFolder(
                id=uuid.uuid4(), tenant_id=tenant_id, account_id=account_id, name="Drafts", type="drafts",
                attributes=["\\Drafts"],
            )  # fmt: skip
            session.add(folder)
            session.flush()
        session.add(
            EmailMessage(
                id=draft_id, tenant_id=tenant_id, account_id=account_id, folder_id=folder.id, subject="Draft",
                is_draft=True, flags=["\\Draft"], received_at=now_ms(),
            )
        )  # fmt: skip
    return draft_id


def seed_mailbox_rows(
    ctx: ServiceContext, tenant_id: uuid.UUID, account_id: uuid.UUID
) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID]:
    """:func:`seed_mailbox`, also returning the attachment's id: ``(folder, message, attachment)``."""
    digest = ctx.blobs.put(str(tenant_id), RAW_MESSAGE)
    folder_id, message_id, attachment_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    with ctx.db.tenant_session(tenant_id) as session:
        session.add(
            EmailFolder(
                id=folder_id,
                tenant_id=tenant_id,
                account_id=account_id,
                name="INBOX",
                type="inbox",
                attributes=[],
                total_count=1,
                unread_count=1,
            )
        )
        session.flush()
        session.add(
            EmailMessage(
                id=message_id,
                tenant_id=tenant_id,
                account_id=account_id,
                folder_id=folder_id,
                uid=1,
                uidvalidity=1,
                message_id="q1@example.com",
                subject=SECRET_SUBJECT,
                from_name="Alice",
                from_address="alice@example.com",
                to_addresses=[{"name": "Bob", "email": "bob@example.com"}],
                text_body=SECRET_BODY,
                preview=SECRET_BODY,
                received_at=1_772_366_400_000,
                size=len(RAW_MESSAGE),
                raw_sha256=digest,
                has_attachments=True,
            )
        )
        session.flush()
        session.add(
            EmailAttachment(
                id=attachment_id,
                tenant_id=tenant_id,
                account_id=account_id,
                message_id=message_id,
                part_id="2",
                filename="numbers.pdf",
                mime_type="application/pdf",
                size_bytes=len(ATTACHMENT_BYTES),
                content_hash=hashlib.sha256(ATTACHMENT_BYTES).hexdigest(),
                content_encoding="base64",
                storage_type="message",
                storage_path=f"{digest}#2",
                virus_scan_status="skipped",
            )
        )
    return folder_id, message_id, attachment_id


@pytest.fixture(scope="package", autouse=True)
def _no_account_left_due_for_sync(ctx: ServiceContext) -> Iterator[None]:
    """When these tests are done, switch off scheduled sync of the accounts they made: none has a real server,
    and a later scheduler test (``schedule_due``) would otherwise queue hundreds of doomed syncs before its own."""
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


@pytest.fixture
def make_mailbox(client: FlaskClient, ctx: ServiceContext) -> Callable[[Caller], Mailbox]:
    """``make(owner)`` -> a :class:`Mailbox` of a new account of ``owner``."""

    def make(owner: Caller) -> Mailbox:
        # A closed local port: connection tests and syncs of this account fail at once, without DNS.
        account = create_account(client, owner, hostname="127.0.0.1", port=1, encryption="none")
        account_id = uuid.UUID(account["id"])
        folder_id, message_id, attachment_id = seed_mailbox_rows(ctx, owner.tenant_id, account_id)
        return Mailbox(owner, account, folder_id, message_id, attachment_id)

    return make


@pytest.fixture
def app_with(data_dir: Path, database_urls: tuple[str, str], ctx: ServiceContext) -> Callable[..., APIFlask]:
    """``app_with(**env)`` -> an app over the session's database with settings changed by ``env`` (``None``:
    variable unset).

    The app's context is built from those settings as in production (token rules, header trust, limits, CORS),
    but shares the session's database pool and job runner.
    """

    def build(**env: str | None) -> APIFlask:
        settings = make_settings(data_dir, database_urls, **env)
        fresh = build_context(settings, jobs=ctx.jobs)
        fresh.db.dispose()
        return create_app(context=dataclasses.replace(fresh, db=ctx.db))

    return build


def stored_credentials(ctx: ServiceContext, caller: Caller, account_id: str) -> list[EmailCredential]:
    """The account's stored credential rows (ciphertext and key id), read in the caller's tenant."""
    with ctx.db.tenant_session(caller.tenant_id) as session:
        return list(
            session.execute(
                select(EmailCredential).where(EmailCredential.account_id == uuid.UUID(account_id))
            ).scalars()
        )


def stored_password(ctx: ServiceContext, caller: Caller, account_id: str) -> str:
    """The account's mail password as ``ctx``'s keyring decrypts it (raises CredentialDecryptionError)."""
    with ctx.db.tenant_session(caller.tenant_id) as session:
        account = session.get(EmailAccount, uuid.UUID(account_id))
        assert account is not None
        return account_password(ctx, session, account)
