"""Push latency: from the delivery of a message to its first appearance in the HTTP API, IDLE push against interval
polling, in one run.

Two private Dovecots: one announces IDLE (RFC 2177), the other does not (``imap_capability`` without IDLE).  The
service runs as in ``email-service serve`` (waitress HTTP server, in-process job runner, scheduler ticking every
second, IDLE watchers in-process) with one account on each server: the first is watched with IDLE, the second is
polled by the scheduler every ``--poll-interval`` seconds (its ``syncInterval`` is set in the database, below the
API's 60 s minimum, so that the run stays short).

``--deliveries`` times, a message goes to each account over LMTP (RFC 2033), then the script waits a random
``--gap`` (so deliveries also arrive while a push-triggered sync is still running, as in real life).  A reader
polls ``GET /api/v1/accounts/{id}/messages`` every 50 ms and records when each subject first shows up.  A bare
imapclient IDLE session on the first account records when Dovecot announces each message (``raw_idle``: the
server's own notification delay, the floor for any IDLE client).

Prints p50/p90/p99/max per path and the ratios to ``raw_idle``; writes JSON (default
``bench/results/push_latency.json``).  Run::

    uv run python bench/push_latency.py [--deliveries 100] [--poll-interval 10] [--database sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from imapclient import IMAPClient
from sqlalchemy import func, select, update
from tests.support.dovecot import Dovecot
from waitress.server import create_server

from email_service.app import create_app
from email_service.models import EmailAccount, SyncRun
from email_service.services.context import ServiceContext, build_context
from email_service.sync.push_supervisor import push_supervisor
from email_service.tasks.runner import InProcessJobRunner
from sync_throughput import _drop_postgres, bench_settings

TENANT, USER = uuid.uuid4(), uuid.uuid4()
HEADERS = {"X-Tenant-ID": str(TENANT), "X-User-ID": str(USER), "Content-Type": "application/json"}


def _message(subject: str) -> bytes:
    return (
        f"From: Bench <bench@example.com>\r\nTo: User <user@example.com>\r\nSubject: {subject}\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@bench.example>\r\n\r\n{subject}: a short body.\r\n"
    ).encode()


class Api:
    """A keep-alive HTTP connection to the service under test."""

    def __init__(self, port: int) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.lock = threading.Lock()

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        with self.lock:
            self.connection.request(method, path, body=json.dumps(body) if body else None, headers=HEADERS)
            response = self.connection.getresponse()
            data = json.loads(response.read() or b"null")
        if response.status >= 300:
            raise RuntimeError(f"{method} {path}: {response.status} {data}")
        return data


def _create_account(api: Api, server: Dovecot, user: str, password: str) -> str:
    body = {
        "accountName": "bench",
        "emailAddress": user,
        "protocol": "imap",
        "hostname": server.host,
        "port": server.imap_port,
        "encryption": "none",
        "username": user,
        "password": password,
    }
    account_id: str = api.call("POST", "/api/v1/accounts", body)["id"]
    api.call("POST", f"/api/v1/accounts/{account_id}/sync")
    while api.call("GET", f"/api/v1/accounts/{account_id}/sync")["state"] not in ("succeeded", "failed"):
        time.sleep(0.1)
    return account_id


def _raw_idle(
    server: Dovecot, user: str, seen: dict[int, float], stop: threading.Event, ready: threading.Event
) -> None:
    """A bare IDLE client: ``seen[n]`` = when Dovecot announced ``EXISTS >= n``."""
    client = IMAPClient(server.host, port=server.imap_port, ssl=False, timeout=30)
    client.login(user, server.users[user])
    base = int(client.select_folder("INBOX", readonly=True)[b"EXISTS"])
    client.idle()
    ready.set()
    while not stop.is_set():
        for response in client.idle_check(timeout=0.5):
            if len(response) >= 2 and response[1] == b"EXISTS":
                now = time.perf_counter()
                for number in range(1, int(response[0]) - base + 1):
                    seen.setdefault(number, now)
    client.idle_done()
    client.logout()


def _reader(api: Api, accounts: dict[str, str], seen: dict[str, float], stop: threading.Event) -> None:
    """Poll each account's message list every 50 ms; ``seen[subject]`` = first time the API listed it."""
    while not stop.is_set():
        for account_id in accounts.values():
            for message in api.call("GET", f"/api/v1/accounts/{account_id}/messages?limit=100")["messages"]:
                seen.setdefault(message["subject"], time.perf_counter())
        time.sleep(0.05)


