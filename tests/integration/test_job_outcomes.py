"""How a sync job ends whatever happened to its account or its message (issue 7), on the one code path both runners
use (:func:`email_service.tasks.execution.attempt_job`): a deleted account or a destroyed credential ends the job
with a clear outcome on the run and no retry; a run whose job was lost (stuck ``queued``, or ``running`` with its
worker dead) is queued again by the scheduler's recovery and completes; a run another sync holds is left alone."""

from __future__ import annotations

import dataclasses
import uuid

import pytest
from flask.testing import FlaskClient
from sqlalchemy import delete, update

from email_service.models import EmailAccount, EmailCredential, SyncRun, now_ms
from email_service.services import sync_runs
from email_service.services.context import ServiceContext
from email_service.services.jobs import RecordingJobQueue
from email_service.sync.locks import account_sync_lock
from email_service.sync.recovery import requeue_stalled_runs
from email_service.tasks.execution import Attempt, attempt_job
from tests.conftest import Caller, create_imap_account, wait_for_sync
from tests.support.dovecot import Dovecot

pytestmark = pytest.mark.integration


def _queued_run(ctx: ServiceContext, caller: Caller, account_id: str) -> tuple[ServiceContext, SyncRun]:
    """A context whose queue only records, and a run queued through it (its job is in ``recorded.jobs.queued``)."""
    recorded = dataclasses.replace(ctx, jobs=RecordingJobQueue())
    run, created = sync_runs.enqueue_sync(
        recorded, tenant_id=caller.tenant_id, account_id=uuid.UUID(account_id), trigger="scheduler", principal=None
    )
    assert created
    return recorded, run


def _run_row(ctx: ServiceContext, caller: Caller, run_id: uuid.UUID) -> SyncRun:
    with ctx.db.tenant_session(caller.tenant_id) as session:
        run = session.get(SyncRun, run_id)
        assert run is not None
        return run


def test_a_job_for_a_deleted_account_ends_cleanly_with_the_reason_on_the_run(
    client: FlaskClient, caller: Caller, ctx: ServiceContext, dovecot: Dovecot, mail_user: tuple[str, str]
) -> None:
    account_id = create_imap_account(client, caller, dovecot.host, dovecot.imap_port, *mail_user)
    recorded, run = _queued_run(ctx, caller, account_id)
    assert client.delete(f"/api/v1/accounts/{account_id}", headers=caller.headers).status_code in (200, 204)
    [job] = recorded.jobs.queued  # type: ignore[attr-defined]
    assert attempt_job(recorded, job.name, job.payload, attempt=0) == Attempt("succeeded")  # no retry
    done = _run_row(ctx, caller, run.id)
    assert (done.state, done.error_kind, done.error) == ("failed", "AccountDeleted", "The account was deleted")
    assert recorded.jobs.queued == [job]  # nothing queued again


def test_a_job_whose_credential_was_destroyed_ends_cleanly(
    client: FlaskClient, caller: Caller, ctx: ServiceContext, dovecot: Dovecot, mail_user: tuple[str, str]
) -> None:
    account_id = create_imap_account(client, caller, dovecot.host, dovecot.imap_port, *mail_user)
    recorded, run = _queued_run(ctx, caller, account_id)
    with ctx.db.tenant_session(caller.tenant_id) as session:
        session.execute(delete(EmailCredential).where(EmailCredential.account_id == uuid.UUID(account_id)))
        session.execute(update(EmailAccount).where(EmailAccount.id == uuid.UUID(account_id)).values(credential_id=None))
    [job] = recorded.jobs.queued  # type: ignore[attr-defined]
    assert attempt_job(recorded, job.name, job.payload, attempt=0) == Attempt("succeeded")
    done = _run_row(ctx, caller, run.id)
    assert (done.state, done.error_kind) == ("failed", "CredentialMissing")
    status = client.get(f"/api/v1/accounts/{account_id}/sync", headers=caller.headers).get_json()
    assert status["lastError"] == {"kind": "CredentialMissing", "message": "The account has no stored password"}
    assert status["isSyncing"] is False


def _age_run(ctx: ServiceContext, caller: Caller, run_id: uuid.UUID, *, state: str, seconds: int) -> None:
    with ctx.db.tenant_session(caller.tenant_id) as session:
        session.execute(
            update(SyncRun).where(SyncRun.id == run_id).values(state=state, updated_at=now_ms() - seconds * 1000)
        )


def test_lost_jobs_are_queued_again_and_complete(
    client: FlaskClient, caller: Caller, ctx: ServiceContext, dovecot: Dovecot
) -> None:
    """A run stuck ``queued`` past its bound (its message was lost) and one left ``running`` by a dead worker (its
    lock free) are queued again and succeed; younger ones, and one whose lock a live sync holds, are left alone."""
    ids = []
    for _ in range(2):
        user, password = dovecot.new_user()
        dovecot.append(user, "INBOX", b"Subject: lost\r\n\r\nbody\r\n")
        ids.append(create_imap_account(client, caller, dovecot.host, dovecot.imap_port, user, password))
    (_r1, lost), (_r2, dead) = (_queued_run(ctx, caller, account_id) for account_id in ids)
    bounds = {"queued_after_seconds": 900, "running_after_seconds": 120, "tenant_ids": [caller.tenant_id]}
    _age_run(ctx, caller, lost.id, state="queued", seconds=800)
    _age_run(ctx, caller, dead.id, state="running", seconds=100)
    assert requeue_stalled_runs(ctx, **bounds) == 0  # within their bounds

    _age_run(ctx, caller, dead.id, state="running", seconds=200)
    with account_sync_lock(ctx.db, dead.account_id) as taken:  # a live sync holds the account
        assert taken
        assert requeue_stalled_runs(ctx, **bounds) == 0
    _age_run(ctx, caller, lost.id, state="queued", seconds=1000)
    assert requeue_stalled_runs(ctx, **bounds) == 2  # ctx.jobs is the in-process runner: they run now
    for account_id, run in zip(ids, (lost, dead), strict=True):
        status = wait_for_sync(client, account_id, caller.headers)
        assert (status["syncId"], status["state"]) == (str(run.id), "succeeded")
        assert status["counts"]["messagesAdded"] == 1
    assert requeue_stalled_runs(ctx, **bounds) == 0  # ended runs are never touched


def test_a_queued_run_waits_for_the_lock_of_an_earlier_sync_of_the_account(
    client: FlaskClient, caller: Caller, ctx: ServiceContext, dovecot: Dovecot, mail_user: tuple[str, str]
) -> None:
    account_id = create_imap_account(client, caller, dovecot.host, dovecot.imap_port, *mail_user)
    recorded, run = _queued_run(ctx, caller, account_id)
    [job] = recorded.jobs.queued  # type: ignore[attr-defined]
    with account_sync_lock(ctx.db, run.account_id):  # an earlier run is finishing
        assert attempt_job(recorded, job.name, job.payload, attempt=0) == Attempt("retry", 5.0)
    assert _run_row(ctx, caller, run.id).state == "queued"
    _age_run(ctx, caller, run.id, state="running", seconds=0)
    with account_sync_lock(ctx.db, run.account_id):  # another worker is working this very run: leave it
        assert attempt_job(recorded, job.name, job.payload, attempt=0) == Attempt("succeeded")
    assert _run_row(ctx, caller, run.id).state == "running"
    assert attempt_job(recorded, job.name, job.payload, attempt=0) == Attempt("succeeded")
    assert _run_row(ctx, caller, run.id).state == "succeeded"
