"""PostgreSQL row-level security (DESIGN.md section 6, seed 003), checked as the application's own database role:
a transaction bound to one tenant neither sees nor writes another tenant's rows, and a transaction bound to no
tenant sees nothing.  Collected only on PostgreSQL (``TEST_DATABASE_URL``): SQLite has no RLS, see conftest.

Integration tests: CI runs them in its PostgreSQL pass, where none may be skipped.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from email_service.models import (
    TENANT_TABLES,
    AuditLog,
    ChangeEntry,
    EmailAccount,
    EmailAttachment,
    EmailCredential,
    EmailFolder,
    EmailMessage,
    IdempotencyKey,
    OutboxItem,
    PendingAction,
    PushLease,
    SearchDoc,
    SyncRun,
    ThreadContainer,
    Webhook,
    WebhookCursor,
    WebhookDelivery,
    now_ms,
)
from email_service.services.context import ServiceContext
from tests.conftest import Caller
from tests.integration.api.conftest import Mailbox

pytestmark = pytest.mark.integration

APP_ROLE = "email_service_app"


@dataclass(frozen=True)
class Tenant:
    """A tenant with at least one row in every tenant table."""

    caller: Caller
    mailbox: Mailbox
    run_id: uuid.UUID
    spare_account_id: uuid.UUID  # an account without a push lease (one lease per account)
    spare_message_id: uuid.UUID  # a message without a search doc (one doc per message)
    outbox_id: uuid.UUID
    webhook_id: uuid.UUID

    @property
    def id(self) -> uuid.UUID:
        return self.caller.tenant_id


@pytest.fixture
def make_tenant(
    ctx: ServiceContext, make_mailbox: Callable[[Caller], Mailbox], make_caller: Callable[..., Caller]
) -> Callable[[], Tenant]:
    def make() -> Tenant:
        caller = make_caller()
        mailbox = make_mailbox(caller)  # account, credential, audit entry, folder, message, attachment
        run_id, spare_account_id, spare_message_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        account_id = uuid.UUID(mailbox.account_id)
        with ctx.db.tenant_session(caller.tenant_id) as session:
            session.add(
                SyncRun(
                    id=run_id,
                    tenant_id=caller.tenant_id,
                    account_id=uuid.UUID(mailbox.account_id),
                    state="succeeded",
                    trigger="api",
                )
            )
            session.add(_pending_action(caller.tenant_id, uuid.UUID(mailbox.account_id), seq=1))
            session.add(
                PushLease(
                    tenant_id=caller.tenant_id,
                    account_id=uuid.UUID(mailbox.account_id),
                    holder="host:1:lease",
                    expires_at=1,
                )
            )
            session.add(_bare_account(caller.tenant_id, id=spare_account_id))
            session.add(
                EmailMessage(
                    id=spare_message_id, tenant_id=caller.tenant_id, account_id=account_id,
                    folder_id=mailbox.folder_id, uid=98, uidvalidity=7,
                )
            )  # fmt: skip
            session.add(SearchDoc(tenant_id=caller.tenant_id, account_id=account_id, message_id=mailbox.message_id))
            session.add(_container(caller.tenant_id, account_id))
            outbox = _outbox_item(caller.tenant_id, account_id)
            session.add(outbox)
            session.add(_change(caller.tenant_id, account_id))
            hook_id = uuid.uuid4()
            session.add(_webhook(caller.tenant_id, id=hook_id))
            session.flush()
            session.add(_idempotency_key(caller.tenant_id, outbox.id))
            session.add(_cursor(caller.tenant_id, hook_id, account_id))
            session.add(_delivery(caller.tenant_id, hook_id, account_id))
        return Tenant(caller, mailbox, run_id, spare_account_id, spare_message_id, outbox.id, hook_id)

    return make


def _pending_action(tenant_id: uuid.UUID, account_id: uuid.UUID, seq: int) -> PendingAction:
    return PendingAction(
        tenant_id=tenant_id, account_id=account_id, seq=seq, kind="flags", next_attempt_at=now_ms(), details={}
    )


def _container(tenant_id: uuid.UUID, account_id: uuid.UUID) -> ThreadContainer:
    return ThreadContainer(
        tenant_id=tenant_id, account_id=account_id, msgid=f"{uuid.uuid4().hex}@x", thread_id=uuid.uuid4()
    )


def _outbox_item(tenant_id: uuid.UUID, account_id: uuid.UUID) -> OutboxItem:
    return OutboxItem(
        tenant_id=tenant_id,
        account_id=account_id,
        user_id=uuid.uuid4(),
        status="queued",
        send_at=now_ms(),
        next_attempt_at=now_ms(),
        rfc_message_id="<x@x.example>",
        raw_sha256="0" * 64,
        size=1,
        mail_from="x@x.example",
        rcpt_tos=["y@x.example"],
    )


def _idempotency_key(tenant_id: uuid.UUID, outbox_id: uuid.UUID) -> IdempotencyKey:
    return IdempotencyKey(
        tenant_id=tenant_id,
        user_id=uuid.uuid4(),
        key=uuid.uuid4().hex,
        body_sha256="0" * 64,
        outbox_id=outbox_id,
        expires_at=now_ms(),
    )


def _change(tenant_id: uuid.UUID, account_id: uuid.UUID) -> ChangeEntry:
    return ChangeEntry(
        tenant_id=tenant_id,
        account_id=account_id,
        modseq=uuid.uuid4().int % 2**62,
        kind="message",
        change="created",
        object_id=uuid.uuid4(),
    )


def _webhook(tenant_id: uuid.UUID, **fields: Any) -> Webhook:
    return Webhook(
        tenant_id=tenant_id, url="https://hooks.example.com/x", events=["*"], secret_ciphertext="x", **fields
    )


def _cursor(tenant_id: uuid.UUID, webhook_id: uuid.UUID, account_id: uuid.UUID) -> WebhookCursor:
    return WebhookCursor(tenant_id=tenant_id, webhook_id=webhook_id, account_id=account_id, modseq=0)


def _delivery(tenant_id: uuid.UUID, webhook_id: uuid.UUID, account_id: uuid.UUID) -> WebhookDelivery:
    return WebhookDelivery(
        tenant_id=tenant_id,
        webhook_id=webhook_id,
        account_id=account_id,
        event="message",
        payload={},
        next_attempt_at=0,
    )


def _bare_account(tenant_id: uuid.UUID, **fields: Any) -> EmailAccount:
    """An account row of ``tenant_id`` with made-up server fields."""
    return EmailAccount(
        tenant_id=tenant_id,
        user_id=uuid.uuid4(),
        account_name="x",
        email_address=f"{uuid.uuid4().hex}@x.example",
        protocol="imap",
        hostname="imap.x.example",
        port=993,
        encryption="tls",
        username="x",
        **fields,
    )


def _new_row(table: str, tenant: Tenant) -> Any:
    """A valid row of ``table`` carrying ``tenant``'s id (and referencing its rows)."""
    tid, account = tenant.id, uuid.UUID(tenant.mailbox.account_id)
    rows: dict[str, Callable[[], Any]] = {
        "email_accounts": lambda: _bare_account(tid),
        "email_credentials": lambda: EmailCredential(
            tenant_id=tid, account_id=account, ciphertext="v1:x:y", key_id="x"
        ),
        "email_folders": lambda: EmailFolder(tenant_id=tid, account_id=account, name=f"F{uuid.uuid4().hex}"),
        "email_messages": lambda: EmailMessage(
            tenant_id=tid, account_id=account, folder_id=tenant.mailbox.folder_id, uid=99, uidvalidity=7
        ),
        "email_attachments": lambda: EmailAttachment(
            tenant_id=tid, account_id=account, message_id=tenant.mailbox.message_id
        ),
        "email_sync_runs": lambda: SyncRun(tenant_id=tid, account_id=account),
        "email_audit_log": lambda: AuditLog(tenant_id=tid, action="forged", resource_type="email_account"),
        "email_pending_actions": lambda: _pending_action(tid, account, seq=uuid.uuid4().int % 2**62),
        "email_changes": lambda: _change(tid, account),
        "email_webhooks": lambda: _webhook(tid),
        "email_webhook_cursors": lambda: _cursor(tid, tenant.webhook_id, tenant.spare_account_id),
        "email_webhook_deliveries": lambda: _delivery(tid, tenant.webhook_id, account),
        "email_push_leases": lambda: PushLease(
            tenant_id=tid, account_id=tenant.spare_account_id, holder="x", expires_at=1
        ),
        "email_search_docs": lambda: SearchDoc(tenant_id=tid, account_id=account, message_id=tenant.spare_message_id),
        "email_thread_containers": lambda: _container(tid, account),
        "email_outbox": lambda: _outbox_item(tid, account),
        "email_idempotency_keys": lambda: _idempotency_key(tid, tenant.outbox_id),
    }
    assert set(rows) == set(TENANT_TABLES), "every tenant table needs a row factory here"
    return rows[table]()


