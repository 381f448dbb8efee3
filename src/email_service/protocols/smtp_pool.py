"""Thread-safe pool of authenticated SMTP connections, keyed by the whole credential identity (seed 002).

Identity (:class:`PoolKey`): host (case-insensitive), port, username, encryption, account id, CA bundle, EHLO
name, host policy and a keyed digest of the secret (password or OAuth token).  Connections are never shared between
identities (DESIGN.md section 8).  When a request arrives for an identity whose secret changed, the idle
connections authenticated with the old secret are closed at once.

``max_connections`` bounds the live connections (idle + in use) **per identity**; a request beyond it waits up
to ``wait_timeout`` seconds for a release, then raises :class:`PoolExhausted`.  A connection is checked before
it is handed out: past ``stale_timeout`` seconds since it was opened, or ``idle_timeout`` seconds since it
was last released, it is closed; otherwise a NOOP (RFC 5321 section 4.1.1.9) must answer 250, or it is closed
and replaced.  Network I/O (connect, NOOP, QUIT) never happens while the pool lock is held.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import smtplib
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from email_service.protocols.errors import ConnectionFailed
from email_service.protocols.net import PUBLIC_ONLY, HostPolicy
from email_service.protocols.smtp_connect import SMTPConnectionSettings, close_quietly, open_connection
from email_service.protocols.smtp_types import SMTPEncryption

__all__ = ["PoolExhausted", "PoolKey", "SMTPConnectionPool"]

log = logging.getLogger(__name__)

Connector = Callable[[SMTPConnectionSettings], smtplib.SMTP]


class PoolExhausted(ConnectionFailed):
    """Every connection of this identity stayed in use for ``wait_timeout`` seconds; retry later."""


@dataclass(frozen=True)
class PoolKey:
    """The identity a pooled connection is authenticated as (the secret only as a keyed digest, no repr)."""

    host: str
    port: int
    username: str | None
    encryption: SMTPEncryption
    account_id: str | None
    ca_bundle: str | None
    local_hostname: str | None
    host_policy: HostPolicy
    secret_digest: str = field(repr=False)

    @property
    def identity(self) -> tuple[Any, ...]:
        """Everything but the secret: keys differing only in the secret are one account, secret changed."""
        return (
            self.host,
            self.port,
            self.username,
            self.encryption,
            self.account_id,
            self.ca_bundle,
            self.local_hostname,
            self.host_policy,
        )


@dataclass(eq=False)
class _Entry:
    conn: smtplib.SMTP
    key: PoolKey
    created: float
    last_used: float
    generation: int


class SMTPConnectionPool:
    """Pool of ready (connected, secured, authenticated) :class:`smtplib.SMTP` connections (seed 002).

    Args:
        max_connections: live connections allowed per identity (>= 1).
        idle_timeout: seconds a released connection may sit unused before it is closed instead of reused.
        stale_timeout: seconds after opening after which a connection is closed instead of reused.
        wait_timeout: seconds :meth:`get_connection` waits when the identity is at ``max_connections``.
        connector: opens one connection (default
            :func:`~email_service.protocols.smtp_connect.open_connection`).
        clock: monotonic clock in seconds (injectable for tests).
    """

    def __init__(
        self,
        max_connections: int = 10,
        idle_timeout: float = 300.0,
        stale_timeout: float = 3600.0,
        *,
        wait_timeout: float = 30.0,
        connector: Connector = open_connection,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        if idle_timeout <= 0 or stale_timeout <= 0 or wait_timeout < 0:
            raise ValueError("idle_timeout and stale_timeout must be positive, wait_timeout not negative")
        self.max_connections = max_connections
        self.idle_timeout = float(idle_timeout)
        self.stale_timeout = float(stale_timeout)
        self.wait_timeout = float(wait_timeout)
        self._connector = connector
        self._clock = clock
        self._cond = threading.Condition(threading.Lock())
        self._idle: dict[PoolKey, list[_Entry]] = {}
        self._in_use: dict[int, _Entry] = {}
        self._live: Counter[PoolKey] = Counter()
        self._generation = 0
        self._digest_key = secrets.token_bytes(32)
        self._counters: Counter[str] = Counter()

    def __repr__(self) -> str:
        return (
            f"SMTPConnectionPool(max_connections={self.max_connections}, idle_timeout={self.idle_timeout}, "
            f"stale_timeout={self.stale_timeout})"
        )

    def __enter__(self) -> SMTPConnectionPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close_all()

    def key_for(self, settings: SMTPConnectionSettings) -> PoolKey:
        """The pool identity of ``settings`` (secret digested with a per-pool random HMAC key)."""
        secret = f"{settings.password or ''}\0{settings.oauth2_token or ''}".encode()
        digest = hmac.new(self._digest_key, secret, hashlib.sha256).hexdigest()
        return PoolKey(
            settings.host.lower(),
            settings.port,
            settings.username,
            settings.encryption,
            settings.account_id,
            settings.ca_bundle,
            settings.local_hostname,
            settings.host_policy,
            digest,
        )

    def get_connection(
        self,
        host: str,
        port: int,
        username: str | None = None,
        password: str | None = None,
        encryption: SMTPEncryption | str = SMTPEncryption.STARTTLS,
        *,
        account_id: str | None = None,
        ca_bundle: str | None = None,
        timeout: float = 30.0,
        oauth2_token: str | None = None,
        local_hostname: str | None = None,
        host_policy: HostPolicy = PUBLIC_ONLY,
    ) -> smtplib.SMTP:
        """Return a ready connection for this identity, reused when a healthy one is idle (seed 002).

        ``encryption`` as a string is read in the seed-002 vocabulary (``tls`` = STARTTLS).  ``host_policy``
        says which non-public hosts may be dialled (default none).  Give the connection back with
        :meth:`release_connection`.

        Raises:
            HostNotAllowed: the host is refused by ``host_policy``; nothing was dialled.
            PoolExhausted: the identity stayed at ``max_connections`` for ``wait_timeout`` seconds.
            ConnectionFailed, TLSError, AuthenticationFailed, ProtocolError: opening a new connection failed.
        """
        settings = SMTPConnectionSettings(
            host=host,
            port=port,
            encryption=SMTPEncryption.parse(encryption),
            username=username,
            password=password,
            oauth2_token=oauth2_token,
            account_id=account_id,
            ca_bundle=ca_bundle,
            timeout=timeout,
            local_hostname=local_hostname,
            host_policy=host_policy,
        )
        return self.acquire(settings)

    def acquire(self, settings: SMTPConnectionSettings) -> smtplib.SMTP:
        """:meth:`get_connection` for prepared settings; same contract."""
        key = self.key_for(settings)
        deadline = self._clock() + self.wait_timeout
        while True:
            entry = self._claim(key, deadline)
            if entry is None:
                return self._open(key, settings)
            if self._is_alive(entry.conn):
                with self._cond:
                    self._counters["reused"] += 1
                return entry.conn
            log.info("Pooled SMTP connection to %s:%s failed NOOP; replacing it", key.host, key.port)
            self._discard(entry, "closed_dead")

    def release_connection(self, host: str, port: int, connection: smtplib.SMTP, *, discard: bool = False) -> None:
        """Give a connection from :meth:`get_connection` back (seed 002).

        Args:
            host, port: must match the connection's identity.
            connection: the connection.
            discard: close it instead of keeping it (use after a connection error or an unknown state).

        Raises:
            ValueError: ``host``/``port`` do not match the connection.
        """
        with self._cond:
            entry = self._in_use.get(id(connection))
            if entry is not None and (entry.key.host, entry.key.port) != (host.lower(), port):
                raise ValueError(f"Connection belongs to {entry.key.host}:{entry.key.port}, not {host}:{port}")
            if entry is None:
                doomed = True
            else:
                del self._in_use[id(connection)]
                now = self._clock()
                doomed = discard or entry.generation != self._generation or self._too_old(entry, now)
                if doomed:
                    reason = "closed_stale" if self._too_old(entry, now) else "closed_shutdown"
                    self._forget(entry, "closed_discarded" if discard else reason)
                else:
                    entry.last_used = now
                    self._idle.setdefault(entry.key, []).append(entry)
                self._cond.notify()
        if doomed:
            close_quietly(connection)

    def close_all(self) -> None:
        """Close every idle connection now; connections in use are closed when released (seed 002).

        The pool stays usable afterwards.
        """
        with self._cond:
            self._generation += 1
            doomed = [entry for entries in self._idle.values() for entry in entries]
            self._idle.clear()
            for entry in doomed:
                self._forget(entry, "closed_shutdown")
            self._cond.notify_all()
        for entry in doomed:
            close_quietly(entry.conn)

    def get_stats(self) -> dict[str, int | float]:
        """Counters and current sizes (seed 002), JSON-safe.

        Keys: ``max_connections``, ``idle_timeout``, ``stale_timeout``, ``identities`` (with live
        connections), ``idle``, ``in_use``, ``live``, and the running totals ``created``, ``reused``,
        ``waited``, ``closed_idle``, ``closed_stale``, ``closed_dead``, ``closed_superseded`` (secret
        changed), ``closed_discarded``, ``closed_shutdown``.
        """
        with self._cond:
            stats: dict[str, int | float] = {
                "max_connections": self.max_connections,
                "idle_timeout": self.idle_timeout,
                "stale_timeout": self.stale_timeout,
                "identities": sum(1 for count in self._live.values() if count > 0),
                "idle": sum(len(entries) for entries in self._idle.values()),
                "in_use": len(self._in_use),
                "live": sum(self._live.values()),
            }
            for name in (
                "created",
                "reused",
                "waited",
                "closed_idle",
                "closed_stale",
                "closed_dead",
                "closed_superseded",
                "closed_discarded",
                "closed_shutdown",
            ):
                stats[name] = self._counters[name]
            return stats

    # -- internals; every method named _locked_* expects self._cond to be held -----------------------------

    def _too_old(self, entry: _Entry, now: float) -> bool:
        return now - entry.created > self.stale_timeout

    def _forget(self, entry: _Entry, reason: str) -> None:
        self._live[entry.key] -= 1
        if self._live[entry.key] <= 0:
            del self._live[entry.key]
        self._counters[reason] += 1

    def _locked_sweep(self, key: PoolKey, doomed: list[_Entry]) -> None:
        now = self._clock()
        for idle_key in list(self._idle):
            superseded = idle_key != key and idle_key.identity == key.identity
            keep: list[_Entry] = []
            for entry in self._idle[idle_key]:
                if superseded:
                    reason = "closed_superseded"
                elif self._too_old(entry, now):
                    reason = "closed_stale"
                elif now - entry.last_used > self.idle_timeout:
                    reason = "closed_idle"
                else:
                    keep.append(entry)
                    continue
                self._forget(entry, reason)
                doomed.append(entry)
            if keep:
                self._idle[idle_key] = keep
            else:
                del self._idle[idle_key]
        if doomed:
            self._cond.notify_all()

    def _claim(self, key: PoolKey, deadline: float) -> _Entry | None:
        """Take an idle entry of ``key`` (marked in use) or reserve a slot for a new one (``None``)."""
        doomed: list[_Entry] = []
        try:
            with self._cond:
                while True:
                    self._locked_sweep(key, doomed)
                    entries = self._idle.get(key)
                    if entries:
                        entry = entries.pop()
                        if not entries:
                            del self._idle[key]
                        self._in_use[id(entry.conn)] = entry
                        return entry
                    if self._live[key] < self.max_connections:
                        self._live[key] += 1
                        return None
                    remaining = deadline - self._clock()
                    if remaining <= 0:
                        raise PoolExhausted(
                            f"All {self.max_connections} SMTP connections to {key.host}:{key.port} for this "
                            f"account stayed busy for {self.wait_timeout:g} s"
                        )
                    self._counters["waited"] += 1
                    self._cond.wait(remaining)
        finally:
            for entry in doomed:
                close_quietly(entry.conn)

    def _open(self, key: PoolKey, settings: SMTPConnectionSettings) -> smtplib.SMTP:
        try:
            conn = self._connector(settings)
        except BaseException:
            with self._cond:
                self._live[key] -= 1
                if self._live[key] <= 0:
                    del self._live[key]
                self._cond.notify()
            raise
        now = self._clock()
        with self._cond:
            self._in_use[id(conn)] = _Entry(conn, key, now, now, self._generation)
            self._counters["created"] += 1
        return conn

    def _discard(self, entry: _Entry, reason: str) -> None:
        with self._cond:
            self._in_use.pop(id(entry.conn), None)
            self._forget(entry, reason)
            self._cond.notify()
        close_quietly(entry.conn)

    @staticmethod
    def _is_alive(conn: smtplib.SMTP) -> bool:
        try:
            code, _ = conn.noop()
        except (smtplib.SMTPException, OSError):
            return False
        return code == 250
