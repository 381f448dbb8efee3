"""Sending through the API: 1,000 messages of about 5 KB through ``POST /accounts/{id}/send``, the outbox and the
``send_outbox_item`` jobs to a local aiosmtpd, against the seed-002 handler alone, in one run.

* ``api_outbox``: the service as ``email-service serve`` runs it (waitress HTTP server, the in-process job runner
  with ``JOB_WORKERS`` threads, ``SEND_UNDO_SECONDS=0``) on SQLite and, unless ``--no-postgres``, on PostgreSQL;
  an IMAP account on a private Dovecot (synced first, so Sent is known: each success also stores the Sent copy's
  row and its APPEND action, written back by the syncback job meanwhile).  ``--clients`` threads post the messages.
  Latency: from the start of the HTTP call to the moment the SMTP server answered 250 to its DATA (recorded by the
  server process, matched by Subject).
* ``handler``: :class:`SMTPProtocolHandler` alone (its pool, the same AUTH, the same 5 KB text), ``send_message``
  from ``JOB_WORKERS`` threads; latency from the call to the server's 250.

aiosmtpd runs in its own process (this script with ``--smtp-server``), accepting any AUTH and discarding the mail.
Prints msg/s, the ratio and p50/p99 latencies; writes JSON (default ``bench/results/send_api.json``).  Timings are
reported, never asserted (DESIGN.md section 11).  Run::

    uv run python bench/send_api.py [--count 1000] [--clients 4] [--no-postgres]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

HOST = "127.0.0.1"
BODY = ("The quarterly numbers are in; see the summary below and reply with questions.\n" * 64)[:5000]
_SUBJECT = re.compile(rb"^Subject: (bench-\S+)", re.MULTILINE)


def serve_smtp(port: int, log_path: str) -> None:
    """The SMTP server process: accept any AUTH, record ``<subject> <epoch seconds>`` of each 250, discard."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    log = open(log_path, "a", buffering=1)  # noqa: SIM115 (lives as long as the process)

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            found = _SUBJECT.search(envelope.content)
            log.write(f"{found.group(1).decode() if found else '-'} {time.time():.6f}\n")
            return "250 OK"

    def accept(*_args: Any) -> AuthResult:
        return AuthResult(success=True, handled=False)

    controller = Controller(Handler(), hostname=HOST, port=port, authenticator=accept, auth_require_tls=False)
    controller.start()
    threading.Event().wait()


def _server_times(log_path: Path) -> dict[str, float]:
    times = {}
    for line in log_path.read_text().splitlines():
        subject, _, stamp = line.rpartition(" ")
        times[subject] = float(stamp)
    return times


def _wait_for(log_path: Path, subjects: set[str], timeout: float = 600.0) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        times = _server_times(log_path)
        if subjects <= set(times):
            return times
        time.sleep(0.05)
    raise SystemExit(f"the SMTP server got {len(subjects & set(_server_times(log_path)))} of {len(subjects)}")


def _summary(started: dict[str, float], done: dict[str, float]) -> dict[str, Any]:
    latencies = sorted((done[s] - started[s]) * 1000 for s in started)
    elapsed = max(done[s] for s in started) - min(started.values())
    return {
        "messages": len(started),
        "seconds": round(elapsed, 3),
        "msg_per_s": round(len(started) / elapsed, 1),
        "p50_ms": round(statistics.median(latencies), 1),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1], 1),
    }


def run_handler(port: int, log_path: Path, count: int, workers: int, tag: str, paced_count: int) -> dict[str, Any]:
    """The seed-002 handler alone, ``workers`` threads sharing its pool."""
    from email_service.protocols.net import HostPolicy
    from email_service.protocols.smtp import SMTPDeliveryStatus, SMTPProtocolHandler

    handler = SMTPProtocolHandler(
        HOST,
        port,
        username="bench@bench.example",
        password="x",
        encryption="none",
        pool_size=workers,
        host_policy=HostPolicy.from_allowlist([HOST]),  # the local server on loopback, as the service allows it
    )
    started: dict[str, float] = {}

    def one(index: int) -> None:
        subject = f"bench-{tag}-{index}"
        started[subject] = time.time()
        result = handler.send_message(["bob@bench.example"], subject, BODY, from_address="Bench <bench@bench.example>")
        assert result.status is SMTPDeliveryStatus.SUCCESS, result

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, range(count)))
    summary = _summary(started, _wait_for(log_path, set(started)))
    paced = {f"bench-{tag}-paced-{index}": 0.0 for index in range(paced_count)}
    for subject in paced:  # one at a time, as the API's paced run
        paced[subject] = time.time()
        handler.send_message(["bob@bench.example"], subject, BODY, from_address="Bench <bench@bench.example>")
    handler.close()
    summary["paced"] = _summary(paced, _wait_for(log_path, set(paced)))
    return summary


