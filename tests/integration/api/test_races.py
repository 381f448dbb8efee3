"""Races of a tenant's first requests and of concurrent sync triggers (issue 6 items 4 and 5), through HTTP
against the real app, database (SQLite and PostgreSQL) and Dovecot, with real threads."""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from apiflask import APIFlask
from sqlalchemy import func, select

from email_service.app import create_app
from email_service.models import SyncRun, Tenant
from email_service.services.context import ServiceContext
from email_service.services.jobs import RecordingJobQueue
from tests.conftest import Caller, account_body, create_imap_account, wait_for_sync
from tests.support.dovecot import Dovecot

pytestmark = pytest.mark.integration
PARALLEL = 20


def _in_parallel(count: int, request: Callable[[], Any]) -> list[Any]:
    """Run ``request`` on ``count`` threads released together; return their results in thread order."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def work(index: int) -> None:
        barrier.wait()
        results[index] = request()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_a_new_tenants_parallel_first_creates_give_one_201_and_409s(
    app: APIFlask, ctx: ServiceContext, make_caller: Callable[..., Caller]
) -> None:
    newcomer = make_caller()  # a tenant the registry has never seen
    body = account_body()

    def create() -> int:
        return int(app.test_client().post("/api/v1/accounts", headers=newcomer.headers, json=body).status_code)

    statuses = Counter(_in_parallel(PARALLEL, create))
    assert statuses == Counter({201: 1, 409: PARALLEL - 1})
    with ctx.db.system_session() as session:
        assert (
            session.execute(
                select(func.count()).select_from(Tenant).where(Tenant.tenant_id == newcomer.tenant_id)
            ).scalar_one()
            == 1
        )


def test_parallel_sync_triggers_share_one_run_that_succeeds(
    ctx: ServiceContext, caller: Caller, dovecot: Dovecot, mail_user: tuple[str, str]
) -> None:
    user, password = mail_user
    dovecot.write_maildir(user, "INBOX", (f"Subject: m{i}\n\nbody {i}\n".encode() for i in range(50)))
    # The triggers go to an app whose queue only records, so that no run can finish while they race; the
    # recorded jobs are then worked by the real in-process runner.
    recorder = RecordingJobQueue()
    app = create_app(context=dataclasses.replace(ctx, jobs=recorder))
    account_id = create_imap_account(app.test_client(), caller, dovecot.host, dovecot.imap_port, user, password)

    def trigger() -> tuple[int, dict[str, Any]]:
        response = app.test_client().post(f"/api/v1/accounts/{account_id}/sync", headers=caller.headers)
        return response.status_code, response.get_json()

    answers = _in_parallel(PARALLEL, trigger)
    assert {status for status, _ in answers} == {202}
    assert sum(body["created"] for _, body in answers) == 1
    assert len({body["syncId"] for _, body in answers}) == 1
    assert len(recorder.queued) == 1

    for job in recorder.queued:
        ctx.jobs.enqueue("sync_account", job.payload)
    status = wait_for_sync(app.test_client(), account_id, caller.headers)
    assert status["state"] == "succeeded" and status["lastError"] is None
    assert status["syncId"] == answers[0][1]["syncId"] and status["counts"]["messagesAdded"] == 50
    with ctx.db.tenant_session(caller.tenant_id) as session:
        states = Counter(
            session.execute(select(SyncRun.state).where(SyncRun.account_id == uuid.UUID(account_id))).scalars()
        )
    assert states == Counter({"succeeded": 1})
