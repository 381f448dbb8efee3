"""Sync requests and status (issue 2 section 6): ``POST/GET /accounts/{id}/sync`` and the scheduler's view.

A request creates a :class:`SyncRun` in state ``queued`` and hands it to the job queue; while one is queued or
running for the account, further requests return that run instead of piling up new ones (a partial unique index
makes that hold under concurrency, on SQLite and PostgreSQL).

A run may cover one folder only (``folder``: an IDLE push of INBOX) or every folder.  A request that must see a
change the server has just announced (``follow_up=True``: a push) cannot simply join an active run, which may
have read that folder already: it is recorded on the active run as a *follow-up* and queued the moment that run
ends (:func:`queue_follow_up`), so new mail never waits for the next interval.  A run still ``queued`` that covers
the folder needs no follow-up: it has not read anything yet.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import and_, case, func, not_, or_, select, update
from sqlalchemy.exc import IntegrityError

from email_service.errors import Conflict
from email_service.models import EmailAccount, EmailFolder, SyncRun, Tenant, now_ms
from email_service.security.tokens import Principal
from email_service.services.accounts import audit, load_account
from email_service.services.changes import record_changes
from email_service.services.context import ServiceContext
from email_service.services.jobs import JsonScalar

ACTIVE_STATES = ("queued", "running")


@dataclass(frozen=True)
class SyncStatus:
    """What ``GET /accounts/{id}/sync`` reports: the account's flags, its latest run (if any) and the folders whose
    last sync failed (``sync_error*`` set), by name."""

    account: EmailAccount
    run: SyncRun | None
    folder_errors: list[EmailFolder]


def progress_percent(*, folders_done: int, folders_total: int, folder_fetched: int, folder_expected: int) -> float:
    """How far a run is, 0-100 (one decimal): finished folders plus the fetched share of the current folder's new
    messages, over the folders to sync.  Folders weigh the same (their sizes are known only once each is opened)."""
    if folders_total <= 0:
        return 0.0
    current = min(1.0, folder_fetched / folder_expected) if folder_expected > 0 else 0.0
    return round(min(100.0, 100.0 * (min(folders_done, folders_total) + current) / folders_total), 1)


def run_percent(run: SyncRun) -> float:
    """:func:`progress_percent` of a run row; 100 once it succeeded."""
    if run.state == "succeeded":
        return 100.0
    return progress_percent(
        folders_done=run.folders_done,
        folders_total=run.folders_total,
        folder_fetched=run.folder_fetched,
        folder_expected=run.folder_expected,
    )


def _active_run(ctx: ServiceContext, tenant_id: uuid.UUID, account_id: uuid.UUID) -> SyncRun | None:
    with ctx.db.tenant_session(tenant_id) as session:
        return session.execute(
            select(SyncRun)
            .where(SyncRun.account_id == account_id, SyncRun.state.in_(ACTIVE_STATES))
            .order_by(SyncRun.created_at.desc())
            .limit(1)
        ).scalar_one_or_none()


def sync_job_payload(tenant_id: uuid.UUID, account_id: uuid.UUID, run_id: uuid.UUID) -> dict[str, JsonScalar]:
    """The payload of a ``sync_account`` job: ``{"tenantId", "accountId", "runId"}`` as UUID strings."""
    return {"tenantId": str(tenant_id), "accountId": str(account_id), "runId": str(run_id)}


def enqueue_sync(
    ctx: ServiceContext,
    *,
    tenant_id: uuid.UUID,
    account_id: uuid.UUID,
    trigger: str,
    principal: Principal | None,
    folder: str | None = None,
    follow_up: bool = False,
) -> tuple[SyncRun, bool]:
    """Queue a sync of ``folder`` (a mailbox name; ``None``: every folder) unless one is queued or running.
    Returns ``(run, created)``.

    The partial unique index ``uq_email_sync_runs_one_active`` (migration 0002) admits one active run per
    account: of concurrent requests exactly one inserts, the others get that run back with ``created=False``.
    With ``follow_up``, a request that finds an active run which may already have read ``folder`` records a
    follow-up on it (see the module docstring); ``created`` is then ``False`` too.
    """
    active = _active_run(ctx, tenant_id, account_id)
    # (with a follow-up asked for, an active run that has ended meanwhile means: queue a new one)
    if active is not None and (
        not follow_up or _ask_follow_up(ctx, tenant_id, active.id, trigger=trigger, folder=folder)
    ):
        return active, False
    try:
        with ctx.db.tenant_session(tenant_id) as session:
            run = SyncRun(
                id=uuid.uuid4(),
                tenant_id=tenant_id,
                account_id=account_id,
                state="queued",
                trigger=trigger,
                folder=folder,
            )
            session.add(run)
            session.flush()  # the unique index decides here, before the audit entry is written
            record_changes(session, tenant_id=tenant_id, account_id=account_id, kind="sync", created=[run.id])
            audit(
                session,
                principal,
                tenant_id=tenant_id,
                action="sync.request",
                resource_type="email_account",
                resource_id=account_id,
                details={"trigger": trigger, "syncId": str(run.id), **({"folder": folder} if folder else {})},
            )
    except IntegrityError:
        # Another request inserted first; ask again: its run is returned (with a follow-up recorded if asked
        # for), or a new run is queued if it has already finished.
        return enqueue_sync(
            ctx,
            tenant_id=tenant_id,
            account_id=account_id,
            trigger=trigger,
            principal=principal,
            folder=folder,
            follow_up=follow_up,
        )
    ctx.jobs.enqueue("sync_account", sync_job_payload(tenant_id, account_id, run.id))
    return run, True


def _ask_follow_up(
    ctx: ServiceContext, tenant_id: uuid.UUID, run_id: uuid.UUID, *, trigger: str, folder: str | None
) -> bool:
    """Record on the active run ``run_id`` that ``folder`` (``None``: every folder) must be synced after it.

    One conditional UPDATE decides against the row as it is at that moment (the run's state only moves forward:
    queued -> running -> ended): a ``running`` run gets the follow-up; a ``queued`` run that covers ``folder``
    needs none (it has read nothing yet).  Follow-ups merge: the same folder stays, anything else widens to every
    folder.  Returns ``False`` when the run has already ended (the caller queues a new run instead).
    """
    covers = SyncRun.folder.is_(None) if folder is None else or_(SyncRun.folder.is_(None), SyncRun.folder == folder)
    merged = case((or_(SyncRun.follow_up_trigger.is_(None), SyncRun.follow_up_folder == folder), folder), else_=None)
    with ctx.db.tenant_session(tenant_id) as session:
        changed = session.execute(
            update(SyncRun)
            .where(
                SyncRun.id == run_id,
                or_(SyncRun.state == "running", and_(SyncRun.state == "queued", not_(covers))),
            )
            .values(follow_up_trigger=trigger, follow_up_folder=merged, updated_at=now_ms())
        )
        if changed.rowcount:  # type: ignore[attr-defined]
            return True
        state = session.execute(select(SyncRun.state).where(SyncRun.id == run_id)).scalar_one_or_none()
    return state in ACTIVE_STATES


def queue_follow_up(
    ctx: ServiceContext, *, tenant_id: uuid.UUID, account_id: uuid.UUID, ended_run_id: uuid.UUID
) -> SyncRun | None:
    """Queue the follow-up a push recorded on the run ``ended_run_id`` (:func:`_ask_follow_up`), which the sync
    job has just ended and unlocked.  No follow-up can be added to an ended run, so reading it after the end misses
    none.  Returns the run now queued for it, or ``None`` (no follow-up, or a queued run that covers it already:
    :func:`email_service.sync.recovery.resend_waiting_run` sees that its job goes out)."""
    with ctx.db.tenant_session(tenant_id) as session:
        ended = session.execute(
            select(SyncRun.follow_up_trigger, SyncRun.follow_up_folder).where(
                SyncRun.id == ended_run_id, SyncRun.state.not_in(ACTIVE_STATES)
            )
        ).one_or_none()
    if ended is None or ended.follow_up_trigger is None:
        return None
    run, created = enqueue_sync(
        ctx,
        tenant_id=tenant_id,
        account_id=account_id,
        trigger=ended.follow_up_trigger,
        principal=None,
        folder=ended.follow_up_folder,
        follow_up=True,
    )
    return run if created else None


def waiting_run(ctx: ServiceContext, tenant_id: uuid.UUID, account_id: uuid.UUID) -> SyncRun | None:
    """The account's run that is ``queued`` (not yet started), if any."""
    run = _active_run(ctx, tenant_id, account_id)
    return run if run is not None and run.state == "queued" else None


