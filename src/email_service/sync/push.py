"""IDLE push (RFC 2177): one watcher per account keeps INBOX selected in IDLE and asks for a sync of INBOX as soon
as the server announces a change (DESIGN.md section 7).

An :class:`IdleWatcher` runs in its own thread on its own :class:`~email_service.protocols.imap_idle.IdleSession`
(the guarded connector, verified TLS, like every mail connection)::

    connect -> EXAMINE INBOX -> catch-up sync request -> IDLE --EXISTS/EXPUNGE/FETCH/VANISHED--> sync request
       ^                                                   |  \\--renewal due (before 29 min)--> DONE, IDLE again
       |                                                   v
       +---- backoff with jitter <---- connection lost, refused login, server error

* A change is reported through ``on_change`` (the supervisor queues a run with trigger ``push`` for INBOX through
  :func:`email_service.services.sync_runs.enqueue_sync` with ``follow_up=True``: if a run is already active, the
  new mail is fetched right after it).  A failed request is retried every few seconds until it goes through.
* Every (re)connection asks for a catch-up sync first: changes made while no IDLE was running are not announced.
* IDLE is ended and re-issued every ``renew_after`` seconds, below the 29 minutes of RFC 2177 section 3, so that
  neither the server nor a NAT on the way drops the connection as inactive (:class:`IdleRenewal`).
* Reconnects back off exponentially with jitter (:class:`ReconnectBackoff`); a connection that stayed up for a
  while resets the backoff.
* A server that does not announce IDLE ends the watcher with :data:`NO_IDLE`: that account is polled at its
  interval like any other.
* The watcher holds its account's lease only until ``lease_valid_until`` (monotonic seconds), which the supervisor
  moves forward on each renewal; past it, the watcher stops by itself (:data:`LEASE_LOST`), so that a process that
  cannot renew never watches an account that another process may have taken over.

Clock and session are injectable, so the timing decisions are unit-tested without waiting 29 minutes.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol

from email_service.errors import EmailServiceError
from email_service.protocols.imap import ImapEndpoint
from email_service.protocols.imap_idle import IdleEvent, IdleSession

log = logging.getLogger("email_service.push")

INBOX = "INBOX"
#: RFC 2177 section 3: a server may log out a client idle for 30 minutes; clients re-issue IDLE at least every 29.
MAX_IDLE_SECONDS = 29 * 60
#: How a watcher ended: asked to stop, the server offers no IDLE, or its lease ran out without renewal.
STOPPED, NO_IDLE, LEASE_LOST = "stopped", "no-idle", "lease-lost"
#: Seconds between retries of a sync request that failed (the database was unreachable, say).
REQUEST_RETRY_SECONDS = 5.0

Clock = Callable[[], float]


class IdleRenewal:
    """When to end and re-issue IDLE: ``renew_after`` seconds after each start (RFC 2177 section 3: < 29 min).

    ``clock`` returns monotonic seconds.  Raises ``ValueError`` for ``renew_after`` outside ``(0, 29 min)``.
    """

    def __init__(self, renew_after: float, clock: Clock = time.monotonic) -> None:
        if not 0 < renew_after < MAX_IDLE_SECONDS:
            raise ValueError(f"renew_after must be between 0 and {MAX_IDLE_SECONDS} seconds, got {renew_after}")
        self.renew_after = renew_after
        self._clock = clock
        self._deadline = clock() + renew_after

    def started(self) -> None:
        """IDLE was (re-)issued now."""
        self._deadline = self._clock() + self.renew_after

    def remaining(self) -> float:
        """Seconds until the renewal is due (0 when due)."""
        return max(0.0, self._deadline - self._clock())

    def due(self) -> bool:
        """True once ``renew_after`` seconds have passed since :meth:`started`."""
        return self._clock() >= self._deadline


class ReconnectBackoff:
    """Delays between reconnect attempts: ``base * 2**(n-1)`` capped at ``cap`` seconds, with "equal jitter" (half
    the delay fixed, half random), so that many watchers of one server that went down do not return in step.

    ``reset()`` after a connection that proved stable; ``rng`` is injectable for tests.
    """

    def __init__(self, base: float = 1.0, cap: float = 300.0, rng: random.Random | None = None) -> None:
        self.base, self.cap = base, cap
        self._rng = rng or random.Random()  # jitter, not a secret
        self._attempt = 0

    def next_delay(self) -> float:
        """The delay before the next attempt, in seconds; each call counts one more failure."""
        self._attempt += 1
        delay = min(self.cap, self.base * 2.0 ** (self._attempt - 1))
        return delay / 2 + float(self._rng.uniform(0, delay / 2))

    def reset(self) -> None:
        """Start again from ``base``."""
        self._attempt = 0


class IdleConnection(Protocol):
    """What the watcher needs of a session (:class:`IdleSession`); a context manager that connects."""

    @property
    def supports_idle(self) -> bool: ...

    def __enter__(self) -> IdleConnection: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    def select(self, name: str, readonly: bool = True) -> object: ...

    def idle_start(self) -> list[IdleEvent]: ...

    def idle_wait(self, timeout: float) -> list[IdleEvent]: ...

    def idle_done(self) -> list[IdleEvent]: ...

    def wake(self) -> None: ...


@dataclass(frozen=True)
class WatchTarget:
    """The account a watcher watches and how to reach its server."""

    tenant_id: uuid.UUID
    account_id: uuid.UUID
    endpoint: ImapEndpoint


class IdleWatcher:
    """Keeps one account's INBOX in IDLE and calls ``on_change(reason)`` for every announced change.

    Args:
        target: the account and its IMAP endpoint.
        on_change: asks for a sync of INBOX (``reason`` is ``"connected"`` or ``"changed"``); may raise, the request
            is then retried every :data:`REQUEST_RETRY_SECONDS`.
        renew_after: seconds between IDLE renewals (< 29 minutes).
        lease_valid_until: monotonic time until which the watcher may run (see :meth:`extend_lease`).
        stable_after: a connection that lasted this long resets the reconnect backoff.
        clock, session_factory, backoff: injectable for tests.

    :meth:`run` blocks until :meth:`stop`, a server without IDLE, or the lease running out; it returns
    :data:`STOPPED`, :data:`NO_IDLE` or :data:`LEASE_LOST`.
    """

    def __init__(
        self,
        target: WatchTarget,
        *,
        on_change: Callable[[str], object],
        renew_after: float,
        lease_valid_until: float,
        stable_after: float = 60.0,
        clock: Clock = time.monotonic,
        session_factory: Callable[[ImapEndpoint], IdleConnection] = IdleSession,
        backoff: ReconnectBackoff | None = None,
    ) -> None:
        self.target = target
        self._on_change = on_change
        self._renewal = IdleRenewal(renew_after, clock)
        self._lease_valid_until = lease_valid_until
        self._stable_after = stable_after
        self._clock = clock
        self._session_factory = session_factory
        self._backoff = backoff or ReconnectBackoff()
        self._stop = threading.Event()
        self._session: IdleConnection | None = None
        self._pending: str | None = None
        self.idling = threading.Event()  # set while IDLE is running (tests and status)

    # -- control (any thread) -------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask :meth:`run` to end: it sends DONE and LOGOUT and returns :data:`STOPPED` shortly."""
        self._stop.set()
        session = self._session
        if session is not None:
            session.wake()

    def extend_lease(self, valid_until: float) -> None:
        """The supervisor renewed the lease: the watcher may run until ``valid_until`` (monotonic seconds)."""
        self._lease_valid_until = max(self._lease_valid_until, valid_until)

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` was called."""
        return self._stop.is_set()

    # -- the loop (the watcher's thread) --------------------------------------------------------------------

    def run(self) -> str:
        """Connect, catch up, IDLE; reconnect with backoff until stopped (see the class docstring)."""
        account = self.target.account_id
        while not self._stop.is_set():
            if self._lease_left() <= 0:
                return LEASE_LOST
            connected_at: float | None = None
            try:
                with self._session_factory(self.target.endpoint) as session:
                    self._session = session
                    connected_at = self._clock()
                    if not session.supports_idle:
                        log.info("IMAP server of account %s offers no IDLE: the account is polled", account)
                        return NO_IDLE
                    session.select(INBOX, readonly=True)
                    self._request("connected")
                    outcome = self._idle(session)
                    if outcome is not None:
                        return outcome
            except EmailServiceError as exc:
                log.warning("IDLE watcher of account %s: %s: %s", account, type(exc).__name__, exc.message)
            except Exception:
                log.exception("IDLE watcher of account %s failed unexpectedly", account)
            finally:
                self._session = None
                self.idling.clear()
            if self._stop.is_set():
                break
            if connected_at is not None and self._clock() - connected_at >= self._stable_after:
                self._backoff.reset()
            delay = self._backoff.next_delay()
            log.info("IDLE watcher of account %s reconnects in %.1f s", account, delay)
            if self._stop.wait(min(delay, max(0.0, self._lease_left()))):
                break
        return STOPPED

    def _idle(self, session: IdleConnection) -> str | None:
        """IDLE until stopped (``None``: the caller ends cleanly) or the lease runs out (:data:`LEASE_LOST`)."""
        self._changed(session.idle_start())
        self._renewal.started()
        self.idling.set()
        while not self._stop.is_set():
            if self._lease_left() <= 0:
                return LEASE_LOST
            timeout = min(self._renewal.remaining(), self._lease_left())
            if self._pending is not None:
                timeout = min(timeout, REQUEST_RETRY_SECONDS)
            self._changed(session.idle_wait(timeout))
            if self._pending is not None:
                self._request(self._pending)
            if self._renewal.due() and not self._stop.is_set():
                self._changed(session.idle_done())
                self._changed(session.idle_start())
                self._renewal.started()
        return None

    def _changed(self, events: list[IdleEvent]) -> None:
        if events:
            self._request("changed")

    def _request(self, reason: str) -> None:
        """Ask for a sync; on failure remember it, so that the IDLE loop retries it soon."""
        try:
            self._on_change(reason)
            self._pending = None
        except Exception:
            log.exception("sync request of account %s failed; retrying", self.target.account_id)
            self._pending = reason

    def _lease_left(self) -> float:
        return self._lease_valid_until - self._clock()
