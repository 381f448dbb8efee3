"""One sync run of one account, whatever its protocol: lock, run row, mirror, outcome (DESIGN.md section 7).

IMAP accounts are mirrored by :class:`email_service.sync.imap.ImapMirror`, POP3 accounts by
:class:`email_service.sync.pop3.Pop3Mirror`; both report to one :class:`RunProgress`, which keeps the run row's
progress and counts current while the run goes (``GET /accounts/{id}/sync``).

Outcome: ``failed`` when the run could not go through the account (login refused, connection lost, a POP3 server
without UIDL, the account deleted or disabled, its credential destroyed ...: the error kind and message go to the
run row; what was stored before stays).  Otherwise ``succeeded``, also when some folders could not be synced: each
such folder carries its own error (``email_folders.sync_error*``, shown with the folder and in the sync status as
``folderErrors``) and the run's ``folders_failed`` counts them; the other folders are synced and the account's
``last_sync_at`` moves on.

A run may cover one folder (``email_sync_runs.folder``: INBOX after an IDLE push) or every folder.  When a run has
ended and the account's lock is released, :func:`sync_account` starts what waited for it: the follow-up a push
recorded on the run (:func:`email_service.services.sync_runs.queue_follow_up`), the write-back of local changes
still pending, and the job of a run queued meanwhile (:func:`email_service.sync.recovery.resend_waiting_run`).
"""

from __future__ import annotations

import logging
import time
import uuid

from sqlalchemy import select, update

from email_service.errors import EmailServiceError
from email_service.models import EmailAccount, EmailFolder, SyncRun, now_ms
from email_service.observability import metrics
from email_service.protocols.imap import ImapEndpoint, ImapSession
from email_service.protocols.pop3 import Pop3Endpoint, Pop3Session
from email_service.services import actions, search_index
from email_service.services.accounts import account_password
from email_service.services.changes import record_changes
from email_service.services.connection_test import imap_endpoint, pop3_endpoint
from email_service.services.context import ServiceContext
from email_service.services.jobs import RetryJob
from email_service.services.sync_runs import ACTIVE_STATES, queue_follow_up
from email_service.sync.imap import ImapMirror
from email_service.sync.locks import LOCK_RETRY_SECONDS, account_sync_lock
from email_service.sync.pop3 import Pop3Mirror
from email_service.sync.progress import ProgressCallback, RunProgress, SyncCounts
from email_service.sync.recovery import resend_waiting_run

log = logging.getLogger("email_service.sync")