class Service:
    """The service on one database, serving HTTP from a thread, with the in-process job runner."""

    def __init__(self, workdir: Path, database: str, admin_url: str, workers: int) -> None:
        from tests.support.services import free_port
        from waitress.server import create_server

        from email_service.app import create_app
        from email_service.services.context import build_context
        from email_service.tasks.runner import InProcessJobRunner
        from sync_throughput import bench_settings

        settings, self.dropped = bench_settings(
            workdir,
            database,
            admin_url,
            SCHEDULER_ENABLED="false",
            RATE_LIMIT="1000000 per minute",
            SEND_UNDO_SECONDS="0",
            JOB_WORKERS=str(workers),
            # Rate-limit counters in Redis (db 10): the in-memory storage of `limits` races on concurrent requests.
            REDIS_URL="redis://127.0.0.1:6379/10",
        )
        self.admin_url = admin_url
        self.runner = InProcessJobRunner(workers=workers)
        self.ctx = build_context(settings, jobs=self.runner)
        self.runner.bind(self.ctx)
        self.port = free_port()
        self.server = create_server(create_app(context=self.ctx), host=HOST, port=self.port, threads=8)
        threading.Thread(target=self.server.run, daemon=True).start()
        self.headers = {"X-Tenant-ID": str(uuid.uuid4()), "X-User-ID": str(uuid.uuid4())}

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        headers = {**self.headers, "Content-Type": "application/json"}
        request = urllib.request.Request(f"http://{HOST}:{self.port}/api/v1{path}", data, headers, method=method)
        with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310 (http to 127.0.0.1)
            return json.loads(response.read())

    def close(self) -> None:
        from sync_throughput import _drop_postgres

        self.server.close()
        self.runner.shutdown(wait=True)
        self.ctx.db.dispose()
        if self.dropped:
            _drop_postgres(self.admin_url, self.dropped)


def run_api(
    server: Any, smtp_port: int, log_path: Path, database: str, args: argparse.Namespace, workdir: Path
) -> dict[str, Any]:
    """``count`` sends through the API and the outbox on ``database``; the clock runs to each server 250."""
    user, password = server.new_user()
    service = Service(workdir, database, args.postgres_url, args.workers)
    try:
        account = service.call("POST", "/accounts", {
            "accountName": "Bench", "emailAddress": user, "protocol": "imap", "hostname": server.host,
            "port": server.imap_port, "encryption": "none", "username": user, "password": password,
            "smtpHostname": HOST, "smtpPort": smtp_port, "smtpEncryption": "none",
            "saveSentCopy": not args.no_sent_copy,
        })["id"]  # fmt: skip
        service.call("POST", f"/accounts/{account}/sync")
        while service.call("GET", f"/accounts/{account}/sync")["state"] not in ("succeeded", "failed"):
            time.sleep(0.1)
        started: dict[str, float] = {}

        def one(index: int) -> None:
            subject = f"bench-{database}-{index}"
            body = {"to": [{"email": "bob@bench.example"}], "subject": subject, "textBody": BODY}
            started[subject] = time.time()
            assert service.call("POST", f"/accounts/{account}/send", body)["status"] == "queued"

        with ThreadPoolExecutor(args.clients) as pool:
            list(pool.map(one, range(args.count)))
        summary = _summary(started, _wait_for(log_path, set(started)))
        sent = service.call("GET", f"/outbox?accountId={account}&status=sent&limit=1")["pagination"]["total"]
        summary["outbox_sent"] = sent
        paced: dict[str, float] = {}
        for index in range(args.paced):  # one at a time: the latency of an idle service
            subject = f"bench-{database}-paced-{index}"
            body = {"to": [{"email": "bob@bench.example"}], "subject": subject, "textBody": BODY}
            paced[subject] = time.time()
            item = service.call("POST", f"/accounts/{account}/send", body)["outboxId"]
            while service.call("GET", f"/outbox/{item}")["status"] != "sent":
                time.sleep(0.002)
        summary["paced"] = _summary(paced, _wait_for(log_path, set(paced)))
        return summary
    finally:
        service.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=4, help="HTTP client threads")
    parser.add_argument("--workers", type=int, default=2, help="JOB_WORKERS (and handler threads)")
    parser.add_argument("--paced", type=int, default=100, help="messages sent one at a time for idle latency")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-sent-copy", action="store_true", help="saveSentCopy false: no Sent row, no APPEND")
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "send_api.json"))
    parser.add_argument("--smtp-server", nargs=2, metavar=("PORT", "LOG"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.smtp_server:
        serve_smtp(int(args.smtp_server[0]), args.smtp_server[1])
        return 0

    from tests.support.dovecot import Dovecot
    from tests.support.services import free_port

    workdir = Path(tempfile.mkdtemp(prefix="email-service-bench-"))
    log_path = workdir / "smtp.log"
    log_path.touch()
    port = free_port()
    smtp = subprocess.Popen([sys.executable, __file__, "--smtp-server", str(port), str(log_path)])
    results: dict[str, Any] = {
        "count": args.count,
        "clients": args.clients,
        "workers": args.workers,
        "sent_copy": not args.no_sent_copy,
        "runs": {},
    }
    try:
        time.sleep(1.5)
        results["runs"]["handler"] = run_handler(port, log_path, args.count, args.workers, "handler", args.paced)
        with Dovecot.start() as server:
            for database in ["sqlite"] + ([] if args.no_postgres else ["postgresql"]):
                results["runs"][f"api_outbox_{database}"] = run_api(server, port, log_path, database, args, workdir)
    finally:
        smtp.terminate()
        smtp.wait()
    base = results["runs"]["handler"]
    header = f"{'run':<24}{'msg/s':>9}{'x handler':>11}{'p50 ms':>9}{'p99 ms':>9}{'idle p50':>10}{'idle p99':>10}"
    print("\n" + header)
    for name, run in results["runs"].items():
        run["ratio_to_handler"] = round(run["msg_per_s"] / base["msg_per_s"], 3)
        run["paced"]["p50_ratio_to_handler"] = round(run["paced"]["p50_ms"] / base["paced"]["p50_ms"], 2)
        print(
            f"{name:<24}{run['msg_per_s']:>9.1f}{run['ratio_to_handler']:>11.2f}{run['p50_ms']:>9.1f}"
            f"{run['p99_ms']:>9.1f}{run['paced']['p50_ms']:>10.1f}{run['paced']['p99_ms']:>10.1f}"
        )
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2))
    print(f"\nwritten to {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
