"""``Database.tenant_session(read_only=True)`` sees one snapshot for all its statements (a page and its counts
agree), on SQLite and PostgreSQL alike: a row committed by another transaction meanwhile is seen only by the next
transaction."""

from __future__ import annotations

import uuid

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from email_service.models import EmailFolder
from email_service.services.context import ServiceContext
from tests.conftest import Caller
from tests.integration.api.conftest import create_account

pytestmark = pytest.mark.integration


def _folder(caller: Caller, account_id: uuid.UUID) -> EmailFolder:
    return EmailFolder(tenant_id=caller.tenant_id, account_id=account_id, name=f"F{uuid.uuid4().hex[:8]}",
                       type="custom", attributes=[])  # fmt: skip


def test_a_read_only_transaction_sees_one_snapshot(ctx: ServiceContext, client: FlaskClient, caller: Caller) -> None:
    account_id = uuid.UUID(create_account(client, caller)["id"])
    count = select(func.count()).select_from(EmailFolder).where(EmailFolder.account_id == account_id)
    with ctx.db.tenant_session(caller.tenant_id, read_only=True) as reader:
        before = reader.execute(count).scalar_one()
        with ctx.db.tenant_session(caller.tenant_id) as writer:
            writer.add(_folder(caller, account_id))
        assert reader.execute(count).scalar_one() == before, "the read-only transaction saw a later commit"
    with ctx.db.tenant_session(caller.tenant_id, read_only=True) as reader:
        assert reader.execute(count).scalar_one() == before + 1
