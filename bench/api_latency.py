"""API latency with a folder of 100,000 messages, PostgreSQL and SQLite side by side (issue 11), measured with wrk.

Builds the mailbox of :mod:`bench.mailbox100k` in each database, starts ``email-service serve`` on it (rate limit
lifted), and runs ``wrk`` (Debian package ``wrk``; 4 connections, 2 threads, ``--seconds`` each) against:
``/health`` (the baseline), the folder list, one message, the first list page, a filtered page (``isRead=false``),
the page at offset 90,000 (90 % of ``--count``) and the same depth by cursor; and the thread list: its first page,
a page in the folder, and a page 90 % deep in the threads by offset and by cursor (a checkout whose thread list
takes no ``cursor`` -- before issue 11 stop 16 -- gets the offset URL there instead).  ``--endpoints threads``
measures only ``/health`` and the thread list.  Prints requests/s, p50 and p99 (ms) and each p99's ratio to the
baseline's, and writes JSON (default ``bench/results/api_latency.json``).
Goal (issue 11): p99 under 30 ms for the first page, a cursor page at any depth and a filtered page.

``--server`` picks the process model: ``waitress`` (the embedded default: one process, ``WEB_THREADS`` threads),
``gunicorn`` (production as ``deploy/`` and ``compose.yaml`` run it: ``EMAIL_SERVICE_ENV=production``,
``WEB_CONCURRENCY`` gthread worker processes, default 2, of ``WEB_THREADS`` threads; jobs in-process since no
Celery worker runs here) or ``both`` (the default), measured endpoint by endpoint alternating.  ``--redis-url``
gives the rate limiter its Redis storage as production has it (else each process counts in memory).

``--yield-to-database`` (Linux) lowers this run's scheduling group (``/proc/self/autogroup``, nice 10) before it
starts anything: the servers and wrk then yield the CPU to a PostgreSQL server running on the same machine, as
they would if the database had cores of its own.  Without it, on a 2-core machine where two gunicorn workers and
wrk keep both cores busy, single requests on PostgreSQL stalled for 0.3-1.6 s in bursts (the backend in
``ClientRead``, its client waiting for the answer); one such stall puts a whole wrk run's p99 at 0.1-2.6 s.
``/health`` runs of 5 s: 27 of 102 stalled without it, 0 of 44 with it, 3 of 24 against 0 of 24 when alternated
(issue 11 stop 19, ``bench/README.md``).  SQLite has no server process and was not affected.

``--compare /work/main`` measures a second checkout of the service (its ``src`` first on ``PYTHONPATH``) on the same
mailbox, endpoint by endpoint alternating with this one, so that before and after share the machine's load;
``--mailboxes DIR`` keeps the built mailboxes in ``DIR`` (and their PostgreSQL database) and reuses them on the next
run instead of building them again (an hour on a busy 2-core machine); ``--compare-mailboxes DIR`` gives the
second checkout its own kept mailboxes (copies of the same mailbox at that checkout's migration).  Run::

    uv run python bench/api_latency.py [--count 100000] [--seconds 10] [--no-postgres] [--no-sqlite] [--compare DIR]
                                        [--mailboxes DIR] [--compare-mailboxes DIR] [--server waitress|gunicorn|both]
                                        [--redis-url URL] [--endpoints all|threads] [--yield-to-database]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.mailbox100k import Mailbox, build, close
from bench.sync_throughput import write_results
from sqlalchemy import func, select

from email_service.config import Settings
from email_service.models import EmailMessage
from email_service.security.tokens import Principal, create_jwt_token
from email_service.services.context import build_context
from email_service.services.message_list import Cursor, sort_key


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cursor_at(mailbox: Mailbox, depth: int) -> str:
    """The cursor a client holds after reading ``depth`` messages of INBOX newest first."""
    key = sort_key("receivedAt")
    with mailbox.ctx.db.tenant_session(mailbox.principal.tenant_id) as session:
        row = session.execute(
            select(key, EmailMessage.id)
            .where(EmailMessage.folder_id == mailbox.folder_id)
            .order_by(key.desc(), EmailMessage.id.desc())
            .offset(depth - 1)
            .limit(1)
        ).one()
    return Cursor("receivedAt", "desc", row[0], row[1]).encode()


def _thread_depth(mailbox: Mailbox) -> tuple[int, str]:
    """``(depth, cursor)``: 90 % of the account's threads, and the thread-list cursor a client holds after reading
    that many threads (the old ``GROUP BY`` order: newest ``receivedAt``, then ``thread_id``, descending)."""
    last = func.max(EmailMessage.received_at)
    with mailbox.ctx.db.tenant_session(mailbox.principal.tenant_id) as session:
        of_account = EmailMessage.account_id == mailbox.account_id
        threads = session.execute(select(func.count(func.distinct(EmailMessage.thread_id))).where(of_account))
        depth = int(threads.scalar_one()) * 9 // 10
        thread_id, received_at = session.execute(
            select(EmailMessage.thread_id, last)
            .where(EmailMessage.account_id == mailbox.account_id, EmailMessage.thread_id.is_not(None))
            .group_by(EmailMessage.thread_id)
            .order_by(last.desc(), EmailMessage.thread_id.desc())
            .offset(depth - 1)
            .limit(1)
        ).one()
        head = session.execute(
            select(EmailMessage.id)
            .where(EmailMessage.account_id == mailbox.account_id, EmailMessage.thread_id == thread_id)
            .order_by(EmailMessage.received_at.desc(), EmailMessage.id.desc())
            .limit(1)
        ).scalar_one()
    # Imported here: bench/search.py's workers import this module under older checkouts, which have no thread cursor
    from email_service.services.thread_list import ThreadCursor

    return depth, ThreadCursor(int(received_at), thread_id, head).encode()


def _one_message(mailbox: Mailbox) -> str:
    with mailbox.ctx.db.tenant_session(mailbox.principal.tenant_id) as session:
        return str(session.execute(select(EmailMessage.id).limit(1)).scalar_one())


def _wrk(url: str, token: str, seconds: int) -> dict[str, float]:
    output = subprocess.run(
        ["wrk", "-t2", "-c4", f"-d{seconds}s", "--timeout", "30s", "--latency", "-H", f"Authorization: Bearer {token}",
         url],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non_2xx:
        raise RuntimeError(f"{url}: {non_2xx.group(1)} error responses\n{output}")

    def latency(share: str) -> float:
        match = re.search(rf"^\s+{share}%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
        assert match, output
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    assert rate, output
    return {"rps": float(rate.group(1)), "p50_ms": latency("50"), "p99_ms": latency("99")}


_ENV_KEYS = ("EMAIL_SERVICE_DATA_DIR", "DATABASE_URL", "DATABASE_MIGRATION_URL", "JWT_SECRET_KEY",
             "CREDENTIAL_ENCRYPTION_KEYS")  # fmt: skip


def _service_env(settings: Settings) -> dict[str, str]:
    return {"EMAIL_SERVICE_DATA_DIR": str(settings.data_dir), "DATABASE_URL": settings.database_url,
            "DATABASE_MIGRATION_URL": settings.database_migration_url, "JWT_SECRET_KEY": settings.jwt_secret_key,
            "CREDENTIAL_ENCRYPTION_KEYS": ",".join(settings.credential_keys)}  # fmt: skip


def kept_mailbox(directory: Path, database: str, admin_url: str, count: int) -> Mailbox:
    """The mailbox kept in ``directory`` for ``database`` (``<database>.json`` names it), built there first when
    missing.  A kept mailbox is never dropped by this script (``close`` with ``dropped=None``)."""
    saved = directory / f"{database}.json"
    if not saved.exists():
        mailbox = build(directory / database, database, admin_url, count)
        info = {"account": str(mailbox.account_id), "folder": str(mailbox.folder_id), "count": count,
                "tenant": str(mailbox.principal.tenant_id), "user": str(mailbox.principal.user_id),
                "dropped": mailbox.dropped, **_service_env(mailbox.ctx.settings)}  # fmt: skip
        saved.write_text(json.dumps(info))
        mailbox.ctx.db.dispose()
    info = json.loads(saved.read_text())
    ctx = build_context(Settings.from_env({key: info[key] for key in _ENV_KEYS}))
    principal = Principal(uuid.UUID(info["tenant"]), uuid.UUID(info["user"]), "user")
    return Mailbox(ctx, principal, uuid.UUID(info["account"]), uuid.UUID(info["folder"]), None, admin_url)


SERVERS = ("waitress", "gunicorn")


class Server:
    """``email-service serve`` of the checkout ``source`` (``None``: this one) on ``mailbox``, rate limit lifted:
    ``kind`` ``waitress`` (embedded default) or ``gunicorn`` (production mode, ``WEB_CONCURRENCY`` processes)."""

    def __init__(
        self, mailbox: Mailbox, source: Path | None = None, kind: str = "waitress", redis_url: str | None = None
    ) -> None:
        env = {**os.environ, **_service_env(mailbox.ctx.settings), "RATE_LIMIT": "100000000 per minute",
               "AUTO_UPGRADE_DB": "false", "SCHEDULER_ENABLED": "false", "LOG_LEVEL": "WARNING"}  # fmt: skip
        if kind == "gunicorn":  # production mode, as compose.yaml runs the API, but jobs stay in-process
            env.update(EMAIL_SERVICE_ENV="production", JOB_RUNNER="inprocess", CORS_ORIGINS="http://localhost:3000")
        if redis_url:
            env["REDIS_URL"] = redis_url
        if source is not None:
            env["PYTHONPATH"] = os.pathsep.join([str(source / "src"), env.get("PYTHONPATH", "")])
        port = _free_port()
        self.base = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "email_service.cli", "serve", "--port", str(port)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        for _ in range(150):
            try:
                urllib.request.urlopen(f"{self.base}/health", timeout=1)  # noqa: S310 (local)
                return
            except OSError:
                time.sleep(0.2)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def _urls(base: str, mailbox: Mailbox, depth: int, endpoints: str, token: str) -> dict[str, str]:
    account = f"{base}/api/v1/accounts/{mailbox.account_id}"
    listing = f"{account}/messages?folderId={mailbox.folder_id}&limit=50"
    urls = {"health (baseline)": f"{base}/health"}
    if endpoints == "all":
        urls.update({
            "folders": f"{account}/folders",
            "one message": f"{base}/api/v1/messages/{_one_message(mailbox)}",
            "first page": listing,
            "filtered page (isRead=false)": f"{listing}&isRead=false",
            f"offset {depth}": f"{listing}&offset={depth}",
            f"cursor at {depth}": f"{listing}&cursor={_cursor_at(mailbox, depth)}",
        })  # fmt: skip
    threads = f"{account}/threads?limit=50"
    thread_depth, cursor = _thread_depth(mailbox)
    by_cursor = f"{threads}&cursor={cursor}"
    if _status(by_cursor, token) == 400:  # a checkout whose thread list has no cursor: the same depth by offset
        by_cursor = f"{threads}&offset={thread_depth}"
    urls.update({
        "threads: first page": threads,
        "threads: page in the folder": f"{threads}&folderId={mailbox.folder_id}",
        f"threads: offset {thread_depth}": f"{threads}&offset={thread_depth}",
        f"threads: cursor at {thread_depth}": by_cursor,
    })  # fmt: skip
    return urls


def _status(url: str, token: str) -> int:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})  # noqa: S310
    try:
        return int(urllib.request.urlopen(request, timeout=120).status)  # noqa: S310
    except urllib.error.HTTPError as error:
        return int(error.code)


def measure(
    mailbox: Mailbox,
    seconds: int,
    depth: int,
    sources: dict[str, Path | None] | None = None,
    servers: tuple[str, ...] = ("waitress",),
    redis_url: str | None = None,
    endpoints: str = "all",
    mailboxes: dict[str, Mailbox] | None = None,
) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """``{server kind: {source name: {endpoint: {rps, p50_ms, p99_ms}}}}``: one server per kind and source, each
    endpoint measured on all of them one after the other (in reverse order every other endpoint) before the next
    endpoint.  ``mailboxes``: a source's own copy of ``mailbox`` (same ids; default ``mailbox``)."""
    sources = sources or {"this checkout": None}
    mailboxes = mailboxes or {}
    token = create_jwt_token(mailbox.ctx.tokens, tenant_id=mailbox.principal.tenant_id,
                             user_id=mailbox.principal.user_id)  # fmt: skip
    running = {(kind, name): Server(mailboxes.get(name, mailbox), source, kind, redis_url) for kind in servers
               for name, source in sources.items()}  # fmt: skip
    try:
        urls = {key: _urls(server.base, mailbox, depth, endpoints, token) for key, server in running.items()}
        for by_endpoint in urls.values():
            for url in by_endpoint.values():  # each answers 200 before it is measured
                assert _status(url, token) == 200, url
        warm = "first page" if endpoints == "all" else "threads: first page"
        for by_endpoint in urls.values():  # every worker process up and warm before anything is measured
            _wrk(by_endpoint[warm], token, 3)
        results: dict[str, dict[str, dict[str, dict[str, float]]]] = {kind: {} for kind in servers}
        order = list(running)
        for index, endpoint in enumerate(urls[next(iter(urls))]):
            for kind, name in order:
                url = list(urls[kind, name].values())[index]  # a source's cursor URL may be its offset URL
                results[kind].setdefault(name, {})[endpoint] = _wrk(url, token, seconds)
            order.reverse()  # no server always measured first (or right after the heaviest endpoint)
        return results
    finally:
        for server in running.values():
            server.stop()


