"""Which accounts this process watches with IDLE, and the watchers' threads (DESIGN.md sections 4 and 7).

A :class:`PushSupervisor` runs in the ``serve`` process (embedded default, ``PUSH_IN_PROCESS``) or in each
``email-service push`` process (production).  Every ``lease_seconds / 4`` it walks the tenants and, per tenant, in
one transaction:

1. reads the accounts that should be watched: not deleted, enabled, sync enabled, IMAP;
2. takes or renews the leases (:mod:`email_service.sync.push_lease`) of the accounts it watches and of new ones,
   as long as it runs fewer than ``max_connections`` watchers (``PUSH_MAX_CONNECTIONS``);
3. releases the leases of accounts deleted, disabled or switched off.

Then it stops the watchers of those accounts and of leases it lost, restarts a watcher whose account changed its
server or credentials (a fingerprint of host, port, encryption, username and the stored ciphertext), and starts
watchers for the leases it took.  Accounts beyond ``max_connections``, or whose lease another process holds, are
not watched here; accounts no process watches are polled at their interval by the scheduler, as every account is.

An account whose server offers no IDLE keeps its lease (so no other process tries it again and again) without a
connection, and is tried again after ``no_idle_recheck_seconds`` or when its server or credentials change.

A watcher may run until three quarters of a lease period after the last renewal that included it
(:meth:`IdleWatcher.extend_lease`); the database lets another process take the lease only after a full period, so
two processes never watch one account at the same time, even when this one cannot reach the database.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from email_service.models import EmailAccount, EmailCredential, Tenant
from email_service.protocols.imap import ImapEndpoint
from email_service.services.accounts import account_password
from email_service.services.connection_test import imap_endpoint
from email_service.services.context import ServiceContext
from email_service.services.sync_runs import enqueue_sync
from email_service.sync.push import INBOX, NO_IDLE, IdleWatcher, WatchTarget
from email_service.sync.push_lease import hold_leases, leases_held_elsewhere, release_leases

log = logging.getLogger("email_service.push")

#: Share of the lease period a watcher may run after the renewal that last included it.
LEASE_MARGIN = 0.75


def process_holder() -> str:
    """A holder name unique to this process: ``host:pid:random``."""
    return f"{socket.gethostname()[:120]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


@dataclass
class _Watch:
    tenant_id: uuid.UUID
    fingerprint: str
    watcher: IdleWatcher
    thread: threading.Thread


@dataclass
class _Polled:
    tenant_id: uuid.UUID
    fingerprint: str
    recheck_at: float


@dataclass(frozen=True)
class _Account:
    row: EmailAccount
    fingerprint: str


class PushSupervisor:
    """Runs this process's IDLE watchers under per-account leases (see the module docstring).

    Args:
        ctx: the service context (its job queue receives the push-triggered syncs).
        max_connections: watchers (IMAP connections) this process runs at most; 0 watches nothing.
        lease_seconds: lease period; the supervisor ticks every quarter of it.
        renew_after: seconds between IDLE renewals (< 29 minutes, RFC 2177).
        holder: this process's name in the lease table (default :func:`process_holder`).
        no_idle_recheck_seconds: when to try again an account whose server offered no IDLE.
        tenant_ids: watch only these tenants' accounts (a process that serves a shard of tenants); default all.
    """

    def __init__(
        self,
        ctx: ServiceContext,
        *,
        max_connections: int,
        lease_seconds: float,
        renew_after: float,
        holder: str | None = None,
        no_idle_recheck_seconds: float = 3600.0,
        tenant_ids: Collection[uuid.UUID] | None = None,
    ) -> None:
        self.ctx = ctx
        self.max_connections = max_connections
        self.lease_seconds = lease_seconds
        self.renew_after = renew_after
        self.holder = holder or process_holder()
        self.no_idle_recheck_seconds = no_idle_recheck_seconds
        self.tenant_ids = None if tenant_ids is None else frozenset(tenant_ids)
        self._watches: dict[uuid.UUID, _Watch] = {}
        self._polled: dict[uuid.UUID, _Polled] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def tick_seconds(self) -> float:
        """Seconds between two reconciliations: a quarter of the lease period."""
        return self.lease_seconds / 4

    # -- life cycle -----------------------------------------------------------------------------------------

    def start(self) -> None:
        """Reconcile now and then every :attr:`tick_seconds`, on a daemon thread."""

        def loop() -> None:
            while not self._stop.is_set():
                self.tick()
                self._stop.wait(self.tick_seconds)

        self._thread = threading.Thread(target=loop, name="email-push-supervisor", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the reconciliation and every watcher (DONE, LOGOUT), then release this process's leases."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        with self._lock:
            watches, self._watches = dict(self._watches), {}
            polled, self._polled = dict(self._polled), {}
        for watch in watches.values():
            watch.watcher.stop()
        for watch in watches.values():
            watch.thread.join(timeout)
        by_tenant: dict[uuid.UUID, list[uuid.UUID]] = {}
        for account_id, tenant_id in self._tenants_of(watches, polled).items():
            by_tenant.setdefault(tenant_id, []).append(account_id)
        for tenant_id, account_ids in by_tenant.items():
            try:
                with self.ctx.db.tenant_session(tenant_id) as session:
                    release_leases(session, account_ids=account_ids, holder=self.holder)
            except Exception:
                log.exception("push leases of tenant %s not released; they expire by themselves", tenant_id)

    @staticmethod
    def _tenants_of(watches: dict[uuid.UUID, _Watch], polled: dict[uuid.UUID, _Polled]) -> dict[uuid.UUID, uuid.UUID]:
        """``{account: tenant}`` of every lease this process holds."""
        return {a: w.tenant_id for a, w in watches.items()} | {a: p.tenant_id for a, p in polled.items()}

    # -- what runs ------------------------------------------------------------------------------------------

    def watched(self) -> set[uuid.UUID]:
        """Accounts with a running watcher (idling or reconnecting)."""
        with self._lock:
            return set(self._watches)

    def polled(self) -> set[uuid.UUID]:
        """Accounts leased here whose server offered no IDLE (polled at their interval)."""
        with self._lock:
            return set(self._polled)

    def watcher(self, account_id: uuid.UUID) -> IdleWatcher | None:
        """The running watcher of ``account_id``, if any."""
        with self._lock:
            watch = self._watches.get(account_id)
        return watch.watcher if watch else None

    # -- reconciliation -------------------------------------------------------------------------------------

    def tick(self) -> None:
        """One reconciliation of every tenant (see the module docstring); errors are logged, never raised."""
        try:
            with self.ctx.db.system_session() as session:
                tenants = list(session.execute(select(Tenant.tenant_id)).scalars())
        except Exception:
            log.exception("push supervisor could not list tenants")
            return
        if self.tenant_ids is not None:
            tenants = [t for t in tenants if t in self.tenant_ids]
        with self._lock:
            full = len(self._watches) >= self.max_connections
            ours = set(self._tenants_of(self._watches, self._polled).values())
        for tenant_id in tenants:
            if self._stop.is_set():
                return
            if full and tenant_id not in ours:
                continue  # nothing to renew there and no room for more
            try:
                self._tick_tenant(tenant_id)
            except Exception:
                log.exception("push supervisor tick failed for tenant %s", tenant_id)

    def _tick_tenant(self, tenant_id: uuid.UUID) -> None:
        started = time.monotonic()
        with self._lock:
            mine = {a: w.fingerprint for a, w in self._watches.items() if w.tenant_id == tenant_id}
            polled = {a: p for a, p in self._polled.items() if p.tenant_id == tenant_id}
            free = self.max_connections - len(self._watches)
        with self.ctx.db.tenant_session(tenant_id) as session:
            eligible = self._eligible(session, tenant_id)
            leased = set(mine) | set(polled)
            gone = leased - set(eligible)
            elsewhere = leases_held_elsewhere(session, tenant_id=tenant_id, holder=self.holder)
            changed = [a for a in mine if a in eligible and mine[a] != eligible[a].fingerprint]
            recheck = [
                a
                for a, p in polled.items()
                if a in eligible and (p.fingerprint != eligible[a].fingerprint or started >= p.recheck_at)
            ]
            new = [a for a in eligible if a not in leased and a not in elsewhere]
            endpoints = self._endpoints(session, eligible, changed, recheck + new, free=free)
            held = hold_leases(
                session,
                tenant_id=tenant_id,
                account_ids=(leased - gone) | set(endpoints),
                holder=self.holder,
                ttl_seconds=self.lease_seconds,
            )
            release_leases(session, account_ids=gone, holder=self.holder)
        self._apply(tenant_id, held, gone, endpoints, valid_until=started + LEASE_MARGIN * self.lease_seconds)

    def _eligible(self, session: Session, tenant_id: uuid.UUID) -> dict[uuid.UUID, _Account]:
        """Accounts to watch: not deleted, enabled, sync enabled, IMAP; with their server/credential fingerprint."""
        rows = session.execute(
            select(EmailAccount, EmailCredential.ciphertext)
            .outerjoin(EmailCredential, EmailCredential.id == EmailAccount.credential_id)
            .where(
                EmailAccount.tenant_id == tenant_id,
                EmailAccount.deleted_at.is_(None),
                EmailAccount.is_enabled.is_(True),
                EmailAccount.is_sync_enabled.is_(True),
                EmailAccount.protocol == "imap",
            )
        ).all()
        accounts: dict[uuid.UUID, _Account] = {}
        for account, ciphertext in rows:
            identity = "\0".join(
                (account.hostname, str(account.port), account.encryption, account.username, ciphertext or "")
            )
            accounts[account.id] = _Account(account, hashlib.sha256(identity.encode()).hexdigest())
        return accounts

    def _endpoints(
        self,
        session: Session,
        eligible: dict[uuid.UUID, _Account],
        restarts: list[uuid.UUID],
        starts: list[uuid.UUID],
        *,
        free: int,
    ) -> dict[uuid.UUID, tuple[str, ImapEndpoint]]:
        """``{account: (fingerprint, endpoint)}`` of the watchers to restart (their connection is replaced) and
        to start (at most ``free`` new connections).  An account whose password cannot be decrypted is logged and
        left to the scheduler."""
        endpoints: dict[uuid.UUID, tuple[str, ImapEndpoint]] = {}
        for account_id in [*restarts, *starts[: max(0, free)]]:
            account = eligible[account_id]
            try:
                endpoint = imap_endpoint(self.ctx, account.row, account_password(self.ctx, session, account.row))
            except Exception as exc:
                log.warning("account %s not watched: %s", account_id, type(exc).__name__)
                continue
            endpoints[account_id] = (account.fingerprint, endpoint)
        return endpoints

    def _apply(
        self,
        tenant_id: uuid.UUID,
        held: set[uuid.UUID],
        gone: set[uuid.UUID],
        endpoints: dict[uuid.UUID, tuple[str, ImapEndpoint]],
        *,
        valid_until: float,
    ) -> None:
        """Stop, extend, restart and start watchers after the tenant's leases were renewed."""
        with self._lock:
            if self._stop.is_set():
                return
            for account_id in [a for a, w in self._watches.items() if w.tenant_id == tenant_id]:
                watch = self._watches[account_id]
                if account_id in gone or account_id not in held or account_id in endpoints:
                    del self._watches[account_id]
                    watch.watcher.stop()
                else:
                    watch.watcher.extend_lease(valid_until)
            for account_id in [a for a, p in self._polled.items() if p.tenant_id == tenant_id]:
                if account_id in gone or account_id not in held or account_id in endpoints:
                    del self._polled[account_id]
            for account_id, (fingerprint, endpoint) in endpoints.items():
                if account_id in held:
                    self._start_watcher(tenant_id, account_id, fingerprint, endpoint, valid_until)

    def _start_watcher(
        self, tenant_id: uuid.UUID, account_id: uuid.UUID, fingerprint: str, endpoint: ImapEndpoint, valid_until: float
    ) -> None:
        """Start a watcher thread (the caller holds ``self._lock``)."""

        def request_sync(reason: str) -> None:
            run, created = enqueue_sync(
                self.ctx,
                tenant_id=tenant_id,
                account_id=account_id,
                trigger="push",
                principal=None,
                folder=INBOX,
                follow_up=True,
            )
            log.debug("push (%s) of account %s: run %s%s", reason, account_id, run.id, "" if created else " (active)")

        watcher = IdleWatcher(
            WatchTarget(tenant_id, account_id, endpoint),
            on_change=request_sync,
            renew_after=self.renew_after,
            lease_valid_until=valid_until,
        )
        thread = threading.Thread(target=self._run_watcher, args=(account_id,), name=f"email-push-{account_id.hex[:8]}")
        thread.daemon = True
        self._watches[account_id] = _Watch(tenant_id, fingerprint, watcher, thread)
        thread.start()

    def _run_watcher(self, account_id: uuid.UUID) -> None:
        with self._lock:
            watch = self._watches.get(account_id)
        if watch is None:
            return
        outcome = watch.watcher.run()
        with self._lock:
            if self._watches.get(account_id) is not watch:
                return  # stopped or replaced by the supervisor
            del self._watches[account_id]
            if outcome == NO_IDLE:
                recheck = time.monotonic() + self.no_idle_recheck_seconds
                self._polled[account_id] = _Polled(watch.tenant_id, watch.fingerprint, recheck)


def push_supervisor(ctx: ServiceContext) -> PushSupervisor:
    """The supervisor the settings describe: ``PUSH_MAX_CONNECTIONS``, ``PUSH_LEASE_SECONDS``,
    ``PUSH_IDLE_RENEW_SECONDS``."""
    settings = ctx.settings
    return PushSupervisor(
        ctx,
        max_connections=settings.push_max_connections,
        lease_seconds=settings.push_lease_seconds,
        renew_after=settings.push_idle_renew_seconds,
    )
