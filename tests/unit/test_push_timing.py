"""Timing decisions of the IDLE watcher (RFC 2177), with an injectable clock: IDLE is re-issued before 29 minutes,
never later; a watcher stops once its lease is not renewed; reconnects back off with jitter; every announced
change and every (re)connection asks for a sync, and a failed request is retried soon.

The session here is a scripted stand-in for :class:`~email_service.protocols.imap_idle.IdleSession` whose waits
advance the fake clock instead of sleeping: a 29-minute wait cannot be produced by a real server in a test.  The
same loop against a real Dovecot is in tests/integration/push/.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType

import pytest

from email_service.protocols.errors import ConnectionFailed
from email_service.protocols.imap import ImapEndpoint
from email_service.protocols.imap_idle import IdleEvent
from email_service.sync.push import (
    LEASE_LOST,
    MAX_IDLE_SECONDS,
    NO_IDLE,
    REQUEST_RETRY_SECONDS,
    STOPPED,
    IdleRenewal,
    IdleWatcher,
    ReconnectBackoff,
    WatchTarget,
)

ENDPOINT = ImapEndpoint("imap.example.test", 993, "tls", "user", "secret")
TARGET = WatchTarget(uuid.uuid4(), uuid.uuid4(), ENDPOINT)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class ScriptedSession:
    """Records every command with the fake time; ``events_at`` maps a time to the events announced then."""

    clock: FakeClock
    idle: bool = True
    events_at: dict[float, list[IdleEvent]] = field(default_factory=dict)
    until: float = float("inf")
    on_until: Callable[[], None] | None = None
    log: list[tuple[float, str]] = field(default_factory=list)
    waits: list[float] = field(default_factory=list)

    @property
    def supports_idle(self) -> bool:
        return self.idle

    def __enter__(self) -> ScriptedSession:
        self.log.append((self.clock.now, "connect"))
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.log.append((self.clock.now, "logout"))

    def select(self, name: str, readonly: bool = True) -> object:
        self.log.append((self.clock.now, f"examine {name}"))
        return None

    def idle_start(self) -> list[IdleEvent]:
        self.log.append((self.clock.now, "IDLE"))
        return []

    def idle_done(self) -> list[IdleEvent]:
        self.log.append((self.clock.now, "DONE"))
        return []

    def idle_wait(self, timeout: float) -> list[IdleEvent]:
        assert timeout >= 0
        self.waits.append(timeout)
        due = [t for t in self.events_at if self.clock.now < t <= self.clock.now + timeout]
        if due:
            self.clock.now = min(due)
            return self.events_at.pop(self.clock.now)
        self.clock.now += timeout
        if self.clock.now >= self.until and self.on_until is not None:
            self.on_until()
        return []

    def wake(self) -> None:
        pass


def _watcher(
    session: ScriptedSession,
    clock: FakeClock,
    *,
    renew_after: float = 25 * 60,
    lease_valid_until: float = float("inf"),
    on_change: Callable[[str], object] | None = None,
) -> IdleWatcher:
    return IdleWatcher(
        TARGET,
        on_change=on_change or (lambda reason: None),
        renew_after=renew_after,
        lease_valid_until=lease_valid_until,
        clock=clock,
        session_factory=lambda endpoint: session,
        backoff=ReconnectBackoff(base=0.001, cap=0.002),
    )


def test_renewal_is_due_renew_after_seconds_after_each_start() -> None:
    clock = FakeClock()
    renewal = IdleRenewal(25 * 60, clock)
    renewal.started()
    clock.now += 25 * 60 - 1
    assert not renewal.due() and renewal.remaining() == pytest.approx(1)
    clock.now += 1
    assert renewal.due() and renewal.remaining() == 0
    renewal.started()
    assert not renewal.due() and renewal.remaining() == pytest.approx(25 * 60)


@pytest.mark.parametrize("renew_after", [0, -1, MAX_IDLE_SECONDS, 30 * 60])
def test_renewal_refuses_periods_rfc_2177_does_not_allow(renew_after: float) -> None:
    with pytest.raises(ValueError, match="renew_after"):
        IdleRenewal(renew_after)


def test_idle_is_reissued_before_29_minutes_for_hours() -> None:
    clock = FakeClock()
    stop_at = clock.now + 3 * 3600
    session = ScriptedSession(clock, until=stop_at)
    watcher = _watcher(session, clock)
    session.on_until = watcher.stop

    assert watcher.run() == STOPPED
    commands = [name for _, name in session.log]
    assert commands[:3] == ["connect", "examine INBOX", "IDLE"] and commands[-1] == "logout"
    starts = [t for t, name in session.log if name == "IDLE"]
    ends = [t for t, name in session.log if name == "DONE"]
    assert len(starts) == len(ends) + 1 == 3 * 60 // 25 + 1  # one renewal every 25 minutes for 3 hours
    for started, ended in zip(starts, ends, strict=False):
        assert ended - started == pytest.approx(25 * 60)
        assert ended - started < MAX_IDLE_SECONDS
    assert max(session.waits) <= 25 * 60  # no single wait could overshoot the renewal


def test_every_announced_change_and_the_connection_ask_for_a_sync() -> None:
    clock = FakeClock()
    exists = [IdleEvent("EXISTS", "5"), IdleEvent("RECENT", "1")]
    session = ScriptedSession(
        clock,
        events_at={clock.now + 10: exists, clock.now + 70: [IdleEvent("EXPUNGE", "2")]},
        until=clock.now + 600,
    )
    reasons: list[tuple[float, str]] = []
    watcher = _watcher(session, clock, on_change=lambda reason: reasons.append((clock.now, reason)))
    session.on_until = watcher.stop

    assert watcher.run() == STOPPED
    start = 1000.0
    assert reasons == [(start, "connected"), (start + 10, "changed"), (start + 70, "changed")]


def test_a_failed_sync_request_is_retried_within_seconds_not_at_the_next_renewal() -> None:
    clock = FakeClock()
    session = ScriptedSession(clock, events_at={clock.now + 10: [IdleEvent("EXISTS", "1")]}, until=clock.now + 120)
    calls: list[tuple[float, str]] = []

    def on_change(reason: str) -> None:
        calls.append((clock.now, reason))
        if len(calls) in (2, 3):  # the request for the new mail fails twice (database unreachable)
            raise RuntimeError("database unreachable")

    watcher = _watcher(session, clock, on_change=on_change)
    session.on_until = watcher.stop
    assert watcher.run() == STOPPED
    assert [reason for _, reason in calls] == ["connected", "changed", "changed", "changed"]
    assert calls[2][0] - calls[1][0] <= REQUEST_RETRY_SECONDS
    assert calls[3][0] - calls[2][0] <= REQUEST_RETRY_SECONDS


def test_a_watcher_whose_lease_is_not_renewed_stops_by_itself_in_time() -> None:
    clock = FakeClock()
    session = ScriptedSession(clock)
    watcher = _watcher(session, clock, lease_valid_until=clock.now + 45)
    assert watcher.run() == LEASE_LOST
    assert clock.now == pytest.approx(1045)  # no wait ran past the lease
    assert [name for _, name in session.log][-1] == "logout"


def test_a_renewed_lease_keeps_the_watcher_running() -> None:
    clock = FakeClock()
    session = ScriptedSession(clock)
    watcher = _watcher(session, clock, lease_valid_until=clock.now + 45)
    renewed_at: list[float] = []

    def supervisor_renews() -> None:
        if not renewed_at:
            renewed_at.append(clock.now)
            watcher.extend_lease(clock.now + 45)

    session.until, session.on_until = clock.now + 30, supervisor_renews
    assert watcher.run() == LEASE_LOST
    assert renewed_at and renewed_at[0] <= 1045
    assert clock.now == pytest.approx(renewed_at[0] + 45)


def test_a_server_without_idle_ends_the_watcher_so_the_account_is_polled() -> None:
    clock = FakeClock()
    session = ScriptedSession(clock, idle=False)
    assert _watcher(session, clock).run() == NO_IDLE
    assert [name for _, name in session.log] == ["connect", "logout"]


def test_a_lost_connection_reconnects_and_asks_for_a_catch_up_sync() -> None:
    clock = FakeClock()
    session = ScriptedSession(clock)
    attempts = [0]
    reasons: list[str] = []

    def factory(endpoint: ImapEndpoint) -> ScriptedSession:
        attempts[0] += 1
        if attempts[0] <= 2:
            raise ConnectionFailed("connection refused")
        return session

    watcher = IdleWatcher(
        TARGET,
        on_change=reasons.append,
        renew_after=60,
        lease_valid_until=float("inf"),
        clock=clock,
        session_factory=factory,
        backoff=ReconnectBackoff(base=0.001, cap=0.002),
    )
    session.until, session.on_until = clock.now + 5, watcher.stop
    assert watcher.run() == STOPPED
    assert attempts[0] == 3 and reasons == ["connected"]


def test_reconnect_delays_grow_to_the_cap_with_jitter_and_reset() -> None:
    backoff = ReconnectBackoff(base=1.0, cap=60.0, rng=random.Random(7))
    delays = [backoff.next_delay() for _ in range(10)]
    for attempt, delay in enumerate(delays, start=1):
        full = min(60.0, 2.0 ** (attempt - 1))
        assert full / 2 <= delay <= full
    assert max(delays) <= 60.0 and delays[-1] >= 30.0
    assert len({round(d, 6) for d in delays[6:]}) > 1, "capped delays still differ (jitter)"
    backoff.reset()
    assert backoff.next_delay() <= 1.0


def test_two_watchers_of_one_server_do_not_reconnect_in_step() -> None:
    first, second = ReconnectBackoff(rng=random.Random(1)), ReconnectBackoff(rng=random.Random(2))
    assert [first.next_delay() for _ in range(5)] != [second.next_delay() for _ in range(5)]
