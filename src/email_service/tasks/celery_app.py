"""Jobs on Celery with the Redis broker (production, or ``JOB_RUNNER=celery``; issue 7).

:func:`celery_init_app` maps the registry (:data:`email_service.tasks.registry.JOBS`) onto Celery: one thin task
shell per job kind, named ``email_service.<kind>``, that runs one attempt through
:func:`email_service.tasks.execution.attempt_job` -- the same code the in-process runner runs -- with a
:class:`ServiceContext` built once per worker process.  Celery's own machinery does the rest:

* ``task_acks_late`` + ``task_reject_on_worker_lost``: a message is acknowledged only when its attempt ended, so a
  worker killed mid-job leaves it to be delivered again (after the broker's visibility timeout; the scheduler's
  recovery, :mod:`email_service.sync.recovery`, is the second net);
* ``visibility_timeout`` longer than the longest hard time limit (``CELERY_VISIBILITY_TIMEOUT``, default: that
  limit plus ten minutes), so a job still running is never handed to a second worker; a shorter configured
  timeout caps the time limits below it instead (faster redelivery after a crash, shorter longest job);
* soft and hard time limits per kind; retries of the kind's transient errors only, with its backoff
  (``self.retry(countdown=spec.retry_delay(...))``), bounded by its ``max_retries``;
* prefetch multiplier 1: a worker process reserves one job at a time (jobs are long; none waits behind another).

Services enqueue through :class:`CeleryJobQueue` (``send_task`` with a countdown) and never import Celery.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from typing import Any

from celery import Celery, Task
from celery.signals import worker_process_init, worker_process_shutdown

from email_service.config import Settings
from email_service.observability import metrics
from email_service.services.context import ServiceContext, build_context
from email_service.services.jobs import JobName, JsonScalar
from email_service.tasks.execution import attempt_job
from email_service.tasks.registry import JOBS, JobSpec, job_spec

log = logging.getLogger("email_service.jobs")
QUEUE = "email_service"
#: Added to the longest hard time limit for the default visibility timeout.
VISIBILITY_MARGIN_SECONDS = 600


def task_name(kind: str) -> str:
    """The Celery task name of job kind ``kind``: ``email_service.<kind>``."""
    return f"email_service.{kind}"


def visibility_timeout(settings: Settings) -> int:
    """Seconds after which Redis hands an unacknowledged message to another worker (``CELERY_VISIBILITY_TIMEOUT``,
    default: the longest hard time limit of :data:`JOBS` plus :data:`VISIBILITY_MARGIN_SECONDS`)."""
    longest = max(spec.time_limit for spec in JOBS.values())
    return settings.celery_visibility_timeout or longest + VISIBILITY_MARGIN_SECONDS


def time_limits(spec: JobSpec, visibility: int) -> tuple[int, int]:
    """``(soft, hard)`` time limits of ``spec`` in seconds: the kind's own when they are below ``visibility``, else
    capped at 80 % and 90 % of it (logged)."""
    if spec.time_limit < visibility:
        return spec.soft_time_limit, spec.time_limit
    hard = int(visibility * 0.9)
    soft = min(spec.soft_time_limit, int(visibility * 0.8))
    log.warning(
        "job time limits capped below the visibility timeout",
        extra={"job": spec.name, "soft_time_limit": soft, "time_limit": hard, "visibility_timeout": visibility},
    )
    return soft, hard


class CeleryJobQueue:
    """:class:`~email_service.services.jobs.JobQueue` that sends each job to the Celery broker."""

    def __init__(self, app: Celery) -> None:
        self.app = app

    def enqueue(self, name: JobName, payload: Mapping[str, JsonScalar], *, delay_seconds: float = 0.0) -> None:
        """Send job ``name`` to the broker, to start after ``delay_seconds`` (a Celery countdown).

        Raises ``KeyError`` for an unknown kind, kombu's ``OperationalError`` when the broker stays unreachable
        after three quick retries.
        """
        job_spec(name)
        self.app.send_task(
            task_name(name),
            kwargs={"payload": dict(payload)},
            countdown=delay_seconds if delay_seconds > 0 else None,
            queue=QUEUE,
        )
        metrics.JOBS_QUEUED.labels(kind=name).inc()


class _WorkerContext:
    """The :class:`ServiceContext` of one worker process: built on first use, dropped when the pool forks a new
    process (which must not share the parent's database connections)."""

    def __init__(self, settings: Settings, app: Celery) -> None:
        self.settings, self.app = settings, app
        self._ctx: ServiceContext | None = None
        self._lock = threading.Lock()

    def get(self) -> ServiceContext:
        with self._lock:
            if self._ctx is None:
                self._ctx = build_context(self.settings, jobs=CeleryJobQueue(self.app))
            return self._ctx

    def reset(self, **_: Any) -> None:
        self._ctx = None


def celery_init_app(settings: Settings) -> Celery:
    """A Celery app for ``settings`` (broker ``CELERY_BROKER_URL``, optional ``CELERY_RESULT_BACKEND``) with one
    task per job kind.  Raises ``ValueError`` when no broker is configured."""
    if not settings.celery_broker_url:
        raise ValueError("CELERY_BROKER_URL is not set")
    app = Celery("email_service", broker=settings.celery_broker_url, backend=settings.celery_result_backend)
    visibility = visibility_timeout(settings)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_ignore_result=settings.celery_result_backend is None,
        task_default_queue=QUEUE,
        # Restore unacknowledged messages of dead workers within a twentieth of the timeout once it has passed.
        broker_transport_options={
            "visibility_timeout": visibility,
            "unacked_restore_interval": max(1, min(60, visibility // 20)),
            "unacked_restore_throttle": 1,
        },
        result_backend_transport_options={"visibility_timeout": visibility},
        task_publish_retry_policy={"max_retries": 3, "interval_start": 0, "interval_step": 0.5, "interval_max": 1},
        broker_connection_retry_on_startup=True,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        worker_send_task_events=False,
        enable_utc=True,
    )
    context = _WorkerContext(settings, app)
    worker_process_init.connect(context.reset, weak=False)
    worker_process_shutdown.connect(_process_ended, weak=False)
    for spec in JOBS.values():
        _register(app, spec, visibility, context)
    return app


def _process_ended(**_: Any) -> None:
    metrics.mark_process_dead(os.getpid())


def _register(app: Celery, spec: JobSpec, visibility: int, context: _WorkerContext) -> None:
    soft, hard = time_limits(spec, visibility)

    def shell(task: Task, payload: dict[str, JsonScalar]) -> None:
        result = attempt_job(context.get(), spec.name, payload, attempt=task.request.retries)
        if result.outcome == "retry":
            raise task.retry(countdown=result.retry_delay)

    app.task(
        shell,
        name=task_name(spec.name),
        bind=True,
        acks_late=True,
        reject_on_worker_lost=True,
        soft_time_limit=soft,
        time_limit=hard,
        max_retries=None,  # attempt_job enforces the kind's budget
        ignore_result=True,
        shared=False,  # this app's shell only: another app of the process (tests, beat) gets its own
    )