def report(measured: dict[str, Any], count: int) -> None:
    """Print the table of each database, server kind and checkout: req/s, p50, p99 and p99 as a multiple of
    /health's; with a second checkout, the p50 and p99 ratios of this one to it."""
    for database, by_server in measured.items():
        for kind, by_source in by_server.items():
            for source, rows in by_source.items():
                baseline = rows["health (baseline)"]["p99_ms"]
                print(f"\n{database}, {kind}, {source}: {count} messages in one folder, wrk 4 connections")
                print(f"{'endpoint':<30}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'p99 x health':>14}")
                for name, row in rows.items():
                    print(f"{name:<30}{row['rps']:>9.0f}{row['p50_ms']:>9.2f}{row['p99_ms']:>9.2f}"
                          f"{row['p99_ms'] / baseline:>14.1f}")  # fmt: skip
            if len(by_source) == 2:
                (this, after), (other, before) = by_source.items()
                print(f"\n{database}, {kind}: {this} / {other}")
                print(f"{'endpoint':<30}{'p50 ratio':>11}{'p99 ratio':>11}")
                for name in after:
                    print(f"{name:<30}{_ratio(after[name]['p50_ms'], before[name]['p50_ms']):>11}"
                          f"{_ratio(after[name]['p99_ms'], before[name]['p99_ms']):>11}")  # fmt: skip


