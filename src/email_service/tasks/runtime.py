"""The job runtime of one serving process, chosen by the settings (DESIGN.md section 4, issue 7).

* Embedded default (``JOB_RUNNER=inprocess``): an :class:`InProcessJobRunner` bound to the context, with the
  periodic scheduler thread when ``SCHEDULER_ENABLED``; at its start the write-back of every account with pending
  actions is queued (the jobs of a stopped process lived in its memory).
* Production (``JOB_RUNNER=celery``, the production default): a :class:`CeleryJobQueue`; the workers run the jobs
  (``email-service worker``) and ``email-service beat`` runs the periodic work.
"""

from __future__ import annotations

from dataclasses import dataclass

from email_service.config import Settings
from email_service.services import sync_runs
from email_service.services.context import ServiceContext, build_context
from email_service.sync.recovery import requeue_writebacks
from email_service.tasks.runner import InProcessJobRunner


@dataclass
class JobRuntime:
    """The context the API serves with and the in-process runner behind it (``None`` on Celery)."""

    ctx: ServiceContext
    runner: InProcessJobRunner | None = None

    def shutdown(self) -> None:
        """Stop the in-process runner (running jobs are abandoned; their runs are recovered later)."""
        if self.runner is not None:
            self.runner.shutdown(wait=False)


def start_job_runtime(settings: Settings, *, owns_all_runs: bool = False, scheduler: bool = True) -> JobRuntime:
    """Build the context and the job queue of ``settings``; with the in-process runner, queue the write-backs still
    pending and start its scheduler when ``SCHEDULER_ENABLED``.

    Args:
        owns_all_runs: this process is the only one that runs jobs (the embedded default's single ``serve`` on
            SQLite): runs left queued or running by its previous life are closed first, as interrupted.
        scheduler: run the periodic scheduler here (when ``SCHEDULER_ENABLED``); ``email-service push`` does not.
    """
    if settings.uses_celery:
        from email_service.tasks.celery_app import CeleryJobQueue, celery_init_app

        return JobRuntime(build_context(settings, jobs=CeleryJobQueue(celery_init_app(settings))))
    runner = InProcessJobRunner(workers=settings.job_workers)
    ctx = build_context(settings, jobs=runner)
    runner.bind(ctx)
    if owns_all_runs:
        sync_runs.fail_interrupted_runs(ctx)
    requeue_writebacks(ctx, due_before=None)  # changes accepted before a stop reach the server now
    if scheduler and settings.scheduler_enabled:
        runner.start_scheduler()
    return JobRuntime(ctx, runner)