def test_the_app_connects_as_a_role_that_rls_applies_to(ctx: ServiceContext) -> None:
    with ctx.db.system_session() as session:
        user, superuser, bypass = session.execute(
            text("SELECT current_user, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
        ).one()
        assert (user, superuser, bypass) == (APP_ROLE, False, False)
        for table in TENANT_TABLES:
            owner = session.execute(
                text("SELECT tableowner FROM pg_tables WHERE tablename = :t"), {"t": table}
            ).scalar_one()
            assert owner != APP_ROLE, f"{table} must not be owned by the app role"


@pytest.mark.parametrize("table", TENANT_TABLES)
def test_every_tenant_table_forces_row_level_security(ctx: ServiceContext, table: str) -> None:
    with ctx.db.system_session() as session:
        enabled, forced = session.execute(
            text("SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE relname = :t AND relkind = 'r'"),
            {"t": table},
        ).one()
        policies = session.execute(
            text("SELECT count(*) FROM pg_policies WHERE tablename = :t"), {"t": table}
        ).scalar_one()
    assert (enabled, forced) == (True, True)
    assert policies >= 1


@pytest.mark.parametrize("table", TENANT_TABLES)
def test_a_tenant_transaction_sees_only_its_own_rows(
    ctx: ServiceContext, make_tenant: Callable[[], Tenant], table: str
) -> None:
    first, second = make_tenant(), make_tenant()
    for me, other in ((first, second), (second, first)):
        with ctx.db.tenant_session(me.id) as session:
            tenants = set(session.execute(text(f"SELECT DISTINCT tenant_id FROM {table}")).scalars())  # noqa: S608
            assert tenants == {me.id}, "unfiltered SELECT shows this tenant's rows only"
            hidden = session.execute(
                text(f"SELECT count(*) FROM {table} WHERE tenant_id = :o"),  # noqa: S608
                {"o": other.id},
            ).scalar_one()
            assert hidden == 0
            changed = session.execute(
                text(f"UPDATE {table} SET updated_at = 0 WHERE tenant_id = :o"),  # noqa: S608
                {"o": other.id},
            )
            assert changed.rowcount == 0  # type: ignore[attr-defined]
            removed = session.execute(text(f"DELETE FROM {table} WHERE tenant_id = :o"), {"o": other.id})  # noqa: S608
            assert removed.rowcount == 0  # type: ignore[attr-defined]
    with ctx.db.tenant_session(second.id) as session:
        stamps = (
            session.execute(
                text(f"SELECT updated_at FROM {table} WHERE tenant_id = :t"),  # noqa: S608
                {"t": second.id},
            )
            .scalars()
            .all()
        )
    assert stamps and 0 not in stamps, "the other tenant's rows are intact"


@pytest.mark.parametrize("table", TENANT_TABLES)
def test_a_tenant_transaction_cannot_write_rows_of_another_tenant(
    ctx: ServiceContext, make_tenant: Callable[[], Tenant], table: str
) -> None:
    mine, theirs = make_tenant(), make_tenant()
    with pytest.raises(DBAPIError, match="row-level security"), ctx.db.tenant_session(mine.id) as session:
        session.add(_new_row(table, theirs))
        session.flush()
    with pytest.raises(DBAPIError, match="row-level security"), ctx.db.tenant_session(mine.id) as session:
        session.execute(
            text(f"UPDATE {table} SET tenant_id = :o WHERE tenant_id = :me"),  # noqa: S608
            {"o": theirs.id, "me": mine.id},
        )
    with ctx.db.tenant_session(mine.id) as session:
        session.add(_new_row(table, mine))  # the same row for its own tenant is fine
        session.flush()
        assert session.execute(text(f"SELECT count(*) FROM {table}")).scalar_one() >= 2  # noqa: S608


@pytest.mark.parametrize("table", TENANT_TABLES)
def test_a_transaction_without_a_tenant_sees_and_writes_nothing(
    ctx: ServiceContext, make_tenant: Callable[[], Tenant], table: str
) -> None:
    tenant = make_tenant()
    with ctx.db.system_session() as session:
        assert session.execute(text(f"SELECT count(*) FROM {table}")).scalar_one() == 0  # noqa: S608
    with ctx.db.system_session() as session:
        session.execute(text("SELECT set_config('app.current_tenant_id', '', true)"))
        assert session.execute(text(f"SELECT count(*) FROM {table}")).scalar_one() == 0  # noqa: S608
    with pytest.raises(DBAPIError, match="row-level security"), ctx.db.system_session() as session:
        session.add(_new_row(table, tenant))
        session.flush()
