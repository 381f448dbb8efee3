"""Server-Sent Events fan-out: from a change's commit to its event on every open stream (issue 12).

``email-service serve`` runs as in the embedded default (waitress, one process) with ``EVENTS_MAX_STREAMS`` above
``--streams`` and Redis pub/sub on (``REDIS_URL``, production's fan-out path).  This script opens ``--streams``
``GET /api/v1/events`` connections of one user over plain sockets (one reader thread each), then commits
``--changes`` changes of that user's account at ``--rate`` per second from its own process (each one transaction
through ``services.changes.record_changes``, as a Celery worker's sync would), so every wake-up crosses Redis.
For each change and stream: the time from the end of the change's COMMIT to the arrival of the event that carries
it (events may carry several changes when they come fast).  Same clock: commits and readers are in this process.

Reference in the same run: the round trip of ``GET /health`` on the same server (a bare endpoint).  Also the serve
process's RSS before the streams, with them open, and at the end.

Prints the table and writes JSON (default ``bench/results/events.json``).  Run::

    uv run python bench/events.py [--streams 200] [--changes 1000] [--rate 100] [--database sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import bisect
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from email_service.security.tokens import Principal, create_jwt_token
from email_service.services.accounts import create_account
from email_service.services.changes import record_changes
from email_service.services.context import build_context
from sync_throughput import _drop_postgres, bench_settings


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Reader(threading.Thread):
    """One event stream: ``arrivals`` = ``[(newState, monotonic time)]`` of the account's change events."""

    def __init__(self, port: int, token: str) -> None:
        super().__init__(daemon=True)
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=120)
        request = f"GET /api/v1/events HTTP/1.0\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n"
        self.sock.sendall(request.encode())
        self.file = self.sock.makefile("rb")
        self.status = int(self.file.readline().split()[1])
        while self.file.readline().strip():
            pass
        self.arrivals: list[tuple[int, float]] = []
        self.opened = threading.Event()

    def run(self) -> None:
        data = None
        try:
            for raw in self.file:
                now = time.monotonic()
                line = raw.decode().rstrip("\n")
                if line.startswith("data: "):
                    data = json.loads(line[6:])
                elif line == "" and data is not None:
                    if "newState" in data:
                        self.arrivals.append((int(data["newState"]), now))
                    else:
                        self.opened.set()  # the state event
                    data = None
        except (OSError, ValueError):
            return

    def close(self) -> None:
        self.sock.close()


