"""In-process job runner and periodic scheduler of the embedded default (DESIGN.md section 4).

Jobs declared in :mod:`email_service.tasks.registry` run on a small thread pool, one attempt at a time through
:func:`email_service.tasks.execution.attempt_job` (as on Celery); delayed jobs and retries wait in a timer heap; a
scheduler thread runs the periodic work of :mod:`email_service.tasks.periodic` every ``SCHEDULER_TICK_SECONDS``.
Production runs the same jobs on Celery workers instead.  Jobs queued here live in memory: a job lost to a stop is
recovered at the next start (interrupted sync runs are closed and syncs are scheduled again; the write-back of
every account with pending actions is queued, :func:`email_service.tasks.runtime.start_job_runtime`).
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor

from email_service.observability import metrics
from email_service.services.context import ServiceContext
from email_service.services.jobs import JobName, JsonScalar
from email_service.tasks.execution import attempt_job
from email_service.tasks.fanout import WebhookFanout
from email_service.tasks.periodic import Scheduler, queue_due_syncs
from email_service.tasks.registry import job_spec


class InProcessJobRunner:
    """:class:`~email_service.services.jobs.JobQueue` backed by threads of this process."""

    def __init__(self, workers: int = 2) -> None:
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="email-job")
        self._ctx: ServiceContext | None = None
        self._stop = threading.Event()
        self._scheduler: threading.Thread | None = None
        self._fanout: WebhookFanout | None = None
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
        metrics.JOBS_QUEUED.labels(kind=name).inc()

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
        result = attempt_job(self._ctx, name, payload, attempt=attempt)
        if result.outcome == "retry":
            self._submit(name, payload, attempt=attempt + 1, delay_seconds=result.retry_delay or 0.0)

    def schedule_due(self, tenant_ids: Iterable[uuid.UUID] | None = None) -> int:
        """Queue a sync for every due account now (:func:`email_service.tasks.periodic.queue_due_syncs`)."""
        if self._ctx is None:
            return 0
        return queue_due_syncs(self._ctx, tenant_ids)

    def start_scheduler(self) -> None:
        """Start the periodic scheduler thread (daemon): :data:`email_service.tasks.periodic.PERIODIC` every
        ``SCHEDULER_TICK_SECONDS``, the first tick one interval after the start."""
        if self._ctx is None:
            raise RuntimeError("InProcessJobRunner.bind() was not called")
        scheduler = Scheduler(self._ctx)
        self._fanout = WebhookFanout(self._ctx).start()  # webhook deliveries soon after each commit
        self._scheduler = threading.Thread(
            target=scheduler.run_forever,
            args=(self._stop,),
            kwargs={"first_tick_now": False},
            name="email-sync-scheduler",
            daemon=True,
        )
        self._scheduler.start()

    def shutdown(self, wait: bool = True) -> None:
        """Stop the scheduler, drop delayed jobs, and stop the workers (``wait`` for running jobs)."""
        self._stop.set()
        if self._fanout is not None:
            self._fanout.stop()
        with self._delayed_changed:
            self._delayed.clear()
            self._delayed_changed.notify()
        self._executor.shutdown(wait=wait, cancel_futures=not wait)
