"""Write-back latency: a 1,000-message batch flag change, from the HTTP call until the server shows it, against a
raw imaplib ``UID STORE`` of the same UID set, in one run.

A private Dovecot holds ``--count`` messages in INBOX.  The service runs in this process as it does under
``email-service serve`` (waitress HTTP server, in-process job runner) on SQLite and, unless ``--no-postgres``,
on PostgreSQL; the account is registered and synced through the API first.  Then, in interleaved rounds:

* ``service``: ``POST /accounts/{id}/messages/batch`` with every message id and ``isRead`` (set and cleared in
  turn, so each round is a real change); the clock stops when a separate IMAP session sees every UID with the
  new ``\\Seen`` state (``UID SEARCH``, polled every 2 ms).  ``answer`` is when the HTTP answer arrived.
* ``raw_store``: ``UID STORE <the same set> +FLAGS/-FLAGS (\\Flagged)`` on an imaplib connection already logged in
  and with INBOX selected: the server's own cost of the change.
* ``raw_session``: the same STORE including connect, LOGIN, SELECT and LOGOUT (what a write-back job must do).

Prints the medians and ratios, and writes JSON (default ``bench/results/syncback.json``).  Run::

    uv run python bench/syncback.py [--count 1000] [--repeat 7] [--no-postgres]
"""

from __future__ import annotations

import argparse
import imaplib
import json
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tests.support.dovecot import Dovecot
from tests.support.services import free_port
from waitress.server import create_server

from email_service.app import create_app
from email_service.protocols.imap import sequence_set
from email_service.services.context import build_context
from email_service.tasks.runner import InProcessJobRunner
from sync_throughput import _drop_postgres, bench_settings

HEADERS = {"X-Tenant-ID": str(uuid.uuid4()), "X-User-ID": str(uuid.uuid4()), "Content-Type": "application/json"}


class Service:
    """The service on one database, serving HTTP on a free port from a thread, with the in-process job runner."""

    def __init__(self, workdir: Path, database: str, admin_url: str) -> None:
        settings, self.dropped = bench_settings(
            workdir, database, admin_url, SCHEDULER_ENABLED="false", RATE_LIMIT="100000 per minute"
        )
        self.admin_url = admin_url
        self.runner = InProcessJobRunner(workers=2)
        self.ctx = build_context(settings, jobs=self.runner)
        self.runner.bind(self.ctx)
        self.port = free_port()
        self.server = create_server(create_app(context=self.ctx), host="127.0.0.1", port=self.port, threads=4)
        threading.Thread(target=self.server.run, daemon=True).start()

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/api/v1{path}", data, HEADERS, method=method)
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 (http to 127.0.0.1)
            return json.loads(response.read())

    def close(self) -> None:
        self.server.close()
        self.runner.shutdown(wait=True)
        self.ctx.db.dispose()
        if self.dropped:
            _drop_postgres(self.admin_url, self.dropped)


def _account(service: Service, server: Dovecot, user: str, password: str) -> tuple[str, list[str]]:
    """Register and sync the account through the API; return its id and every message id of INBOX."""
    account = service.call("POST", "/accounts", {
        "accountName": "bench", "emailAddress": user, "protocol": "imap", "hostname": server.host,
        "port": server.imap_port, "encryption": "none", "username": user, "password": password,
    })["id"]  # fmt: skip
    service.call("POST", f"/accounts/{account}/sync")
    while service.call("GET", f"/accounts/{account}/sync")["state"] not in ("succeeded", "failed"):
        time.sleep(0.1)
    ids: list[str] = []
    while True:
        page = service.call("GET", f"/accounts/{account}/messages?limit=100&offset={len(ids)}")
        ids += [m["id"] for m in page["messages"]]
        if len(ids) >= page["pagination"]["total"]:
            return account, ids


def _login(server: Dovecot, user: str, password: str) -> imaplib.IMAP4:
    client = imaplib.IMAP4(server.host, server.imap_port)
    client.login(user, password)
    client.select("INBOX")
    return client


def _count(monitor: imaplib.IMAP4, criterion: str) -> int:
    _typ, data = monitor.uid("SEARCH", criterion)
    return len(data[0].split()) if data and data[0] else 0