def _health_round_trips(port: int, count: int) -> list[float]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    times = []
    for _ in range(count):
        start = time.perf_counter()
        connection.request("GET", "/health")
        connection.getresponse().read()
        times.append((time.perf_counter() - start) * 1000)
    connection.close()
    return times


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _start_serve(settings: Any, port: int, workdir: Path, streams: int, redis_url: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_", "TEST_"))}
    env.update(
        EMAIL_SERVICE_DATA_DIR=str(settings.data_dir),
        DATABASE_URL=settings.database_url,
        DATABASE_MIGRATION_URL=settings.database_migration_url,
        JWT_SECRET_KEY=settings.jwt_secret_key,
        CREDENTIAL_ENCRYPTION_KEYS=",".join(settings.credential_keys),
        REDIS_URL=redis_url,
        EVENTS_MAX_STREAMS=str(streams + 10),
        PUSH_IN_PROCESS="false",
        SCHEDULER_ENABLED="false",
        RATE_LIMIT="1000000 per minute",
        LOG_LEVEL="WARNING",
    )
    log = open(workdir / "serve.log", "wb")  # noqa: SIM115 - closed with the process
    process = subprocess.Popen(
        [sys.executable, "-m", "email_service.cli", "serve", "--port", str(port)], env=env, stdout=log, stderr=log
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            _health_round_trips(port, 1)
            return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("serve did not start: " + (workdir / "serve.log").read_text()[-2000:])


def measure(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    settings, dropped = bench_settings(workdir, args.database, args.admin_url, REDIS_URL=args.redis_url)
    ctx = build_context(settings)
    principal = Principal(uuid.uuid4(), uuid.uuid4(), "user")
    fields = {
        "account_name": "bench",
        "email_address": "bench@example.com",
        "protocol": "imap",
        "hostname": "127.0.0.1",
        "port": 1,
        "encryption": "none",
        "username": "bench",
    }
    account = create_account(ctx, principal=principal, fields=fields, password="x")
    token = create_jwt_token(ctx.tokens, tenant_id=principal.tenant_id, user_id=principal.user_id)
    port = _free_port()
    serve = _start_serve(settings, port, workdir, args.streams, args.redis_url)
    try:
        rss_idle = _rss_kib(serve.pid)
        readers = [Reader(port, token) for _ in range(args.streams)]
        assert all(r.status == 200 for r in readers), [r.status for r in readers if r.status != 200][:3]
        for reader in readers:
            reader.start()
        for reader in readers:
            reader.opened.wait(30)
        rss_open = _rss_kib(serve.pid)
        health = _health_round_trips(port, 200)
        committed: list[tuple[int, float]] = []
        interval, started = 1.0 / args.rate, time.monotonic()
        for index in range(args.changes):
            time.sleep(max(0.0, started + index * interval - time.monotonic()))
            with ctx.db.tenant_session(principal.tenant_id) as session:
                modseq = record_changes(
                    session,
                    tenant_id=principal.tenant_id,
                    account_id=account.id,
                    kind="message",
                    updated=[uuid.uuid4()],
                )
            committed.append((modseq, time.monotonic()))
        last = committed[-1][0]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(not r.arrivals or r.arrivals[-1][0] < last for r in readers):
            time.sleep(0.05)
        rss_end = _rss_kib(serve.pid)
        latencies, missing = [], 0
        for reader in readers:
            states = [state for state, _at in reader.arrivals]
            for modseq, at in committed:
                position = bisect.bisect_left(states, modseq)
                if position == len(states):
                    missing += 1
                    continue
                latencies.append((reader.arrivals[position][1] - at) * 1000)
        for reader in readers:
            reader.close()
    finally:
        serve.terminate()
        serve.wait(30)
        ctx.db.dispose()
        if dropped:
            _drop_postgres(args.admin_url, dropped)
    return {
        "database": args.database,
        "streams": args.streams,
        "changes": args.changes,
        "rate_per_s": args.rate,
        "deliveries": len(latencies),
        "missing": missing,
        "event_ms": {
            "p50": _pct(latencies, 0.5),
            "p90": _pct(latencies, 0.9),
            "p99": _pct(latencies, 0.99),
            "max": max(latencies),
            "mean": statistics.fmean(latencies),
        },
        "health_ms": {"p50": _pct(health, 0.5), "p99": _pct(health, 0.99)},
        "rss_mib": {"idle": rss_idle / 1024, "streams_open": rss_open / 1024, "end": rss_end / 1024},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--changes", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=100.0, help="changes committed per second")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/6")
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "events.json"))
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-events-"))
    try:
        report = measure(args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    event, health, rss = report["event_ms"], report["health_ms"], report["rss_mib"]
    streams, changes = report["streams"], report["changes"]
    print(f"{streams} streams, {changes} changes at {report['rate_per_s']:.0f}/s ({report['database']})")
    print(f"{'':28} {'p50':>9} {'p90':>9} {'p99':>9} {'max':>9}")
    print(
        f"{'commit -> event (ms)':28} {event['p50']:9.1f} {event['p90']:9.1f} {event['p99']:9.1f} {event['max']:9.1f}"
    )
    print(f"{'GET /health round trip (ms)':28} {health['p50']:9.2f} {'':9} {health['p99']:9.2f}")
    print(f"ratio event p50 / health p50: {event['p50'] / health['p50']:.1f}x")
    print(f"deliveries {report['deliveries']} (missing {report['missing']})")
    print(
        f"serve RSS MiB: idle {rss['idle']:.1f}, {streams} streams open {rss['streams_open']:.1f}, end {rss['end']:.1f}"
    )
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
