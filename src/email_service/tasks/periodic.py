"""Periodic work, declared once (issue 7): what the scheduler does every so often, and the scheduler itself.

:data:`PERIODIC` lists each periodic task with its interval and its function: due syncs, write-backs of changes
still pending past their time (issue 8) and recovery of lost sync runs; later issues add theirs here (due outbox
items, webhook retries, change-log pruning, blob garbage collection).  The same :class:`Scheduler` runs them in
the embedded default (a thread of the ``serve`` process, :meth:`InProcessJobRunner.start_scheduler`) and in
production (``email-service beat``, with a leader lease so that of several beat processes one ticks at a time).

Every periodic task must be idempotent: two schedulers running it at once (a lease lost mid-tick) do no harm.
Queueing due syncs is: the partial unique index on active sync runs admits one queued/running run per account,
and :func:`email_service.services.sync_runs.enqueue_sync` returns the existing run instead of queueing another.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from email_service.config import Settings
from email_service.models import now_ms
from email_service.services import outbox, sync_runs
from email_service.services.changes import prune_change_log
from email_service.services.context import ServiceContext
from email_service.services.webhooks import queue_deliveries
from email_service.sync.drafts import republish_changed_drafts
from email_service.sync.recovery import requeue_stalled_runs, requeue_writebacks
from email_service.tasks.registry import SEND_TIME_LIMIT

log = logging.getLogger("email_service.scheduler")


def queue_due_syncs(ctx: ServiceContext, tenant_ids: Iterable[uuid.UUID] | None = None) -> int:
    """Queue a sync for every due account (of ``tenant_ids`` only, when given).  Returns how many runs were newly
    queued: an account with a queued or running run is not queued again."""
    queued = 0
    for tenant_id, account_id in sync_runs.due_accounts(ctx, tenant_ids=tenant_ids):
        _run, created = sync_runs.enqueue_sync(
            ctx, tenant_id=tenant_id, account_id=account_id, trigger="scheduler", principal=None
        )
        queued += int(created)
    return queued


def recover_stalled_syncs(ctx: ServiceContext) -> int:
    """Queue again the sync runs whose job was lost (:mod:`email_service.sync.recovery`).  Returns how many."""
    return requeue_stalled_runs(
        ctx,
        queued_after_seconds=ctx.settings.sync_requeue_after_seconds,
        running_after_seconds=ctx.settings.sync_stalled_after_seconds,
    )


def queue_overdue_writebacks(ctx: ServiceContext) -> int:
    """Queue the write-back of every account with a pending action past its ``next_attempt_at``
    (:func:`email_service.sync.recovery.requeue_writebacks`).  Returns how many accounts."""
    return requeue_writebacks(ctx, due_before=now_ms())


def work_outbox(ctx: ServiceContext, *, now: int | None = None, tenant_ids: Iterable[uuid.UUID] | None = None) -> int:
    """Queue the outbox items that are due (scheduled sends, retries whose job was lost) and end as
    ``failed``/``OutcomeUnknown`` the items ``sending`` for longer than the send job's hard time limit (issue 9,
    at most once).  ``now`` (epoch ms) and ``tenant_ids`` (default: every tenant) for tests.  Returns how many items
    were queued or ended."""
    moment = now_ms() if now is None else now
    tenants = list(tenant_ids) if tenant_ids is not None else None
    ended = outbox.fail_stuck(ctx, now=moment, older_than_ms=SEND_TIME_LIMIT * 1000, tenant_ids=tenants)
    return ended + outbox.queue_due(ctx, now=moment, tenant_ids=tenants)


@dataclass(frozen=True)
class PeriodicTask:
    """One kind of periodic work.

    Attributes:
        name: shown in logs.
        interval: seconds between two runs, from the settings.
        run: ``run(ctx) -> count`` of things it did (queued, recovered ...).
    """

    name: str
    interval: Callable[[Settings], float]
    run: Callable[[ServiceContext], int]


PERIODIC: tuple[PeriodicTask, ...] = (
    PeriodicTask("queue_due_syncs", lambda settings: settings.scheduler_tick_seconds, queue_due_syncs),
    # A pending action is overdue a minute after it was accepted: every tick finds lost write-backs soon enough.
    PeriodicTask(
        "queue_overdue_writebacks", lambda settings: settings.scheduler_tick_seconds, queue_overdue_writebacks
    ),
    PeriodicTask("work_outbox", lambda settings: settings.scheduler_tick_seconds, work_outbox),
    # Drafts whose attachments changed through the attachment endpoints get their server copy replaced.
    PeriodicTask(
        "republish_changed_drafts", lambda settings: settings.scheduler_tick_seconds, republish_changed_drafts
    ),
    # Recovery only acts on runs minutes old: once a minute is often enough, and cheap.
    PeriodicTask(
        "recover_stalled_syncs", lambda settings: max(60, settings.scheduler_tick_seconds), recover_stalled_syncs
    ),
    # The change log (issue 12): entries past CHANGE_LOG_MAX_AGE_SECONDS or CHANGE_LOG_MAX_ENTRIES go.
    PeriodicTask("prune_change_log", lambda settings: settings.change_log_prune_seconds, prune_change_log),
    # Webhooks: the fan-out thread (tasks/fanout.py) makes deliveries on wake-ups; this safety net catches up what a
    # lost wake-up left and queues delivery jobs lost for a minute: once a minute is soon enough, and cheap.
    PeriodicTask(
        "queue_webhook_deliveries", lambda settings: max(60, settings.scheduler_tick_seconds), queue_deliveries
    ),
)


class Lease(Protocol):
    """Leadership among several schedulers (:class:`email_service.tasks.lease.RedisLease`)."""

    def hold(self) -> bool:
        """Take or renew the lease; True while this scheduler is the leader."""
        ...

    def release(self) -> None:
        """Give the lease up (at a clean stop), so that another scheduler takes over at once."""
        ...


class Scheduler:
    """Runs :data:`PERIODIC` tasks when due; with a ``lease``, only while it holds the lease."""

    def __init__(
        self,
        ctx: ServiceContext,
        *,
        tasks: tuple[PeriodicTask, ...] = PERIODIC,
        lease: Lease | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ctx = ctx
        self.tasks = tasks
        self.lease = lease
        self._clock = clock
        self._next_run: dict[str, float] = {}

    def tick(self) -> dict[str, int]:
        """Run every task that is due; returns ``{task name: count}`` of those that ran (empty when not leader).

        A task that raises is logged and tried again at its next interval; it never stops the others.
        """
        if self.lease is not None and not self.lease.hold():
            self._next_run.clear()  # when this scheduler becomes leader, it runs everything at once
            return {}
        ran: dict[str, int] = {}
        for task in self.tasks:
            now = self._clock()
            if now < self._next_run.get(task.name, 0.0):
                continue
            self._next_run[task.name] = now + task.interval(self.ctx.settings)
            try:
                ran[task.name] = task.run(self.ctx)
            except Exception:
                log.exception("periodic task failed", extra={"task": task.name})
        if any(ran.values()):
            log.info("scheduler tick", extra={"done": ran})
        return ran

    def run_forever(self, stop: threading.Event, *, first_tick_now: bool = True) -> None:
        """Tick every ``SCHEDULER_TICK_SECONDS`` until ``stop`` is set; then release the lease."""
        try:
            if first_tick_now:
                self.tick()
            while not stop.wait(self.ctx.settings.scheduler_tick_seconds):
                self.tick()
        finally:
            if self.lease is not None:
                self.lease.release()
