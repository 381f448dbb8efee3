"""The rate limit costs one storage call per request (issue 11): with Redis, one script per request counts the hit
and gives the window the response's ``X-RateLimit-*`` headers report, and those headers are what Redis holds."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest
import redis
from apiflask import APIFlask

from tests.conftest import Caller
from tests.integration.api.conftest import create_account

pytestmark = pytest.mark.integration

LIMIT = 50
REDIS_DB = 8
REDIS_DB_URL = f"redis://127.0.0.1:6379/{REDIS_DB}"


class _Monitor:
    """Redis's ``MONITOR`` feed of commands sent by clients to database ``REDIS_DB`` (not those a script runs)."""

    def __init__(self) -> None:
        self.commands: list[str] = []
        self._client = redis.Redis.from_url(REDIS_DB_URL)
        self._monitor = self._client.monitor()
        self._monitor.connection.send_command("MONITOR")
        self._monitor.connection.read_response()  # OK: feeding from now on
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._stop = False
        self._thread.start()

    def _read(self) -> None:
        while not self._stop:
            try:
                event = self._monitor.next_command()
            except (redis.ConnectionError, ValueError, AttributeError):
                return
            if event["db"] == REDIS_DB and event["client_type"] != "lua":
                self.commands.append(event["command"])

    def settle(self) -> list[str]:
        """The commands seen until a marker command comes back through the feed."""
        marker = f"ECHO marker-{time.monotonic_ns()}"
        self._client.echo(marker.split(" ", 1)[1])
        deadline = time.monotonic() + 5
        while not any(command == marker for command in self.commands) and time.monotonic() < deadline:
            time.sleep(0.01)
        seen = [command for command in self.commands if not command.startswith("ECHO marker-")]
        self.commands.clear()
        return seen

    def close(self) -> None:
        self._stop = True
        self._monitor.connection.disconnect()
        self._client.close()


@pytest.fixture
def monitor() -> Iterator[_Monitor]:
    feed = _Monitor()
    yield feed
    feed.close()


def test_a_request_costs_one_redis_call_and_its_headers_are_the_counter_in_redis(
    app_with: Callable[..., APIFlask], caller: Caller, monitor: _Monitor
) -> None:
    client = app_with(REDIS_URL=REDIS_DB_URL).test_client()
    account_id = create_account(client, caller)["id"]  # request 1
    store = redis.Redis.from_url(REDIS_DB_URL)
    keys = [key for key in store.scan_iter(match=f"*{caller.user_id}*")]
    try:
        assert len(keys) == 1, "one counter for the user"
        for used in range(2, LIMIT + 1):
            monitor.settle()  # (and this test's own reads of Redis below)
            response = client.get(f"/api/v1/accounts/{account_id}", headers=caller.headers)
            assert response.status_code == 200
            commands = monitor.settle()
            assert len(commands) == 1 and commands[0].startswith("EVALSHA"), commands
            assert int(response.headers["X-RateLimit-Remaining"]) == LIMIT - used == LIMIT - int(store.get(keys[0]))
            expires = time.time() + store.pttl(keys[0]) / 1000
            assert abs(int(response.headers["X-RateLimit-Reset"]) - expires) <= 1.5
        monitor.settle()
        refused = client.get("/api/v1/accounts", headers=caller.headers)
        assert refused.status_code == 429 and refused.headers["X-RateLimit-Remaining"] == "0"
        assert len(monitor.settle()) == 1, "a refused request costs one call too"
        assert 0 < int(refused.headers["Retry-After"]) <= 60
    finally:
        store.delete(*keys)
        store.close()
