"""SMTPConnectionPool against aiosmtpd: reuse, stale/idle/dead replacement, identities, limits, threads."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from email_service.protocols.smtp import (
    PoolExhausted,
    SMTPConnectionPool,
    SMTPDeliveryStatus,
    SMTPEncryption,
    SMTPProtocolHandler,
)
from tests.support.hosts import LOOPBACK_PEERS

pytestmark = pytest.mark.integration

NONE = SMTPEncryption.NONE


def _handler(server: Any, pool: SMTPConnectionPool | None = None, **kwargs: Any) -> SMTPProtocolHandler:
    return SMTPProtocolHandler(
        server.host,
        server.port,
        encryption=NONE,
        from_address="sender@example.com",
        pool=pool,
        timeout=5,
        sleep=kwargs.pop("sleep", _no_sleep),
        local_hostname="client.test",
        host_policy=LOOPBACK_PEERS,
        **kwargs,
    )


def _no_sleep(delay: float) -> None:
    raise AssertionError(f"unexpected sleep({delay})")


def _send(handler: SMTPProtocolHandler, subject: str = "pooled") -> Any:
    return handler.send_message(["ann@example.com"], subject, text_body="x")


def test_two_sends_share_one_connection(smtp_server: Callable[..., Any]) -> None:
    server = smtp_server()
    with _handler(server) as handler:
        assert _send(handler).status is SMTPDeliveryStatus.SUCCESS
        assert _send(handler).status is SMTPDeliveryStatus.SUCCESS
        stats = handler.pool.get_stats()
    assert server.connections == 1
    assert len(server.handler.messages) == 2
    assert stats["created"] == 1 and stats["reused"] == 1 and stats["idle"] == 1


def test_get_connection_returns_the_same_object_after_release(smtp_server: Callable[..., Any]) -> None:
    server = smtp_server()
    with SMTPConnectionPool(max_connections=2) as pool:
        first = pool.get_connection(server.host, server.port, encryption="none", timeout=5, host_policy=LOOPBACK_PEERS)
        pool.release_connection(server.host, server.port, first)
        second = pool.get_connection(server.host, server.port, encryption="none", timeout=5, host_policy=LOOPBACK_PEERS)
        assert second is first
        with pytest.raises(ValueError, match="belongs to"):
            pool.release_connection("other.example", server.port, second)
        pool.release_connection(server.host, server.port, second)
    assert server.connections == 1


def test_stale_connection_is_replaced(smtp_server: Callable[..., Any]) -> None:
    server = smtp_server()
    pool = SMTPConnectionPool(stale_timeout=0.2)
    with _handler(server, pool) as handler:
        _send(handler)
        time.sleep(0.3)
        assert _send(handler).status is SMTPDeliveryStatus.SUCCESS
    stats = pool.get_stats()
    assert server.connections == 2
    assert stats["closed_stale"] == 1 and stats["created"] == 2
    pool.close_all()


def test_idle_connection_is_replaced(smtp_server: Callable[..., Any]) -> None:
    server = smtp_server()
    pool = SMTPConnectionPool(idle_timeout=0.2)
    with _handler(server, pool) as handler:
        _send(handler)
        time.sleep(0.3)
        assert _send(handler).status is SMTPDeliveryStatus.SUCCESS
    assert server.connections == 2
    assert pool.get_stats()["closed_idle"] == 1
    pool.close_all()


def test_connection_dropped_by_the_server_is_replaced(smtp_server: Callable[..., Any]) -> None:
    server = smtp_server(timeout=0.2)  # aiosmtpd closes connections idle for 0.2 s
    with _handler(server) as handler:
        _send(handler)
        time.sleep(0.6)  # well past the server timeout, even on a loaded machine
        result = _send(handler)
        stats = handler.pool.get_stats()
    assert result.status is SMTPDeliveryStatus.SUCCESS and result.retry_count == 0
    assert stats["closed_dead"] == 1 and stats["created"] == 2
    assert len(server.handler.messages) == 2


def test_pinned_connection_dropped_by_the_server_is_retried(
    smtp_server: Callable[..., Any],
) -> None:
    server = smtp_server(timeout=0.2)
    sleeps: list[float] = []
    with _handler(server, sleep=sleeps.append) as handler:
        assert handler.connect() is True
        time.sleep(0.6)  # well past the server timeout, even on a loaded machine
        result = _send(handler)
    assert result.status is SMTPDeliveryStatus.SUCCESS and result.retry_count == 1 and sleeps == [1]
    assert len(server.handler.messages) == 1


def test_identities_never_share_connections(smtp_server: Callable[..., Any]) -> None:
    server = smtp_server()
    pool = SMTPConnectionPool()
    handlers = [
        _handler(server, pool, account_id="account-a", username="user", password="secret"),
        _handler(server, pool, account_id="account-b", username="user", password="secret"),
        _handler(server, pool, account_id="account-a"),  # same account, no credentials: another identity
    ]
    for handler in handlers:
        assert _send(handler).status is SMTPDeliveryStatus.SUCCESS
    assert server.connections == 3
    assert pool.get_stats()["identities"] == 3
    same = {"timeout": 5, "local_hostname": "client.test", "host_policy": LOOPBACK_PEERS}
    a = pool.get_connection(server.host, server.port, "user", "secret", NONE, account_id="account-a", **same)
    b = pool.get_connection(server.host, server.port, "user", "secret", NONE, account_id="account-b", **same)
    assert a is not b
    pool.release_connection(server.host, server.port, a)
    pool.release_connection(server.host, server.port, b)
    assert server.connections == 3  # both were reused from their own identity
    pool.close_all()


def test_changed_password_does_not_reuse_the_old_connection(smtp_server: Callable[..., Any]) -> None:
    server = smtp_server()
    pool = SMTPConnectionPool()
    old = pool.get_connection(
        server.host,
        server.port,
        "user",
        "secret",
        NONE,
        account_id="a",
        timeout=5,
        local_hostname="client.test",
        host_policy=LOOPBACK_PEERS,
    )
    pool.release_connection(server.host, server.port, old)
    with _handler(server, pool, account_id="a", username="user", password="changed") as handler:
        result = _send(handler)
    assert result.status is SMTPDeliveryStatus.FAILED and result.smtp_code == 535  # really re-authenticated
    assert pool.get_stats()["closed_superseded"] == 1
    assert server.connections == 2
    pool.close_all()


def test_exhausted_identity_waits_then_raises(smtp_server: Callable[..., Any]) -> None:
    server = smtp_server()
    pool = SMTPConnectionPool(max_connections=1, wait_timeout=0.2)
    held = pool.get_connection(server.host, server.port, encryption=NONE, timeout=5, host_policy=LOOPBACK_PEERS)
    started = time.monotonic()
    with pytest.raises(PoolExhausted):
        pool.get_connection(server.host, server.port, encryption=NONE, timeout=5, host_policy=LOOPBACK_PEERS)
    assert 0.15 < time.monotonic() - started < 2
    releaser = threading.Timer(0.1, pool.release_connection, args=(server.host, server.port, held))
    releaser.start()
    assert pool.get_connection(server.host, server.port, encryption=NONE, timeout=5, host_policy=LOOPBACK_PEERS) is held
    releaser.join()
    assert pool.get_stats()["waited"] >= 2
    pool.close_all()


def test_close_all_closes_idle_and_later_released_connections(smtp_server: Callable[..., Any]) -> None:
    server = smtp_server()
    pool = SMTPConnectionPool()
    idle = pool.get_connection(server.host, server.port, encryption=NONE, timeout=5, host_policy=LOOPBACK_PEERS)
    busy = pool.get_connection(server.host, server.port, encryption=NONE, timeout=5, host_policy=LOOPBACK_PEERS)
    pool.release_connection(server.host, server.port, idle)
    pool.close_all()
    assert idle.sock is None
    pool.release_connection(server.host, server.port, busy)
    assert busy.sock is None
    assert pool.get_stats()["live"] == 0 and pool.get_stats()["closed_shutdown"] == 2


def test_concurrent_sends_from_eight_threads(smtp_server: Callable[..., Any]) -> None:
    server = smtp_server()
    with _handler(server, pool_size=3) as handler:

        def worker(thread: int) -> list[Any]:
            return [_send(handler, f"t{thread}-m{n}") for n in range(5)]

        with ThreadPoolExecutor(max_workers=8) as executor:
            results = [result for batch in executor.map(worker, range(8)) for result in batch]
        stats = handler.pool.get_stats()
    assert [result.status for result in results] == [SMTPDeliveryStatus.SUCCESS] * 40
    subjects = sorted(received.message["Subject"] for received in server.handler.messages)
    assert subjects == sorted(f"t{t}-m{n}" for t in range(8) for n in range(5))
    assert server.connections <= 3 and stats["created"] <= 3
    assert len({result.message_id for result in results}) == 40