def _percentiles(values: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {
        "p50_ms": round(statistics.median(values) * 1000, 1),
        "p90_ms": round(cuts[89] * 1000, 1),
        "p99_ms": round(cuts[98] * 1000, 1),
        "max_ms": round(max(values) * 1000, 1),
        "mean_ms": round(statistics.fmean(values) * 1000, 1),
    }


def _run_counts(ctx: ServiceContext, account_id: str) -> dict[str, int]:
    with ctx.db.tenant_session(TENANT) as session:
        rows = session.execute(
            select(SyncRun.trigger, func.count())
            .where(SyncRun.account_id == uuid.UUID(account_id))
            .group_by(SyncRun.trigger)
        ).all()
    return {trigger: count for trigger, count in rows}


def _deliver_and_observe(
    args: argparse.Namespace,
    api: Api,
    accounts: dict[str, str],
    push: tuple[Dovecot, str],
    poll: tuple[Dovecot, str],
) -> dict[str, list[float]]:
    """Deliver ``args.deliveries`` messages to each account (``(server, user)`` of the pushed and of the polled
    one); return the latencies (seconds) per path."""
    (idle_server, push_user), (poll_server, poll_user) = push, poll
    raw_seen: dict[int, float] = {}
    api_seen: dict[str, float] = {}
    stop, ready = threading.Event(), threading.Event()
    threads = [
        threading.Thread(target=_raw_idle, args=(idle_server, push_user, raw_seen, stop, ready), daemon=True),
        threading.Thread(target=_reader, args=(api, accounts, api_seen, stop), daemon=True),
    ]
    for thread in threads:
        thread.start()
    ready.wait(30)
    delivered: dict[str, float] = {}
    rng = random.Random(args.seed)
    try:
        for number in range(1, args.deliveries + 1):
            idle_server.deliver(push_user, _message(f"push {number}"))
            delivered[f"push {number}"] = time.perf_counter()
            poll_server.deliver(poll_user, _message(f"poll {number}"))
            delivered[f"poll {number}"] = time.perf_counter()
            time.sleep(rng.uniform(*args.gap))
        deadline = time.perf_counter() + 2 * args.poll_interval + 30
        while len(api_seen) < len(delivered) and time.perf_counter() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
    missing = sorted(set(delivered) - set(api_seen))
    if missing:
        raise RuntimeError(f"never listed by the API: {missing[:5]} ...")
    numbers = range(1, args.deliveries + 1)
    return {
        "raw_idle": [raw_seen[n] - delivered[f"push {n}"] for n in numbers],
        "service_push": [api_seen[f"push {n}"] - delivered[f"push {n}"] for n in numbers],
        "service_poll": [api_seen[f"poll {n}"] - delivered[f"poll {n}"] for n in numbers],
    }


def measure(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Start the service and the servers, deliver, observe; return the latencies per path and the run counts."""
    settings, dropped = bench_settings(
        workdir, args.database, args.postgres_url, RATE_LIMIT="1000000 per minute", SCHEDULER_TICK_SECONDS="1"
    )
    runner = InProcessJobRunner(workers=settings.job_workers)
    ctx = build_context(settings, jobs=runner)
    runner.bind(ctx)
    http_server = create_server(create_app(context=ctx), host="127.0.0.1", port=0, threads=4)
    threading.Thread(target=http_server.run, daemon=True).start()
    api = Api(int(http_server.effective_port))  # type: ignore[union-attr]
    supervisor = push_supervisor(ctx)
    try:
        with Dovecot.start() as idle_server, Dovecot.start(without=("IDLE",)) as poll_server:
            push_user, push_password = idle_server.new_user()
            poll_user, poll_password = poll_server.new_user()
            accounts = {
                "service_push": _create_account(api, idle_server, push_user, push_password),
                "service_poll": _create_account(api, poll_server, poll_user, poll_password),
            }
            with ctx.db.tenant_session(TENANT) as session:
                session.execute(
                    update(EmailAccount)
                    .where(EmailAccount.id == uuid.UUID(accounts["service_poll"]))
                    .values(sync_interval=args.poll_interval)
                )
            supervisor.start()
            runner.start_scheduler()
            push_account = uuid.UUID(accounts["service_push"])
            while not (watcher := supervisor.watcher(push_account)) or not watcher.idling.is_set():
                time.sleep(0.05)
            time.sleep(2)  # the watcher's catch-up sync is over
            latencies = _deliver_and_observe(args, api, accounts, (idle_server, push_user), (poll_server, poll_user))
            runs = {name: _run_counts(ctx, account_id) for name, account_id in accounts.items()}
            supervisor.stop()  # before the servers go away
    finally:
        supervisor.stop()
        runner.shutdown(wait=True)
        http_server.close()
        ctx.db.dispose()
        if dropped:
            _drop_postgres(args.postgres_url, dropped)
    return {"latencies": latencies, "runs": runs}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deliveries", type=int, default=100)
    parser.add_argument("--poll-interval", type=int, default=10, help="syncInterval of the polled account, seconds")
    parser.add_argument("--gap", type=float, nargs=2, default=(0.5, 1.5), help="random pause between deliveries, s")
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "push_latency.json"))
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="email-service-bench-"))
    try:
        measured = measure(args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    figures = {name: _percentiles(values) for name, values in measured["latencies"].items()}
    raw = figures["raw_idle"]
    print(
        f"{args.deliveries} deliveries per path, {args.database}, polling interval {args.poll_interval} s, "
        f"gaps {args.gap[0]}-{args.gap[1]} s\n"
    )
    print(f"{'path':<14}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'max ms':>9}{'p50 x raw':>11}{'p99 x raw':>11}")
    for name, row in figures.items():
        row["p50_x_raw_idle"] = round(row["p50_ms"] / raw["p50_ms"], 2)
        row["p99_x_raw_idle"] = round(row["p99_ms"] / raw["p99_ms"], 2)
        print(
            f"{name:<14}{row['p50_ms']:>9.0f}{row['p90_ms']:>9.0f}{row['p99_ms']:>9.0f}{row['max_ms']:>9.0f}"
            f"{row['p50_x_raw_idle']:>11.2f}{row['p99_x_raw_idle']:>11.2f}"
        )
    print(f"\nsync runs by trigger: {measured['runs']}")
    results = {
        "deliveries": args.deliveries,
        "database": args.database,
        "poll_interval_s": args.poll_interval,
        "gap_s": list(args.gap),
        "paths": figures,
        "runs_by_trigger": measured["runs"],
    }
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2))
    print(f"written to {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
