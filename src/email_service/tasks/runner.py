"""In-process job runner and periodic scheduler of the embedded default (DESIGN.md section 4).

Jobs declared in :mod:`email_service.tasks.registry` run on a small thread pool; delayed jobs and retries wait in
a timer heap; a scheduler thread wakes every ``SCHEDULER_TICK_SECONDS`` and queues a sync for each account whose
``syncInterval`` has elapsed, and the write-back of each account with a pending action past its ``next_attempt_at``.
Production runs the same jobs on Celery workers instead.  Jobs queued here live in memory: a job lost to a stop is
recovered at the next start (interrupted sync runs are closed and syncs are scheduled again; the write-back of
every account with pending actions is queued, :meth:`InProcessJobRunner.resume_writebacks`).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor

from email_service.models import now_ms
from email_service.services import actions, sync_runs
from email_service.services.context import ServiceContext
from email_service.services.jobs import JobName, JsonScalar
from email_service.tasks.registry import job_spec

log = logging.getLogger("email_service.jobs")


class InProcessJobRunner:
    """:class:`~email_service.services.jobs.JobQueue` backed by threads of this process."""

    def __init__(self, workers: int = 2) -> None:
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="email-job")
        self._ctx: ServiceContext | None = None
        self._stop = threading.Event()
        self._scheduler: threading.Thread | None = None
        self._delayed: list[tuple[float, int, str, dict[str, JsonScalar], int]] = []
        self._delayed_changed = threading.Condition()
        self._sequence = itertools.count()
        self._timer = threading.Thread(target=self._release_delayed, name="email-job-timer", daemon=True)
        self._timer.start()

    def bind(self, ctx: ServiceContext) -> None:
        """Give the runner the context its jobs run with (the context holds the runner as its queue)."""
        self._ctx = ctx

    def enqueue(self, name: JobName, payload: Mapping[str, JsonScalar], *, delay_seconds: float = 0.0) -> None:
        """Run job ``name`` on a worker thread, after ``delay_seconds``.  Raises ``KeyError`` for an unknown kind."""
        job_spec(name)
        self._submit(name, dict(payload), attempt=0, delay_seconds=delay_seconds)

    def _submit(self, name: str, payload: dict[str, JsonScalar], *, attempt: int, delay_seconds: float) -> None:
        if self._stop.is_set():
            return
        if delay_seconds > 0:
            with self._delayed_changed:
                due = time.monotonic() + delay_seconds
                heapq.heappush(self._delayed, (due, next(self._sequence), name, payload, attempt))
                self._delayed_changed.notify()
            return
        self._executor.submit(self._run, name, payload, attempt)

    def _release_delayed(self) -> None:
        while not self._stop.is_set():
            with self._delayed_changed:
                wait = self._delayed[0][0] - time.monotonic() if self._delayed else None
                if wait is None or wait > 0:
                    self._delayed_changed.wait(timeout=wait)
                    continue
                _due, _seq, name, payload, attempt = heapq.heappop(self._delayed)
            self._submit(name, payload, attempt=attempt, delay_seconds=0)

    def _run(self, name: str, payload: dict[str, JsonScalar], attempt: int) -> None:
        if self._ctx is None:
            raise RuntimeError("InProcessJobRunner.bind() was not called")
        spec = job_spec(name)
        try:
            spec.handler(self._ctx, payload)
        except spec.transient as exc:
            if attempt >= spec.max_retries:
                log.error("job %s gave up after %d attempts: %s", name, attempt + 1, type(exc).__name__)
                return
            delay = spec.retry_delay(attempt + 1, exc)
            log.warning("job %s failed (%s); retry %d in %.1f s", name, type(exc).__name__, attempt + 1, delay)
            self._submit(name, payload, attempt=attempt + 1, delay_seconds=delay)
        except Exception:
            log.exception("job %s failed", name)

    def schedule_due(self, tenant_ids: Iterable[uuid.UUID] | None = None) -> int:
        """Queue a sync for every due account now (of ``tenant_ids`` only, when given), and the write-back of every
        account with a pending action past its ``next_attempt_at`` (lost with a process, or backing off).

        Returns how many sync runs were newly queued (an account with a queued or running sync is not queued again).
        """
        if self._ctx is None:
            return 0
        queued = 0
        for tenant_id, account_id in sync_runs.due_accounts(self._ctx, tenant_ids=tenant_ids):
            _run, created = sync_runs.enqueue_sync(
                self._ctx, tenant_id=tenant_id, account_id=account_id, trigger="scheduler", principal=None
            )
            queued += int(created)
        overdue = actions.accounts_with_pending(self._ctx, due_before=now_ms(), tenant_ids=tenant_ids)
        for tenant_id, account_id in overdue:
            actions.request_syncback(self._ctx, tenant_id, account_id)
        return queued

    def resume_writebacks(self) -> int:
        """At start-up: queue the write-back of every account with pending actions (the process that accepted
        them may have stopped before applying them).  Returns how many accounts were queued."""
        if self._ctx is None:
            return 0
        pending = actions.accounts_with_pending(self._ctx)
        for tenant_id, account_id in pending:
            actions.request_syncback(self._ctx, tenant_id, account_id)
        return len(pending)

    def start_scheduler(self, tick_seconds: float) -> None:
        """Start the periodic scheduler thread (daemon)."""

        def loop() -> None:
            while not self._stop.wait(tick_seconds):
                try:
                    self.schedule_due()
                except Exception:
                    log.exception("scheduler tick failed")

        self._scheduler = threading.Thread(target=loop, name="email-sync-scheduler", daemon=True)
        self._scheduler.start()

    def shutdown(self, wait: bool = True) -> None:
        """Stop the scheduler, drop delayed jobs, and stop the workers (``wait`` for running jobs)."""
        self._stop.set()
        with self._delayed_changed:
            self._delayed.clear()
            self._delayed_changed.notify()
        self._executor.shutdown(wait=wait, cancel_futures=not wait)