def request_sync(ctx: ServiceContext, *, principal: Principal, account_id: uuid.UUID) -> tuple[SyncRun, bool]:
    """Ask for a sync of one account now.  Returns ``(run, created)``.

    Raises:
        NotFound / Forbidden: the account is not visible to the caller.
        Conflict: the account is disabled.
    """
    with ctx.db.tenant_session(principal.tenant_id) as session:
        account = load_account(session, principal, account_id)
        if not account.is_enabled:
            raise Conflict("Account is disabled")
    return enqueue_sync(ctx, tenant_id=principal.tenant_id, account_id=account_id, trigger="api", principal=principal)


def sync_status(ctx: ServiceContext, *, principal: Principal, account_id: uuid.UUID) -> SyncStatus:
    """The account, its most recent run and its failing folders, as of one moment (one read-only snapshot).

    Raises :class:`NotFound` / :class:`Forbidden`."""
    with ctx.db.tenant_session(principal.tenant_id, read_only=True) as session:
        account = load_account(session, principal, account_id)
        run = session.execute(
            select(SyncRun).where(SyncRun.account_id == account_id).order_by(SyncRun.created_at.desc()).limit(1)
        ).scalar_one_or_none()
        failing = session.execute(
            select(EmailFolder)
            .where(EmailFolder.account_id == account_id, EmailFolder.sync_error_kind.is_not(None))
            .order_by(EmailFolder.name)
        ).scalars()
        return SyncStatus(account, run, list(failing))


