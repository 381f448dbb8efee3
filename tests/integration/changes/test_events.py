"""``GET /api/v1/events`` over a real HTTP connection to ``email-service serve`` (issue 12): a message IDLE pushes
arrives as an event within 2 s (the issue's bound: delivery -> IDLE -> sync -> commit -> event), a dropped connection
resumed with ``Last-Event-ID`` misses nothing and repeats nothing, heartbeats, and the refusals.

The server runs on a private database (SQLite file, or a PostgreSQL database under RLS) so that its push watchers
see only this test's account; heartbeats every second here (``EVENTS_HEARTBEAT_SECONDS``).
"""

from __future__ import annotations

import json
import socket
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from email_service.models import PushLease, SyncRun
from email_service.security.tokens import create_jwt_token
from email_service.services.context import ServiceContext, build_context
from tests.conftest import make_settings
from tests.integration.push.conftest import new_message
from tests.support.databases import migrated_database
from tests.support.dovecot import Dovecot
from tests.support.services import ServiceProcess, free_port, wait_until

pytestmark = pytest.mark.integration


class Served:
    """``email-service serve`` on a private database, and a caller's token."""

    def __init__(self, process: ServiceProcess, port: int, private: ServiceContext) -> None:
        self.process, self.port, self.private = process, port, private
        self.tenant_id, self.user_id = uuid.uuid4(), uuid.uuid4()
        token = create_jwt_token(private.tokens, tenant_id=self.tenant_id, user_id=self.user_id)
        self.headers = {"Authorization": f"Bearer {token}"}

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        headers = {**self.headers, **({"Content-Type": "application/json"} if data else {})}
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/api/v1{path}", data=data, method=method, headers=headers
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")

    def stream(self, last_event_id: str | None = None, **headers: str) -> EventStream:
        return EventStream(self.port, {**self.headers, **headers}, last_event_id)


