"""Recovery of work whose job was lost (issues 7 and 8): a sync run is never left active for ever, and a change
accepted through the API is never left unwritten.

One active run per account is enforced by the database (migration 0002), so a run stuck ``queued`` (its message
was lost: a broker flushed, an in-process queue stopped) or ``running`` (its worker died and the broker has not
redelivered yet) would block every later sync of that account.  The scheduler calls :func:`requeue_stalled_runs`
periodically; it hands such runs to the job queue again, which is safe because :func:`sync_account` is idempotent
(a run that has ended meanwhile is skipped; a run another worker is working is left to it).

Bounds (settings, seconds):

* ``SYNC_REQUEUE_AFTER_SECONDS`` (900): a run ``queued`` that long is queued again.  Long enough that a backlog
  of due accounts waiting for a free worker is not queued twice every tick (1,000 accounts at the measured
  rate of ``bench/scale_accounts.py`` drain in a few minutes); short enough that a lost message costs one
  missed interval at the default ``syncInterval`` of 300 s, not hours.
* ``SYNC_STALLED_AFTER_SECONDS`` (120): a run ``running`` whose account lock is free and whose row has not
  changed for that long is queued again.  The lock is the real evidence (a live worker holds it for the whole
  run, and it is released by the operating system when the worker dies); the bound only keeps the probe off
  runs that are just starting or just finishing, and away from clock skew between hosts.

Every run queued again has its ``updated_at`` moved to now, so it waits a full bound before the next attempt.

A run queued while the account's lock was held (by a sync just ending, or by the account's write-back) first waits
in short retries of its job (:class:`~email_service.services.jobs.RetryJob`); a hold longer than the job's retry
budget would strand it until the bound above, so whoever releases the lock sends that run's job again
(:func:`resend_waiting_run`, called by the sync and the write-back after they let go of the lock).

Write-backs (:func:`requeue_writebacks`): an account's pending actions carry ``next_attempt_at`` (one minute after
they were accepted, later after transient failures, :mod:`email_service.sync.syncback`); an account with a pending
action past it gets its ``syncback_account`` job again (the job lost with a process, or given up by the runner
while the account's lock was busy), and those actions' ``next_attempt_at`` moves a minute on, so a write-back that
is simply slow is not queued again every tick.  At the start of an in-process runtime every account with pending
actions is queued at once (its jobs lived in the memory of the stopped process).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable

from sqlalchemy import select, update

from email_service.models import PendingAction, SyncRun, Tenant, now_ms
from email_service.services import actions
from email_service.services.context import ServiceContext
from email_service.services.sync_runs import sync_job_payload, waiting_run
from email_service.sync.locks import account_lock_is_free

log = logging.getLogger("email_service.sync")


def requeue_stalled_runs(
    ctx: ServiceContext,
    *,
    queued_after_seconds: float,
    running_after_seconds: float,
    now: int | None = None,
    tenant_ids: Iterable[uuid.UUID] | None = None,
) -> int:
    """Queue again every run stuck ``queued`` or ``running`` (see the module docstring).  Returns how many.

    Args:
        queued_after_seconds / running_after_seconds: the bounds on the run's ``updated_at`` age.
        now: epoch ms (default: the clock).
        tenant_ids: only these tenants (default: every tenant of the registry).
    """
    current = now if now is not None else now_ms()
    if tenant_ids is None:
        with ctx.db.system_session() as session:
            tenant_ids = list(session.execute(select(Tenant.tenant_id)).scalars())
    requeued = 0
    for tenant_id in tenant_ids:
        for run_id, account_id in _stalled(ctx, tenant_id, current, queued_after_seconds, running_after_seconds):
            _requeue(ctx, tenant_id, account_id, run_id)
            log.warning("sync run queued again", extra={"run_id": str(run_id), "account_id": str(account_id)})
            requeued += 1
    return requeued


def resend_waiting_run(ctx: ServiceContext, tenant_id: uuid.UUID, account_id: uuid.UUID) -> uuid.UUID | None:
    """Send the job of the account's ``queued`` run again, if it has one; call after releasing the account's lock.
    Returns that run's id, or ``None``.  A second job for a run that is being worked is harmless: it finds the run
    running under the lock, or ended, and steps aside."""
    run = waiting_run(ctx, tenant_id, account_id)
    if run is None:
        return None
    _requeue(ctx, tenant_id, account_id, run.id)
    return run.id


def _requeue(ctx: ServiceContext, tenant_id: uuid.UUID, account_id: uuid.UUID, run_id: uuid.UUID) -> None:
    """Move the run's ``updated_at`` to now (it waits a full bound before recovery looks at it again) and queue its
    job."""
    with ctx.db.tenant_session(tenant_id) as session:
        session.execute(update(SyncRun).where(SyncRun.id == run_id).values(updated_at=now_ms()))
    ctx.jobs.enqueue("sync_account", sync_job_payload(tenant_id, account_id, run_id))


def _stalled(
    ctx: ServiceContext, tenant_id: uuid.UUID, now: int, queued_after: float, running_after: float
) -> list[tuple[uuid.UUID, uuid.UUID]]:
    queued_before, running_before = now - int(queued_after * 1000), now - int(running_after * 1000)
    with ctx.db.tenant_session(tenant_id) as session:
        rows = session.execute(
            select(SyncRun.id, SyncRun.account_id, SyncRun.state, SyncRun.updated_at).where(
                SyncRun.tenant_id == tenant_id,
                SyncRun.state.in_(("queued", "running")),
                SyncRun.updated_at < max(queued_before, running_before),
            )
        ).all()
    stalled = []
    for run_id, account_id, state, updated_at in rows:
        stuck_queued = state == "queued" and updated_at < queued_before
        dead_running = state == "running" and updated_at < running_before
        if stuck_queued or (dead_running and account_lock_is_free(ctx.db, account_id)):
            stalled.append((run_id, account_id))
    return stalled


def requeue_writebacks(
    ctx: ServiceContext, *, due_before: int | None, tenant_ids: Iterable[uuid.UUID] | None = None
) -> int:
    """Queue the write-back of every live account with pending actions whose ``next_attempt_at`` is at or before
    ``due_before`` (epoch ms; ``None``: every pending action, for a start-up).  Returns how many accounts.

    The actions found overdue get ``next_attempt_at`` one :data:`~email_service.services.actions.OVERDUE_AFTER_MS`
    from now, so the next check does not queue them again while this job works them.
    """
    queued = actions.accounts_with_pending(ctx, due_before=due_before, tenant_ids=tenant_ids)
    for tenant_id, account_id in queued:
        if due_before is not None:
            with ctx.db.tenant_session(tenant_id) as session:
                session.execute(
                    update(PendingAction)
                    .where(
                        PendingAction.account_id == account_id,
                        PendingAction.state == "pending",
                        PendingAction.next_attempt_at <= due_before,
                    )
                    .values(next_attempt_at=now_ms() + actions.OVERDUE_AFTER_MS)
                )
        actions.request_syncback(ctx, tenant_id, account_id)
        log.info("write-back queued again", extra={"account_id": str(account_id)})
    return len(queued)
