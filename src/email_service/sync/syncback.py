"""Write-back: an account's pending actions applied on its IMAP server, in order (DESIGN.md section 7, issue 8).

The ``syncback_account`` job (declared in :mod:`email_service.tasks.registry`)::

    take the account lock ---- busy (a sync or another write-back runs) ---> RetryJob in LOCK_RETRY_SECONDS
        |
    own ImapSession (through the account's endpoint and the guarded connector)
        |
    loop: next pending actions by seq -> longest run that shares one command (syncback_apply.group_key)
          -> apply on the server (syncback_apply) -> record the outcome in one transaction (syncback_record)
        |  until none is left, or the time budget is spent (then the job queues itself again)
    release the lock; send again the job of a sync queued meanwhile (sync.recovery.resend_waiting_run); queue a
    sync when an outcome left the local state to be repaired by one

Transient trouble (connection, ``NO [UNAVAILABLE]``, database briefly away) leaves the actions pending: the error
and attempt count go on them, ``next_attempt_at`` moves out with backoff (30 s doubling, at most an hour), and the
error is raised for the runner's retry policy; the scheduler queues the account again at ``next_attempt_at`` after
the runner gives up or the process died.  A refused login is recorded the same way but not retried by the runner
(the credentials need fixing).  Permanent refusals end the actions ``failed`` (see syncback_apply).

Idempotent: a run that dies after a command and before recording it is repeated; ``+FLAGS``/``-FLAGS`` and
``UID EXPUNGE`` are harmless twice, CREATE/RENAME/DELETE recognise their own earlier success, and a repeated MOVE
finds the UIDs gone (failed, with a sync queued that finds the message in its new folder).
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass

from sqlalchemy import select, update

from email_service.models import EmailAccount, PendingAction, now_ms
from email_service.protocols.errors import AuthenticationFailed, ConnectionFailed, TemporaryFailure
from email_service.protocols.imap import ImapEndpoint, ImapSession
from email_service.services import sync_runs
from email_service.services.accounts import account_password
from email_service.services.actions import lock_account, request_syncback
from email_service.services.connection_test import imap_endpoint
from email_service.services.context import ServiceContext
from email_service.services.jobs import RetryJob
from email_service.sync.locks import LOCK_RETRY_SECONDS, account_sync_lock
from email_service.sync.recovery import resend_waiting_run
from email_service.sync.syncback_apply import ActionApplier, group_key
from email_service.sync.syncback_record import OutcomeRecorder

log = logging.getLogger("email_service.syncback")
#: Most actions one command (one group) carries; a batch request is at most 1,000 messages.
GROUP_LIMIT = 1000
#: Seconds one run works before it hands over to a fresh job (well under the job's soft time limit).
RUN_BUDGET_SECONDS = 240.0
#: Backoff of ``next_attempt_at`` after transient failures: first delay and cap, in seconds.
BACKOFF_SECONDS, BACKOFF_CAP_SECONDS = 30, 3600


@dataclass
class SyncbackCounts:
    """What one run did."""

    applied: int = 0
    failed: int = 0
    needs_sync: bool = False
    more: bool = False


def _next_group(ctx: ServiceContext, tenant_id: uuid.UUID, account_id: uuid.UUID) -> list[PendingAction]:
    """The next pending actions that go out as one command (empty when none is pending)."""
    with ctx.db.tenant_session(tenant_id) as session:
        actions = list(
            session.execute(
                select(PendingAction)
                .where(PendingAction.account_id == account_id, PendingAction.state == "pending")
                .order_by(PendingAction.seq)
                .limit(GROUP_LIMIT)
            ).scalars()
        )
    if not actions:
        return []
    key = group_key(actions[0])
    group = [actions[0]]
    for action in actions[1:]:
        if group_key(action) != key:
            break
        group.append(action)
    return group


def _work(ctx: ServiceContext, tenant_id: uuid.UUID, account_id: uuid.UUID, imap: ImapSession) -> SyncbackCounts:
    counts = SyncbackCounts()
    applier = ActionApplier(imap, read_raw=lambda sha256: ctx.blobs.get(str(tenant_id), sha256))
    deadline = time.monotonic() + RUN_BUDGET_SECONDS
    while True:
        group = _next_group(ctx, tenant_id, account_id)
        if not group:
            return counts
        if time.monotonic() > deadline:
            counts.more = True
            return counts
        outcomes = applier.apply(group)
        with ctx.db.tenant_session(tenant_id) as session:
            lock_account(session, account_id)  # serialised with the API's changes of the same account
            recorder = OutcomeRecorder(session)
            recorder.record(group, outcomes)
        counts.applied += sum(o.ok for o in outcomes)
        counts.failed += sum(not o.ok for o in outcomes)
        counts.needs_sync = counts.needs_sync or recorder.needs_sync


def _postpone(ctx: ServiceContext, tenant_id: uuid.UUID, account_id: uuid.UUID, error: Exception) -> None:
    """Keep the account's pending actions pending, with the error, one more attempt and a later
    ``next_attempt_at`` (backoff by the first action's attempts)."""
    message = getattr(error, "message", None) or "Internal error during write-back"
    with ctx.db.tenant_session(tenant_id) as session:
        attempts = session.execute(
            select(PendingAction.attempts)
            .where(PendingAction.account_id == account_id, PendingAction.state == "pending")
            .order_by(PendingAction.seq)
            .limit(1)
        ).scalar_one_or_none()
        if attempts is None:
            return
        delay = min(BACKOFF_CAP_SECONDS, BACKOFF_SECONDS * 2 ** min(attempts, 12))
        session.execute(
            update(PendingAction)
            .where(PendingAction.account_id == account_id, PendingAction.state == "pending")
            .values(
                attempts=PendingAction.attempts + 1,
                error_kind=type(error).__name__,
                error=message,
                next_attempt_at=now_ms() + delay * 1000,
                updated_at=now_ms(),
            )
        )


def _endpoint_of(ctx: ServiceContext, tenant_id: uuid.UUID, account_id: uuid.UUID) -> ImapEndpoint | None:
    with ctx.db.tenant_session(tenant_id) as session:
        account = session.get(EmailAccount, account_id)
        if account is None or account.deleted_at is not None or not account.is_enabled or account.protocol != "imap":
            return None
        return imap_endpoint(ctx, account, account_password(ctx, session, account))


def syncback_account(ctx: ServiceContext, *, tenant_id: uuid.UUID, account_id: uuid.UUID) -> str:
    """Apply the account's pending actions on its IMAP server, in order; see the module docstring.

    Returns ``done`` (nothing left pending, or the rest handed to a new job), ``idle`` (nothing was pending),
    ``skipped`` (account deleted, disabled or not IMAP: its actions stay pending) or ``postponed`` (login refused).
    Once the lock is released, whatever the outcome, a sync that met it meanwhile gets its job again
    (:func:`email_service.sync.recovery.resend_waiting_run`).

    Raises:
        RetryJob: the account's lock is busy.
        ConnectionFailed / TemporaryFailure / OperationalError: transient; recorded on the actions first.
    """
    held = False
    try:
        with account_sync_lock(ctx.db, account_id) as taken:
            if not taken:
                raise RetryJob("A sync or write-back of the account is running", delay_seconds=LOCK_RETRY_SECONDS)
            held = True
            outcome, counts = _apply_pending(ctx, tenant_id, account_id)
    finally:
        if held:
            _resend_waiting_sync(ctx, tenant_id, account_id)
    if counts is not None:
        log.info("write-back of account %s: %d applied, %d failed", account_id, counts.applied, counts.failed)
        if counts.needs_sync:
            sync_runs.enqueue_sync(ctx, tenant_id=tenant_id, account_id=account_id, trigger="syncback", principal=None)
        if counts.more:
            request_syncback(ctx, tenant_id, account_id)
    return outcome


def _apply_pending(
    ctx: ServiceContext, tenant_id: uuid.UUID, account_id: uuid.UUID
) -> tuple[str, SyncbackCounts | None]:
    """The work under the lock: ``(outcome, counts)``, counts ``None`` when nothing was applied."""
    if not _next_group(ctx, tenant_id, account_id):
        return "idle", None
    endpoint = _endpoint_of(ctx, tenant_id, account_id)
    if endpoint is None:
        return "skipped", None
    try:
        with ImapSession(endpoint) as imap:
            return "done", _work(ctx, tenant_id, account_id, imap)
    except (ConnectionFailed, TemporaryFailure) as exc:
        log.warning("write-back of account %s postponed: %s", account_id, exc.message)
        _postpone(ctx, tenant_id, account_id, exc)
        raise
    except AuthenticationFailed as exc:
        log.warning("write-back of account %s: login refused", account_id)
        _postpone(ctx, tenant_id, account_id, exc)
        return "postponed", None
    except Exception as exc:  # recorded, so that the scheduler backs off; the runner logs it
        _postpone(ctx, tenant_id, account_id, exc)
        raise


def _resend_waiting_sync(ctx: ServiceContext, tenant_id: uuid.UUID, account_id: uuid.UUID) -> None:
    """:func:`resend_waiting_run` after the lock is released; its own failure is logged, never raised over the
    write-back's outcome (the scheduler's recovery sends a stranded run's job later)."""
    try:
        resend_waiting_run(ctx, tenant_id, account_id)
    except Exception:
        log.exception("sync run of account %s waiting for the write-back not sent again", account_id)