def time_service(service: Service, account: str, ids: list[str], monitor: imaplib.IMAP4, read: bool) -> tuple:
    """``(seconds to the HTTP answer, seconds until the server shows the change)``."""
    criterion, wanted = ("SEEN" if read else "UNSEEN"), len(ids)
    started = time.perf_counter()
    body = service.call("POST", f"/accounts/{account}/messages/batch", {"messageIds": ids, "isRead": read})
    answered = time.perf_counter() - started
    assert body["updatedCount"] == wanted, body
    while _count(monitor, criterion) != wanted:
        time.sleep(0.002)
    done = time.perf_counter() - started
    while service.call("GET", f"/accounts/{account}/actions?state=pending&limit=1")["actions"]:
        time.sleep(0.01)  # let the write-back finish recording before the next round (not timed)
    return answered, done


def time_raw_store(client: imaplib.IMAP4, uid_set: str, flagged: bool) -> float:
    started = time.perf_counter()
    typ, _data = client.uid("STORE", uid_set, "+FLAGS" if flagged else "-FLAGS", "(\\Flagged)")
    elapsed = time.perf_counter() - started
    assert typ == "OK"
    return elapsed


def time_raw_session(server: Dovecot, user: str, password: str, uid_set: str, flagged: bool) -> float:
    started = time.perf_counter()
    client = _login(server, user, password)
    client.uid("STORE", uid_set, "+FLAGS" if flagged else "-FLAGS", "(\\Flagged)")
    client.logout()
    return time.perf_counter() - started


def measure(server: Dovecot, database: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Interleaved rounds of the three runs on one database; every timing in milliseconds."""
    user, password = server.new_user()
    server.write_maildir(user, "INBOX", (f"Subject: bench {i}\n\nbody {i}\n".encode() for i in range(args.count)))
    service = Service(workdir, database, args.postgres_url)
    try:
        account, ids = _account(service, server, user, password)
        monitor, raw = _login(server, user, password), _login(server, user, password)
        _typ, data = raw.uid("SEARCH", "ALL")
        uid_set = sequence_set(int(u) for u in data[0].split())
        rounds: dict[str, list[float]] = {"answer": [], "service": [], "raw_store": [], "raw_session": []}
        for number in range(args.repeat):
            on = number % 2 == 0
            answered, done = time_service(service, account, ids, monitor, read=on)
            rounds["answer"].append(answered * 1000)
            rounds["service"].append(done * 1000)
            rounds["raw_store"].append(time_raw_store(raw, uid_set, flagged=on) * 1000)
            rounds["raw_session"].append(time_raw_session(server, user, password, uid_set, flagged=not on) * 1000)
            print(f"  {database} round {number + 1}: " + ", ".join(f"{k} {v[-1]:.0f} ms" for k, v in rounds.items()))
        monitor.logout()
        raw.logout()
        return {"messages": len(ids), "rounds_ms": rounds}
    finally:
        service.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=7, help="interleaved rounds; medians are reported")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "syncback.json"))
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="email-service-bench-"))
    databases = ["sqlite"] + ([] if args.no_postgres else ["postgresql"])
    results: dict[str, Any] = {"count": args.count, "repeat": args.repeat, "databases": {}}
    with Dovecot.start() as server:
        for database in databases:
            results["databases"][database] = measure(server, database, args, workdir)

    print(f"\n{'database':<12}{'run (median ms)':<18}{'ms':>9}{'x raw_store':>13}{'x raw_session':>15}")
    for database, measured in results["databases"].items():
        medians = {name: statistics.median(values) for name, values in measured["rounds_ms"].items()}
        measured["median_ms"] = {name: round(value, 1) for name, value in medians.items()}
        for name, value in medians.items():
            store, session = value / medians["raw_store"], value / medians["raw_session"]
            print(f"{database:<12}{name:<18}{value:>9.1f}{store:>13.1f}{session:>15.2f}")
        measured["ratio_service_to_raw_store"] = round(medians["service"] / medians["raw_store"], 2)
        measured["ratio_service_to_raw_session"] = round(medians["service"] / medians["raw_session"], 2)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2))
    print(f"\nwritten to {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
