"""``Database.tenant_session`` on PostgreSQL (DESIGN.md section 6): the tenant bound for the transaction only, and
the isolation a ``read_only`` use case relies on (one snapshot, no writes), whatever way the opening statements
reach the server (issue 11: they go in one round trip).  PostgreSQL only (``POSTGRESQL_ONLY`` in tests/conftest.py);
the snapshot a read-only use case sees is tested on both databases in ``test_tenant_session.py``."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from email_service.services.context import ServiceContext

pytestmark = pytest.mark.integration

SETTINGS = text(
    "SELECT current_setting('app.current_tenant_id', true), current_setting('transaction_isolation'), "
    "current_setting('transaction_read_only')"
)


def test_the_tenant_and_the_isolation_hold_for_the_transaction_only(ctx: ServiceContext) -> None:
    tenant = uuid.uuid4()
    for _ in range(3):  # pooled connections come back: nothing carries over from the transaction before
        with ctx.db.tenant_session(tenant, read_only=True) as session:
            assert tuple(session.execute(SETTINGS).one()) == (str(tenant), "repeatable read", "on")
        with ctx.db.tenant_session(tenant) as session:
            assert tuple(session.execute(SETTINGS).one()) == (str(tenant), "read committed", "off")
        with ctx.db.system_session() as session:
            assert session.execute(SETTINGS).one()[0] in (None, "")


def test_a_read_only_transaction_refuses_writes(ctx: ServiceContext) -> None:
    with (
        pytest.raises(DBAPIError, match="read-only transaction"),
        ctx.db.tenant_session(uuid.uuid4(), read_only=True) as session,
    ):
        session.execute(text("CREATE TEMPORARY TABLE hl_never (x int)"))
