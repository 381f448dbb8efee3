"""Every job kind, declared once (DESIGN.md sections 3-4): its handler, time limits and retry policy.

Both runners read this table: the in-process runner of the embedded default
(:class:`email_service.tasks.runner.InProcessJobRunner`) and the Celery task shells of production.  A handler
takes the process's :class:`ServiceContext` and the job's JSON payload; it is idempotent (a job may run twice:
a redelivery after a worker died, a retry) and opens its own short transactions.

Retries: a handler that raises one of its kind's ``transient`` errors (or :class:`RetryJob`) runs again after
``retry_delay(attempt)`` seconds, at most ``max_retries`` times; any other error ends the job (the handler records
outcomes a user must see, e.g. on the sync run row, before it raises).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sqlalchemy.exc import OperationalError

from email_service.protocols.errors import ConnectionFailed, TemporaryFailure
from email_service.services.attachment_content import scan_attachment_job
from email_service.services.context import ServiceContext
from email_service.services.jobs import JOB_NAMES, JsonScalar, RetryJob
from email_service.services.webhooks import deliver
from email_service.sync.account import sync_account
from email_service.sync.send import send_outbox_item
from email_service.sync.syncback import syncback_account

Handler = Callable[[ServiceContext, Mapping[str, JsonScalar]], object]
#: Errors worth a retry for every kind: the database or a peer was briefly unreachable.
TRANSIENT: tuple[type[BaseException], ...] = (RetryJob, OperationalError, ConnectionFailed, TemporaryFailure)


@dataclass(frozen=True)
class JobSpec:
    """How one job kind runs.

    Attributes:
        name: the kind (one of :data:`email_service.services.jobs.JobName`).
        handler: ``handler(ctx, payload)``.
        soft_time_limit: seconds after which the job is asked to stop (Celery ``SoftTimeLimitExceeded``).
        time_limit: seconds after which a Celery worker kills it; the broker's visibility timeout must exceed it.
        max_retries: retries after the first attempt for transient errors.
        backoff_seconds: first retry delay; doubled per attempt, capped at ``backoff_cap_seconds``.
    """

    name: str
    handler: Handler
    soft_time_limit: int
    time_limit: int
    max_retries: int = 5
    backoff_seconds: float = 2.0
    backoff_cap_seconds: float = 300.0
    transient: tuple[type[BaseException], ...] = TRANSIENT

    def retry_delay(self, attempt: int, error: BaseException | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based); a :class:`RetryJob` may name its own."""
        if isinstance(error, RetryJob) and error.delay_seconds is not None:
            return error.delay_seconds
        return float(min(self.backoff_cap_seconds, self.backoff_seconds * 2 ** max(0, attempt - 1)))


def _uuid(payload: Mapping[str, JsonScalar], key: str) -> uuid.UUID:
    return uuid.UUID(str(payload[key]))


def _sync_account(ctx: ServiceContext, payload: Mapping[str, JsonScalar]) -> str:
    return sync_account(
        ctx,
        tenant_id=_uuid(payload, "tenantId"),
        account_id=_uuid(payload, "accountId"),
        run_id=_uuid(payload, "runId"),
    )


def _syncback_account(ctx: ServiceContext, payload: Mapping[str, JsonScalar]) -> str:
    return syncback_account(ctx, tenant_id=_uuid(payload, "tenantId"), account_id=_uuid(payload, "accountId"))


def _scan_attachment(ctx: ServiceContext, payload: Mapping[str, JsonScalar]) -> str:
    return scan_attachment_job(ctx, tenant_id=_uuid(payload, "tenantId"), attachment_id=_uuid(payload, "attachmentId"))


def _send_outbox_item(ctx: ServiceContext, payload: Mapping[str, JsonScalar]) -> str:
    return send_outbox_item(ctx, tenant_id=_uuid(payload, "tenantId"), outbox_id=_uuid(payload, "outboxId"))


#: Hard time limit of ``send_outbox_item``: an item ``sending`` longer than this has an unknown outcome (issue 9).
SEND_TIME_LIMIT = 300


def _deliver_webhook(ctx: ServiceContext, payload: Mapping[str, JsonScalar]) -> str:
    return deliver(ctx, tenant_id=_uuid(payload, "tenantId"), delivery_id=_uuid(payload, "deliveryId"))


JOBS: Mapping[str, JobSpec] = {
    spec.name: spec
    for spec in (
        # A first sync of a large mailbox can take long; it resumes where it stopped if it is killed.
        JobSpec("sync_account", _sync_account, soft_time_limit=3 * 3600, time_limit=3 * 3600 + 300),
        # A run works for at most RUN_BUDGET_SECONDS, then queues a fresh job for the rest.
        JobSpec("syncback_account", _syncback_account, soft_time_limit=600, time_limit=660),
        # clamd scans 25 MB in seconds; an unreachable clamd is retried (ConnectionFailed) for about an hour.
        JobSpec("scan_attachment", _scan_attachment, soft_time_limit=300, time_limit=360, max_retries=8),
        # One SMTP transaction (timeouts of MAIL_TIMEOUT_SECONDS per command).  Never retried by the runner: the
        # job records transient SMTP failures and queues its own next attempt; an error after the claim leaves the
        # item "sending", which the scheduler ends as OutcomeUnknown (at most once).
        JobSpec(
            "send_outbox_item",
            _send_outbox_item,
            soft_time_limit=SEND_TIME_LIMIT - 60,
            time_limit=SEND_TIME_LIMIT,
            max_retries=0,
            transient=(),
        ),
        # One POST (WEBHOOK_TIMEOUT_SECONDS); a failed one queues its own retry with backoff (services.webhooks).
        JobSpec("deliver_webhook", _deliver_webhook, soft_time_limit=60, time_limit=90, max_retries=3),
    )
}

if set(JOBS) != set(JOB_NAMES):  # pragma: no cover - a kind named in services.jobs without a spec, or vice versa
    raise RuntimeError(f"job kinds and specs differ: {sorted(set(JOBS) ^ set(JOB_NAMES))}")


def job_spec(name: str) -> JobSpec:
    """The spec of ``name``.  Raises ``KeyError`` (naming the kind) for an unknown one."""
    try:
        return JOBS[name]
    except KeyError:
        raise KeyError(f"unknown job kind {name!r}") from None
