"""One attempt of one job, the same in every runner: the in-process thread pool and the Celery task shells.

:func:`attempt_job` runs the kind's handler, records the attempt in the metrics and the log, and tells the runner
what to do next (:class:`Attempt`): nothing, or run it again after a delay.  Retries follow the kind's policy of
:mod:`email_service.tasks.registry` (transient errors only, backoff, bounded); any other error ends the job.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from email_service.observability import metrics
from email_service.observability.logs import bind_context, clear_context
from email_service.services.context import ServiceContext
from email_service.services.jobs import JsonScalar
from email_service.tasks.registry import job_spec

log = logging.getLogger("email_service.jobs")


@dataclass(frozen=True)
class Attempt:
    """What came of one attempt.

    Attributes:
        outcome: ``succeeded``; ``retry`` (a transient error within the retry budget: run again after
            ``retry_delay`` seconds); ``failed`` (any other error, or the budget is spent: do not run again).
        retry_delay: seconds to wait before the next attempt (``retry`` only).
    """

    outcome: Literal["succeeded", "retry", "failed"]
    retry_delay: float | None = None


def attempt_job(ctx: ServiceContext, name: str, payload: Mapping[str, JsonScalar], *, attempt: int) -> Attempt:
    """Run job ``name`` once; ``attempt`` counts earlier attempts (0 for the first).  Never raises for an error
    of the handler: the outcome says what the runner does next.  Raises ``KeyError`` for an unknown kind."""
    spec = job_spec(name)
    bind_context(job=name, attempt=attempt)
    running = metrics.JOBS_RUNNING.labels(kind=name)
    running.inc()
    try:
        spec.handler(ctx, payload)
    except spec.transient as exc:
        if attempt >= spec.max_retries:
            log.error("job gave up", extra={"error_kind": type(exc).__name__, "attempts": attempt + 1})
            return _finished(name, Attempt("failed"))
        delay = spec.retry_delay(attempt + 1, exc)
        log.warning("job will be retried", extra={"error_kind": type(exc).__name__, "retry_in_seconds": delay})
        return _finished(name, Attempt("retry", delay))
    except Exception:
        log.exception("job failed")
        return _finished(name, Attempt("failed"))
    finally:
        running.dec()
        clear_context()
    return _finished(name, Attempt("succeeded"))


def _finished(name: str, result: Attempt) -> Attempt:
    outcome = "retried" if result.outcome == "retry" else result.outcome
    metrics.JOBS_FINISHED.labels(kind=name, outcome=outcome).inc()
    return result
