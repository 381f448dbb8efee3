"""In-process job runner and periodic sync scheduler of the embedded default (DESIGN.md section 4).

A small thread pool runs sync jobs; a scheduler thread wakes every ``SCHEDULER_TICK_SECONDS`` and queues a sync
for each account whose ``syncInterval`` has elapsed.  Production runs the same jobs on Celery workers instead.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor

from email_service.services import sync_runs
from email_service.services.context import ServiceContext
from email_service.sync.imap import sync_account

log = logging.getLogger("email_service.jobs")


class InProcessJobRunner:
    """:class:`~email_service.services.context.JobQueue` backed by threads of this process."""

    def __init__(self, workers: int = 2) -> None:
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="email-sync")
        self._ctx: ServiceContext | None = None
        self._stop = threading.Event()
        self._scheduler: threading.Thread | None = None
        self.futures: list[Future[str]] = []

    def bind(self, ctx: ServiceContext) -> None:
        """Give the runner the context its jobs run with (the context holds the runner as its queue)."""
        self._ctx = ctx

    def enqueue_sync(self, *, tenant_id: uuid.UUID, account_id: uuid.UUID, run_id: uuid.UUID) -> None:
        """Run :func:`sync_account` on a worker thread."""
        if self._ctx is None:
            raise RuntimeError("InProcessJobRunner.bind() was not called")
        future = self._executor.submit(
            sync_account, self._ctx, tenant_id=tenant_id, account_id=account_id, run_id=run_id
        )
        self.futures = [f for f in self.futures if not f.done()] + [future]

    def schedule_due(self, tenant_ids: Iterable[uuid.UUID] | None = None) -> int:
        """Queue a sync for every due account now (of ``tenant_ids`` only, when given).

        Returns how many runs were newly queued (an account with a queued or running sync is not queued again).
        """
        if self._ctx is None:
            return 0
        queued = 0
        for tenant_id, account_id in sync_runs.due_accounts(self._ctx, tenant_ids=tenant_ids):
            _run, created = sync_runs.enqueue_sync(
                self._ctx, tenant_id=tenant_id, account_id=account_id, trigger="scheduler", principal=None
            )
            queued += int(created)
        return queued

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
        """Stop the scheduler and the workers (``wait`` for running jobs)."""
        self._stop.set()
        self._executor.shutdown(wait=wait, cancel_futures=not wait)