class EventStream:
    """One text/event-stream connection over a plain socket (HTTP/1.0: no chunked framing to undo), read event by
    event; ``status`` and ``headers`` of the answer, ``comments`` counts heartbeats."""

    def __init__(self, port: int, headers: dict[str, str], last_event_id: str | None, path: str = "/api/v1/events"):
        headers = {**headers, **({"Last-Event-ID": last_event_id} if last_event_id else {})}
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        lines = [f"GET {path} HTTP/1.0", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items()), "", ""]
        self.sock.sendall("\r\n".join(lines).encode())
        self.file = self.sock.makefile("rb")
        self.status = int(self.file.readline().split()[1])
        self.headers: dict[str, str] = {}
        while (line := self.file.readline().decode().strip()) != "":
            name, _, value = line.partition(":")
            self.headers[name.lower()] = value.strip()
        self.comments = 0
        self.retry = ""

    def next(self, timeout: float = 10.0) -> dict[str, Any]:
        """The next event ``{"id", "event", "data"}``; raises ``TimeoutError`` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        fields: dict[str, Any] = {}
        while True:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                raw = self.file.readline()
            except TimeoutError:
                raise TimeoutError("no event in time") from None
            if not raw:
                raise ConnectionError("the server closed the stream")
            line = raw.decode().rstrip("\n")
            if line.startswith(":"):
                self.comments += 1
            elif line == "" and "event" in fields:
                fields["data"] = json.loads(fields["data"])
                return fields
            elif line == "":
                self.retry = fields.get("retry", self.retry)
                fields = {}
            elif line:
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
            if time.monotonic() > deadline:
                raise TimeoutError("no event in time")

    def until(self, predicate: Any, timeout: float) -> list[dict[str, Any]]:
        """Events read until one satisfies ``predicate`` (included); ``TimeoutError`` after ``timeout`` s."""
        deadline, seen = time.monotonic() + timeout, []
        while True:
            event = self.next(max(0.01, deadline - time.monotonic()))
            seen.append(event)
            if predicate(event):
                return seen

    def drop(self) -> None:
        """Close the connection abruptly (the client went away)."""
        self.file.close()
        self.sock.close()


@pytest.fixture
def served(tmp_path: Path, ctx: ServiceContext) -> Iterator[Served]:
    with migrated_database(tmp_path, "events") as urls:
        settings = make_settings(tmp_path / "setup", urls)
        private = build_context(settings)
        port = free_port()
        env = {
            "EMAIL_SERVICE_DATA_DIR": str(tmp_path / "data"),
            "DATABASE_URL": urls[1],
            "DATABASE_MIGRATION_URL": urls[0],
            "JWT_SECRET_KEY": settings.jwt_secret_key,
            "CREDENTIAL_ENCRYPTION_KEYS": ",".join(settings.credential_keys),
            "PUSH_LEASE_SECONDS": "2",
            "EVENTS_HEARTBEAT_SECONDS": "1",
            "EVENTS_MAX_STREAMS": "4",
            "SCHEDULER_ENABLED": "false",
            "RATE_LIMIT": "100000 per minute",
            "MAIL_TIMEOUT_SECONDS": "10",
        }
        process = ServiceProcess(["serve", "--port", str(port)], env, tmp_path / "serve.log").start()
        try:
            wait_until(lambda: _healthy(port), what="serve answers /health")
            yield Served(process, port, private)
        except AssertionError:
            print(process.output()[-4000:])
            raise
        finally:
            process.stop()
            private.db.dispose()


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _account(served: Served, dovecot: Dovecot) -> tuple[str, str]:
    user, password = dovecot.new_user()
    dovecot.append(user, "INBOX", new_message("first"))
    body = {
        "accountName": "events",
        "emailAddress": user,
        "protocol": "imap",
        "hostname": dovecot.host,
        "port": dovecot.imap_port,
        "encryption": "none",
        "username": user,
        "password": password,
    }
    status, created = served.call("POST", "/accounts", body)
    assert status == 201, created
    return str(created["id"]), user


def _watching(served: Served, dovecot: Dovecot, account_id: str, user: str) -> bool:
    """The in-process push watcher holds the account's lease, its catch-up sync has ended, and only the IDLE
    connection is open on the server."""
    with served.private.db.tenant_session(served.tenant_id) as session:
        leased = session.execute(select(PushLease.account_id)).scalars().all()
        states = session.execute(select(SyncRun.state, SyncRun.trigger)).all()
    pushed = any(trigger == "push" and state == "succeeded" for state, trigger in states)
    active = any(state in ("queued", "running") for state, _trigger in states)
    return [str(a) for a in leased] == [account_id] and pushed and not active and dovecot.imap_sessions(user) == 1


def _entries(served: Served, account_id: str, since: str) -> dict[str, list[str]]:
    status, body = served.call("GET", f"/accounts/{account_id}/changes?since={since}&maxChanges=5000")
    assert status == 200, body
    return body["messages"]


def _settled_state(served: Served, account_id: str) -> str:
    """The account's state once nothing runs and it has not moved for a second (write-back and the syncs the
    write-back's own IDLE notifications cause are over)."""

    def quiet() -> str | None:
        with served.private.db.tenant_session(served.tenant_id) as session:
            if session.execute(select(SyncRun.id).where(SyncRun.state.in_(("queued", "running")))).first():
                return None
        first = served.call("GET", f"/accounts/{account_id}/folders")[1]["state"]
        time.sleep(1.0)
        second = served.call("GET", f"/accounts/{account_id}/folders")[1]["state"]
        return str(first) if first == second else None

    return str(wait_until(quiet, what="the account at rest"))


def _listed(served: Served, account_id: str, subject: str) -> bool:
    status, body = served.call("GET", f"/accounts/{account_id}/messages")
    return status == 200 and subject in {m["subject"] for m in body["messages"]}


