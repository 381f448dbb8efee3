"""The one job interface (DESIGN.md section 4): services ask for background work by name and payload.

A service calls ``ctx.jobs.enqueue("sync_account", {...})`` and never knows what runs it: the in-process runner of
the embedded default or Celery workers in production (:mod:`email_service.tasks`, where each job kind is declared
once with its handler, time limits and retry policy).  Payloads are small JSON objects (ids as strings), so that
they survive a broker; a job re-reads every row it needs and never trusts state read before it started.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol, get_args

from email_service.errors import EmailServiceError

#: Every job kind; :data:`email_service.tasks.registry.JOBS` declares each one's handler and policy.
JobName = Literal[
    "sync_account", "syncback_account", "scan_attachment", "send_outbox_item", "deliver_webhook"
]  # fmt: skip
JOB_NAMES: tuple[str, ...] = get_args(JobName)
#: A JSON scalar: what a payload value may be (ids travel as strings).
JsonScalar = str | int | float | bool | None


class JobQueue(Protocol):
    """Where services hand work to: the in-process runner (embedded default) or Celery (production)."""

    def enqueue(self, name: JobName, payload: Mapping[str, JsonScalar], *, delay_seconds: float = 0.0) -> None:
        """Queue one job ``name`` with ``payload``, to start no earlier than ``delay_seconds`` from now.

        Returns at once.  Raises ``KeyError`` for a name no runner knows.
        """
        ...


@dataclass(frozen=True)
class QueuedJob:
    """One job as a queue received it."""

    name: str
    payload: dict[str, JsonScalar]
    delay_seconds: float = 0.0


@dataclass
class RecordingJobQueue:
    """A queue that runs nothing and records what it was given: the CLI's foreground commands and tests that
    drive the jobs themselves."""

    queued: list[QueuedJob] = field(default_factory=list)

    def enqueue(self, name: JobName, payload: Mapping[str, JsonScalar], *, delay_seconds: float = 0.0) -> None:
        """Record the job only."""
        self.queued.append(QueuedJob(name, dict(payload), delay_seconds))


class RetryJob(EmailServiceError):
    """Raised by a job handler for a transient condition: the runner runs the job again after
    ``delay_seconds`` (or its own backoff when ``None``), within the job kind's retry budget."""

    def __init__(self, message: str, *, delay_seconds: float | None = None) -> None:
        super().__init__(message)
        self.delay_seconds = delay_seconds