def _ratio(this: float, other: float) -> str:
    """``this / other`` to two places; ``n/a`` when either is 0 (no request answered within wrk's timeout)."""
    return f"{this / other:.2f}" if this and other else "n/a"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "api_latency.json"))
    parser.add_argument("--compare", type=Path, help="a second checkout to measure side by side (e.g. /work/main)")
    parser.add_argument("--mailboxes", type=Path, help="keep the built mailboxes here and reuse them")
    parser.add_argument("--server", choices=[*SERVERS, "both"], default="both", help="process model (default both)")
    parser.add_argument("--redis-url", help="Redis for the rate limiter's counters, as in production")
    parser.add_argument("--compare-mailboxes", type=Path, help="the --compare checkout's own kept mailboxes")
    parser.add_argument("--endpoints", choices=["all", "threads"], default="all", help="threads: /health and threads")
    parser.add_argument("--yield-to-database", action="store_true", help="lower this run's autogroup (Linux): nice 10")
    args = parser.parse_args()
    if args.yield_to_database:
        Path("/proc/self/autogroup").write_text("10")  # the whole session's group: the servers and wrk inherit it
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install -y wrk)")
        return 1
    workdir = Path(tempfile.mkdtemp(prefix="email-service-bench-api-"))
    sources: dict[str, Path | None] = {"this checkout": None}
    if args.compare:
        sources[str(args.compare)] = args.compare.resolve()
    measured: dict[str, Any] = {}
    for database in ([] if args.no_sqlite else ["sqlite"]) + ([] if args.no_postgres else ["postgresql"]):
        if args.mailboxes:
            args.mailboxes.mkdir(parents=True, exist_ok=True)
            mailbox = kept_mailbox(args.mailboxes, database, args.postgres_url, args.count)
        else:
            mailbox = build(workdir / database, database, args.postgres_url, args.count)
        own: dict[str, Mailbox] = {}
        if args.compare and args.compare_mailboxes:
            own[str(args.compare)] = kept_mailbox(args.compare_mailboxes, database, args.postgres_url, args.count)
        try:
            servers = SERVERS if args.server == "both" else (args.server,)
            measured[database] = measure(mailbox, args.seconds, args.count * 9 // 10, sources, servers, args.redis_url,
                                         args.endpoints, own)  # fmt: skip
        finally:
            close(mailbox)
            for other in own.values():
                other.ctx.db.dispose()
    report(measured, args.count)
    write_results(args.output, {"count": args.count, "seconds": args.seconds, "databases": measured})
    return 0


if __name__ == "__main__":
    sys.exit(main())