class _AccountUnusable(EmailServiceError):
    """The account cannot be synced at all (deleted, disabled, no stored password); ``kind`` names why."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def sync_account(
    ctx: ServiceContext,
    *,
    tenant_id: uuid.UUID,
    account_id: uuid.UUID,
    run_id: uuid.UUID,
    on_progress: ProgressCallback | None = None,
) -> str:
    """Run one sync of an account (IMAP or POP3) and record its progress and outcome on the :class:`SyncRun` row.

    Returns the final run state: ``succeeded``, ``failed``, or ``skipped`` when the run has ended already (a job
    delivered twice) or is ``running`` under another worker's lock (that worker is working it).  A run found
    ``running`` while we hold the lock was interrupted (its worker died): it is worked again, which is safe
    because every step of the mirrors is idempotent.  Never raises for mail-server trouble, a deleted or disabled
    account or a destroyed credential: the error kind and message go to the run row and the job ends.
    ``on_progress`` sees every step (e.g. a terminal progress bar).  After the run (and the lock), what waited for
    it is queued (see the module docstring).

    Raises:
        RetryJob: the run is still ``queued`` but the account's lock is held (an earlier sync finishing, or the
            account's write-back): the runner tries again after :data:`LOCK_RETRY_SECONDS`, and the holder sends
            the job again when it lets go of the lock.
    """
    state = _sync_locked(ctx, tenant_id, account_id, run_id, on_progress)
    if state != "skipped":  # the lock is released: the next job can take it
        after_run(ctx, tenant_id=tenant_id, account_id=account_id, ended_run_id=run_id)
    return state


def after_run(ctx: ServiceContext, *, tenant_id: uuid.UUID, account_id: uuid.UUID, ended_run_id: uuid.UUID) -> None:
    """Queue what waited for the run ``ended_run_id`` and the account's lock; call once both are released.

    In this order: the follow-up a push recorded on the run (:func:`~email_service.services.sync_runs.queue_follow_up`),
    the write-back of local changes still pending (they wait while a sync holds the lock), and the job of a run
    queued meanwhile (:func:`~email_service.sync.recovery.resend_waiting_run`; also the run a follow-up joined).
    Raises only what the database raises (the runner retries; the scheduler's recovery is the backstop).
    """
    follow_up = queue_follow_up(ctx, tenant_id=tenant_id, account_id=account_id, ended_run_id=ended_run_id)
    if actions.has_pending(ctx, tenant_id, account_id):
        actions.request_syncback(ctx, tenant_id, account_id)
    if follow_up is None:  # (a follow-up queued just now has its job on the way)
        resend_waiting_run(ctx, tenant_id, account_id)


def _sync_locked(
    ctx: ServiceContext,
    tenant_id: uuid.UUID,
    account_id: uuid.UUID,
    run_id: uuid.UUID,
    on_progress: ProgressCallback | None,
) -> str:
    with account_sync_lock(ctx.db, account_id) as taken:
        state, folder = _run_state(ctx, tenant_id, run_id)
        if state not in ACTIVE_STATES:
            return _skipped()
        if not taken:
            if state == "queued":
                raise RetryJob("Another sync or write-back holds the account lock", delay_seconds=LOCK_RETRY_SECONDS)
            return _skipped()
        started = time.monotonic()
        _start(ctx, tenant_id, account_id, run_id)
        progress = RunProgress(ctx, tenant_id, run_id, on_progress)
        error: tuple[str, str] | None = None
        try:
            _mirror(ctx, tenant_id, account_id, progress, folder)
            search_index.finish_sync(
                ctx, tenant_id=tenant_id, account_id=account_id, added=progress.counts.messages_added
            )
        except _AccountUnusable as exc:
            error = (exc.kind, exc.message)
        except EmailServiceError as exc:
            log.warning("sync of account %s failed: %s: %s", account_id, type(exc).__name__, exc.message)
            error = (type(exc).__name__, exc.message)
        except Exception:
            log.exception("sync of account %s failed unexpectedly", account_id)
            error = ("InternalError", "Internal error during sync")
        _finish(ctx, tenant_id, account_id, run_id, progress, error=error)
        _record_metrics(progress.counts, error, time.monotonic() - started)
        return "failed" if error else "succeeded"


def _mirror(
    ctx: ServiceContext, tenant_id: uuid.UUID, account_id: uuid.UUID, progress: RunProgress, folder: str | None
) -> None:
    """Mirror the account through its protocol (IMAP: only ``folder`` when given; a POP3 maildrop is INBOX only).
    Raises :class:`_AccountUnusable` or the mirror's errors."""
    with ctx.db.tenant_session(tenant_id) as session:
        account = session.get(EmailAccount, account_id)
        if account is None or account.deleted_at is not None:
            raise _AccountUnusable("AccountDeleted", "The account was deleted")
        if not account.is_enabled:
            raise _AccountUnusable("AccountDisabled", "The account is disabled")
        if account.credential_id is None:
            raise _AccountUnusable("CredentialMissing", "The account has no stored password")
        password = account_password(ctx, session, account)
        endpoint: ImapEndpoint | Pop3Endpoint = (
            pop3_endpoint(ctx, account, password)
            if account.protocol == "pop3"
            else imap_endpoint(ctx, account, password)
        )
    if isinstance(endpoint, Pop3Endpoint):
        with Pop3Session(endpoint) as pop3:
            Pop3Mirror(ctx, tenant_id, account_id, pop3, progress).run()
    else:
        with ImapSession(endpoint) as imap:
            ImapMirror(ctx, tenant_id, account_id, imap, progress, None if folder is None else (folder,)).run()


def _run_state(ctx: ServiceContext, tenant_id: uuid.UUID, run_id: uuid.UUID) -> tuple[str | None, str | None]:
    """``(state, folder)`` of the run (``(None, None)`` when there is no such run)."""
    with ctx.db.tenant_session(tenant_id) as session:
        row = session.execute(select(SyncRun.state, SyncRun.folder).where(SyncRun.id == run_id)).one_or_none()
    return (row.state, row.folder) if row is not None else (None, None)


def _start(ctx: ServiceContext, tenant_id: uuid.UUID, account_id: uuid.UUID, run_id: uuid.UUID) -> None:
    """Mark the run ``running`` and the account syncing, in one transaction."""
    with ctx.db.tenant_session(tenant_id) as session:
        actions.lock_account(session, account_id)  # lock order: account first (services.changes)
        session.execute(
            update(SyncRun)
            .where(SyncRun.id == run_id)
            .values(state="running", started_at=now_ms(), updated_at=now_ms())
        )
        session.execute(update(EmailAccount).where(EmailAccount.id == account_id).values(is_syncing=True))
        record_changes(session, tenant_id=tenant_id, account_id=account_id, kind="sync", updated=[run_id])


def _finish(
    ctx: ServiceContext,
    tenant_id: uuid.UUID,
    account_id: uuid.UUID,
    run_id: uuid.UUID,
    progress: RunProgress,
    *,
    error: tuple[str, str] | None,
) -> None:
    """Record the outcome on the run and the account, and mark the folders found unchanged synced now, in one
    transaction: a client that sees the run ended also sees the account's ``isSyncing`` and ``lastSyncAt`` of that
    run (and a sync that finds nothing commits only here and in :func:`_start`)."""
    finished = now_ms()
    run = {**progress.run_values(), "updated_at": finished, "finished_at": finished}
    run.update(state="failed" if error else "succeeded", error_kind=error[0] if error else None)
    run["error"] = error[1] if error else None
    account: dict[str, object] = {"is_syncing": False}
    if error is None:
        account["last_sync_at"] = finished
    with ctx.db.tenant_session(tenant_id) as session:
        actions.lock_account(session, account_id)  # lock order: account first (services.changes)
        session.execute(update(SyncRun).where(SyncRun.id == run_id).values(**run))
        session.execute(update(EmailAccount).where(EmailAccount.id == account_id).values(**account))
        cleared: list[uuid.UUID] = []
        if progress.unchanged_folders:
            unchanged = EmailFolder.id.in_(progress.unchanged_folders)
            cleared = list(
                session.execute(
                    select(EmailFolder.id).where(unchanged, EmailFolder.sync_error_kind.is_not(None))
                ).scalars()
            )
            session.execute(
                update(EmailFolder)
                .where(unchanged)
                .values(last_synced_at=finished, sync_error_kind=None, sync_error=None, sync_error_at=None)
            )
        record_changes(session, tenant_id=tenant_id, account_id=account_id, kind="folder", updated=cleared)
        record_changes(session, tenant_id=tenant_id, account_id=account_id, kind="sync", updated=[run_id])


def _skipped() -> str:
    metrics.SYNC_RUNS.labels(outcome="skipped").inc()
    return "skipped"


def _record_metrics(counts: SyncCounts, error: tuple[str, str] | None, seconds: float) -> None:
    metrics.SYNC_RUNS.labels(outcome="failed" if error else "succeeded").inc()
    metrics.SYNC_DURATION.observe(seconds)
    for change, value in (
        ("added", counts.messages_added),
        ("updated", counts.messages_updated),
        ("removed", counts.messages_removed),
    ):
        if value:
            metrics.SYNC_MESSAGES.labels(change=change).inc(value)