def due_accounts(
    ctx: ServiceContext, *, now: int | None = None, tenant_ids: Iterable[uuid.UUID] | None = None
) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """``(tenant_id, account_id)`` of every enabled, sync-enabled account (IMAP or POP3) that is due.

    Due means ``syncInterval`` seconds have passed since the last *attempt* (the latest run, whatever its outcome,
    else the last success), so an account whose server is down is retried once per interval, not on every tick.
    Walks the tenant registry (or only ``tenant_ids``, e.g. for a scheduler that owns a shard of tenants) and
    queries each tenant under its own RLS context (no bypass needed).
    """
    current = now if now is not None else now_ms()
    if tenant_ids is None:
        with ctx.db.system_session() as session:
            tenant_ids = list(session.execute(select(Tenant.tenant_id)).scalars())
    last_attempt = (
        select(SyncRun.account_id, func.max(SyncRun.created_at).label("at")).group_by(SyncRun.account_id).subquery()
    )
    due: list[tuple[uuid.UUID, uuid.UUID]] = []
    for tenant_id in tenant_ids:
        with ctx.db.tenant_session(tenant_id) as session:
            rows = session.execute(
                select(EmailAccount.id, EmailAccount.last_sync_at, last_attempt.c.at, EmailAccount.sync_interval)
                .outerjoin(last_attempt, last_attempt.c.account_id == EmailAccount.id)
                .where(
                    EmailAccount.tenant_id == tenant_id,
                    EmailAccount.deleted_at.is_(None),
                    EmailAccount.is_enabled.is_(True),
                    EmailAccount.is_sync_enabled.is_(True),
                )
            ).all()
        for account_id, last_sync_at, attempted_at, interval in rows:
            last = max(last_sync_at or 0, attempted_at or 0)
            if last == 0 or current - last >= interval * 1000:
                due.append((tenant_id, account_id))
    return due


def fail_interrupted_runs(ctx: ServiceContext) -> int:
    """Mark runs left ``queued``/``running`` by a stopped process as failed and clear ``isSyncing``.

    Only for the embedded default, where one process owns every run.  Returns how many runs were closed.
    """
    with ctx.db.system_session() as session:
        tenants = list(session.execute(select(Tenant.tenant_id)).scalars())
    closed = 0
    for tenant_id in tenants:
        with ctx.db.tenant_session(tenant_id) as session:
            runs = session.execute(
                select(SyncRun).where(SyncRun.tenant_id == tenant_id, SyncRun.state.in_(ACTIVE_STATES))
            ).scalars()
            for run in runs:
                run.state, run.error_kind, run.error = (
                    "failed",
                    "Interrupted",
                    "The service stopped during the sync",
                )
                run.finished_at = now_ms()
                closed += 1
                record_changes(session, tenant_id=tenant_id, account_id=run.account_id, kind="sync", updated=[run.id])
            for account in session.execute(
                select(EmailAccount).where(EmailAccount.tenant_id == tenant_id, EmailAccount.is_syncing.is_(True))
            ).scalars():
                account.is_syncing = False
    return closed
