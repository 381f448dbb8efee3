"""One sync run of one account, whatever its protocol: lock, run row, mirror, outcome (DESIGN.md section 7).

IMAP accounts are mirrored by :class:`email_service.sync.imap.ImapMirror`, POP3 accounts by
:class:`email_service.sync.pop3.Pop3Mirror`; both report to one :class:`RunProgress`, which keeps the run row's
progress and counts current while the run goes (``GET /accounts/{id}/sync``).

Outcome: ``failed`` when the run could not go through the account (login refused, connection lost, a POP3 server
without UIDL ...: the error kind and the server's message go to the run row; what was stored before stays).
Otherwise ``succeeded``, also when some folders could not be synced: each such folder carries its own error
(``email_folders.sync_error*``, shown with the folder and in the sync status as ``folderErrors``) and the run's
``folders_failed`` counts them; the other folders are synced and the account's ``last_sync_at`` moves on.
"""

from __future__ import annotations

import logging
import uuid

from sqlalchemy import update

from email_service.errors import EmailServiceError
from email_service.models import EmailAccount, EmailFolder, SyncRun, now_ms
from email_service.protocols.imap import ImapEndpoint, ImapSession
from email_service.protocols.pop3 import Pop3Endpoint, Pop3Session
from email_service.services.accounts import account_password
from email_service.services.connection_test import imap_endpoint, pop3_endpoint
from email_service.services.context import ServiceContext
from email_service.services.sync_runs import ACTIVE_STATES
from email_service.sync.imap import ImapMirror
from email_service.sync.locks import account_sync_lock
from email_service.sync.pop3 import Pop3Mirror
from email_service.sync.progress import ProgressCallback, RunProgress

log = logging.getLogger("email_service.sync")


def sync_account(
    ctx: ServiceContext,
    *,
    tenant_id: uuid.UUID,
    account_id: uuid.UUID,
    run_id: uuid.UUID,
    on_progress: ProgressCallback | None = None,
) -> str:
    """Run one sync of an account (IMAP or POP3) and record its progress and outcome on the :class:`SyncRun` row.

    Returns the final run state: ``succeeded``, ``failed``, or ``skipped`` when another worker holds the account's
    lock (it is working this run: the run row is left to it) or the run has already ended (a job delivered twice).
    A run found ``running`` while we hold the lock was interrupted (its worker died): it is worked again, which is
    safe because every step of the mirrors is idempotent.  Never raises for mail-server trouble: the error kind and
    the server's message go to the run row.  ``on_progress`` sees every step (e.g. a terminal progress bar).
    """
    with account_sync_lock(ctx.db, account_id) as taken:
        if not taken or not _start(ctx, tenant_id, account_id, run_id):
            return "skipped"
        progress = RunProgress(ctx, tenant_id, run_id, on_progress)
        error: tuple[str, str] | None = None
        try:
            _mirror(ctx, tenant_id, account_id, progress)
        except EmailServiceError as exc:
            log.warning("sync of account %s failed: %s: %s", account_id, type(exc).__name__, exc.message)
            error = (type(exc).__name__, exc.message)
        except Exception:
            log.exception("sync of account %s failed unexpectedly", account_id)
            error = ("InternalError", "Internal error during sync")
        _finish(ctx, tenant_id, account_id, run_id, progress, error=error)
        return "failed" if error else "succeeded"


def _mirror(ctx: ServiceContext, tenant_id: uuid.UUID, account_id: uuid.UUID, progress: RunProgress) -> None:
    with ctx.db.tenant_session(tenant_id) as session:
        account = session.get(EmailAccount, account_id)
        if account is None or account.deleted_at is not None or not account.is_enabled:
            raise EmailServiceError("Account is deleted or disabled")
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
            ImapMirror(ctx, tenant_id, account_id, imap, progress).run()


def _start(ctx: ServiceContext, tenant_id: uuid.UUID, account_id: uuid.UUID, run_id: uuid.UUID) -> bool:
    """Mark the run ``running`` (if it is still queued or running) and the account syncing, in one transaction;
    ``False`` when the run has already ended."""
    with ctx.db.tenant_session(tenant_id) as session:
        started = session.execute(
            update(SyncRun)
            .where(SyncRun.id == run_id, SyncRun.state.in_(ACTIVE_STATES))
            .values(state="running", started_at=now_ms(), updated_at=now_ms())
            .returning(SyncRun.id)
        ).first()
        if started is not None:
            session.execute(update(EmailAccount).where(EmailAccount.id == account_id).values(is_syncing=True))
    return started is not None


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
    transaction (a sync that finds nothing commits only here and in :func:`_start`)."""
    finished = now_ms()
    run = {**progress.run_values(), "updated_at": finished, "finished_at": finished}
    run.update(state="failed" if error else "succeeded", error_kind=error[0] if error else None)
    run["error"] = error[1] if error else None
    account: dict[str, object] = {"is_syncing": False}
    if error is None:
        account["last_sync_at"] = finished
    with ctx.db.tenant_session(tenant_id) as session:
        session.execute(update(SyncRun).where(SyncRun.id == run_id).values(**run))
        session.execute(update(EmailAccount).where(EmailAccount.id == account_id).values(**account))
        if progress.unchanged_folders:
            session.execute(
                update(EmailFolder)
                .where(EmailFolder.id.in_(progress.unchanged_folders))
                .values(last_synced_at=finished, sync_error_kind=None, sync_error=None, sync_error_at=None)
            )