def test_a_pushed_message_arrives_within_2_s_and_a_resumed_stream_misses_and_repeats_nothing(
    served: Served, dovecot: Dovecot
) -> None:
    account_id, user = _account(served, dovecot)
    stream = served.stream()
    opening = stream.next()
    assert opening["event"] == "state" and list(opening["data"]["accounts"]) == [account_id]
    start_state = opening["data"]["accounts"][account_id]
    wait_until(lambda: _watching(served, dovecot, account_id, user), what="IDLE watcher settled")
    before = _settled_state(served, account_id)
    seen = stream.until(lambda e: e["data"].get("newState") == before, timeout=10) if before != start_state else []

    dovecot.deliver(user, new_message("pushed"))  # the bound: on the stream within 2 s
    seen += stream.until(lambda e: e["event"] == "message" and bool(e["data"]["created"]), timeout=2.0)
    created = seen[-1]["data"]["created"]
    status, listed = served.call("GET", f"/accounts/{account_id}/messages")
    assert status == 200 and created[0] in {m["id"] for m in listed["messages"] if m["subject"] == "pushed"}

    last_id = seen[-1]["id"]
    stream.drop()  # the client goes away; changes go on meanwhile
    assert served.call("PATCH", f"/messages/{created[0]}", {"isRead": True})[0] == 200
    dovecot.deliver(user, new_message("while away"))
    wait_until(lambda: _listed(served, account_id, "while away"), what="second push synced")
    end_state = _settled_state(served, account_id)

    resumed = served.stream(last_event_id=last_id)
    reopening = resumed.next()
    assert reopening["event"] == "state" and reopening["id"] == last_id
    tail = resumed.until(lambda e: e["data"].get("newState") == end_state, timeout=10)
    with pytest.raises(TimeoutError):
        resumed.next(timeout=1.5)  # and nothing after the end state
    events = [e for e in [*seen, *tail] if e["event"] != "state"]
    transitions = [(e["data"]["oldState"], e["data"]["newState"]) for e in events]
    chain = [start_state] + [new for _old, new in transitions]
    assert [old for old, _new in transitions] == chain[:-1], "each event starts where the previous one ended"
    assert len(set(chain)) == len(chain), "no state twice: nothing repeated"
    assert chain[-1] == end_state, "nothing missed"
    got = {i for e in events if e["event"] == "message" for key in ("created", "updated") for i in e["data"][key]}
    expected = _entries(served, account_id, start_state)
    assert got >= set(expected["created"]) | set(expected["updated"])
    assert {e["event"] for e in events} >= {"message", "folder", "sync"}


def test_heartbeats_limits_and_refusals(served: Served) -> None:
    stream = served.stream()  # a caller without accounts: a state event, then only heartbeats
    assert stream.status == 200 and stream.headers["content-type"].startswith("text/event-stream")
    assert stream.next() == {"id": "", "event": "state", "data": {"accounts": {}}}
    assert stream.retry == "2000"  # EventSource reconnects after 2 s
    with pytest.raises(TimeoutError):
        stream.next(timeout=2.5)  # nothing happens: only heartbeats
    assert stream.comments >= 2

    others = [served.stream() for _ in range(3)]  # EVENTS_MAX_STREAMS=4
    full = served.stream()
    assert full.status == 503 and full.headers.get("retry-after")
    for dropped in (stream, *others):
        dropped.drop()  # found gone at its next heartbeat write, and its slot freed

    def alias_stream() -> EventStream | None:
        opened = EventStream(served.port, served.headers, None, path="/api/events")
        if opened.status == 200:
            return opened
        opened.drop()
        return None

    assert wait_until(alias_stream, what="slots freed by dropped streams").next()["event"] == "state"
    assert served.stream(last_event_id="not-an-id").status == 400
    assert EventStream(served.port, {}, None).status == 401
    assert EventStream(served.port, served.headers, None, path="/api/v1/events?since=1").status == 400
