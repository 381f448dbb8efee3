"""Sync throughput: the service mirroring a Dovecot mailbox, against two references, in one run.

Builds a private Dovecot mailbox of ``--count`` messages of about ``--size`` bytes, then times:

* ``raw_fetch``: a bare ``UID FETCH 1:* (BODY.PEEK[])`` of the mailbox with imaplib (network + server ceiling);
* ``mbsync``: isync mirroring the mailbox to a Maildir (Debian package ``isync``; skipped if not installed);
* ``service_sqlite`` / ``service_postgresql``: a full first sync by the service (parse, blob store, rows).

Prints messages/second and each rate's ratio to the raw fetch and to mbsync, and writes the figures as JSON
(default ``bench/results/sync_throughput.json``).  Run::

    uv run python bench/sync_throughput.py [--count 10000] [--size 5000] [--no-postgres] [--no-sqlite]
        [--compare-indexing] [--pg-drop-index NAME ...]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import imaplib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.dovecot import Dovecot

from email_service.config import Settings
from email_service.db import upgrade_database
from email_service.security.credentials import generate_key
from email_service.security.tokens import Principal
from email_service.services import accounts, search_index, sync_runs
from email_service.services.context import build_context
from email_service.sync.account import sync_account

EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
WORDS = [
    "mail",
    "sync",
    "server",
    "folder",
    "message",
    "client",
    "budget",
    "report",
    "meeting",
    "invoice",
    "project",
    "review",
    "team",
    "schedule",
    "quarter",
    "update",
    "draft",
    "note",
    "thread",
    "reply",
    "forward",
    "archive",
    "attachment",
    "inbox",
]


def generate_messages(count: int, size: int, seed: int = 7) -> Iterator[bytes]:
    """``count`` RFC 5322 messages of about ``size`` bytes: mostly text, every 5th multipart with an attachment."""
    rng = random.Random(seed)
    for index in range(count):
        message = EmailMessage()
        message["From"] = f"Sender {index % 50} <sender{index % 50}@example.com>"
        message["To"] = "Bench User <bench@example.com>"
        message["Subject"] = f"Message {index}: " + " ".join(rng.choices(WORDS, k=6))
        message["Date"] = format_datetime(EPOCH + dt.timedelta(minutes=index))
        message["Message-ID"] = make_msgid(domain="bench.example")
        words = max(10, (size - 600) // 7)
        text = " ".join(rng.choices(WORDS, k=words))
        message.set_content("\n".join(text[i : i + 72] for i in range(0, len(text), 72)))
        if index % 5 == 0:
            message.add_attachment(
                b"%PDF-1.4\n" + rng.randbytes(600),
                maintype="application",
                subtype="pdf",
                filename=f"report-{index}.pdf",
            )
        yield bytes(message)


def time_raw_fetch(server: Dovecot, user: str, password: str) -> tuple[float, int]:
    client = imaplib.IMAP4(server.host, server.imap_port)
    client.login(user, password)
    client.select("INBOX", readonly=True)
    started = time.perf_counter()
    typ, data = client.uid("FETCH", "1:*", "(BODY.PEEK[])")
    elapsed = time.perf_counter() - started
    client.logout()
    fetched = sum(1 for item in data if isinstance(item, tuple))
    assert typ == "OK"
    return elapsed, fetched


def time_mbsync(server: Dovecot, user: str, password: str, workdir: Path) -> tuple[float, int] | None:
    binary = shutil.which("mbsync")
    if binary is None:
        return None
    target = workdir / "mbsync-maildir"
    target.mkdir(parents=True, exist_ok=True)
    config = workdir / "mbsyncrc"
    config.write_text(
        "FSync yes\n\n"
        f"IMAPAccount bench\nHost {server.host}\nPort {server.imap_port}\nUser {user}\nPass {password}\n"
        "SSLType None\nAuthMechs LOGIN\n\nIMAPStore bench-remote\nAccount bench\n\n"
        f"MaildirStore bench-local\nPath {target}/\nInbox {target}/INBOX\n\n"
        "Channel bench\nFar :bench-remote:\nNear :bench-local:\nPatterns INBOX\nCreate Near\nSync Pull\n"
        "SyncState *\n"
    )
    started = time.perf_counter()
    subprocess.run([binary, "-c", str(config), "-q", "bench"], check=True)
    elapsed = time.perf_counter() - started
    return elapsed, len(list((target / "INBOX" / "cur").iterdir())) + len(list((target / "INBOX" / "new").iterdir()))


def _postgres_urls(admin_url: str) -> tuple[str, str, str]:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    base = make_url(admin_url).set(drivername="postgresql+psycopg")
    name = f"email_service_bench_{uuid.uuid4().hex[:8]}"
    engine = create_engine(base, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
        if not connection.execute(text("SELECT 1 FROM pg_roles WHERE rolname='email_service_app'")).first():
            connection.execute(text("CREATE ROLE email_service_app LOGIN NOSUPERUSER NOBYPASSRLS"))
    engine.dispose()
    owner = base.set(database=name)
    return (
        owner.render_as_string(hide_password=False),
        owner.set(username="email_service_app").render_as_string(hide_password=False),
        name,
    )


def _drop_postgres(admin_url: str, name: str) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    engine = create_engine(make_url(admin_url).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


def bench_settings(workdir: Path, database: str, admin_url: str, **env: str) -> tuple[Settings, str | None]:
    """Settings of a service in ``workdir`` on a fresh SQLite file or PostgreSQL database (``database``), migrated to
    head, plus ``env``.  Returns them and the PostgreSQL database to drop afterwards (``None`` on SQLite)."""
    values = {
        "EMAIL_SERVICE_DATA_DIR": str(workdir / f"service-{database}"),
        "JWT_SECRET_KEY": "bench-" + "x" * 40,
        "CREDENTIAL_ENCRYPTION_KEYS": generate_key(),
        **env,
    }
    dropped = None
    if database == "postgresql":
        owner_url, app_url, dropped = _postgres_urls(admin_url)
        values.update(DATABASE_URL=app_url, DATABASE_MIGRATION_URL=owner_url)
    settings = Settings.from_env(values)
    upgrade_database(settings.database_migration_url, app_url=settings.database_url)
    return settings, dropped


def _drop_indexes(owner_url: str, names: tuple[str, ...]) -> None:
    """What-if: drop the indexes ``names`` from a fresh bench database (as its owner)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(owner_url)
    with engine.begin() as connection:
        for name in names:
            connection.execute(text(f'DROP INDEX "{name}"'))
    engine.dispose()


def _backend_cpu_seconds(engine: Any) -> float:
    """CPU seconds (user + system, from ``/proc``) used so far by the PostgreSQL backends of ``engine``'s pooled
    connections and any other backend now on its database (an autovacuum worker): the database's share of a sync,
    which the benchmark process's CPU time does not include.  0 if PostgreSQL is not on this machine."""
    from sqlalchemy import text

    with engine.connect() as connection:
        pids = connection.execute(
            text("SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")
        ).scalars()
        pids = [*pids, connection.execute(text("SELECT pg_backend_pid()")).scalar_one()]
    ticks = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of proc(5))
    return ticks / os.sysconf("SC_CLK_TCK")


class BenchService:
    """The service in-process on a fresh SQLite file or PostgreSQL database, with one IMAP account of ``user``.

    :meth:`sync` runs one sync (as a job would) and returns ``(seconds, run row)``; :meth:`close` drops the
    PostgreSQL database.
    """

    def __init__(
        self,
        server: Dovecot,
        user: str,
        password: str,
        workdir: Path,
        database: str,
        admin_url: str,
        drop_indexes: tuple[str, ...] = (),
    ):
        batch = os.environ.get("SYNC_BATCH_SIZE", "500")
        settings, self.dropped = bench_settings(workdir, database, admin_url, SYNC_BATCH_SIZE=batch)
        if database == "postgresql" and drop_indexes:
            _drop_indexes(settings.database_migration_url, drop_indexes)
        self.admin_url = admin_url
        self.cpu_seconds = 0.0
        self.backend_cpu_seconds = 0.0
        self.ctx = build_context(settings)
        self.principal = Principal(uuid.uuid4(), uuid.uuid4(), "user")
        fields = {"account_name": "bench", "email_address": "bench@example.com", "protocol": "imap",
                  "hostname": server.host, "port": server.imap_port, "encryption": "none",
                  "username": user}  # fmt: skip
        self.account = accounts.create_account(self.ctx, principal=self.principal, password=password, fields=fields)

    def sync(self) -> tuple[float, Any]:
        """One sync, timed from the job's start (``sync_account``) to its end; raises if it did not succeed."""
        tenant_id, account_id = self.principal.tenant_id, self.account.id
        run, _ = sync_runs.enqueue_sync(self.ctx, tenant_id=tenant_id, account_id=account_id, trigger="cli",
                                        principal=None)  # fmt: skip
        started, cpu = time.perf_counter(), time.process_time()
        state = sync_account(self.ctx, tenant_id=tenant_id, account_id=account_id, run_id=run.id)
        elapsed = time.perf_counter() - started
        self.cpu_seconds = time.process_time() - cpu
        self.backend_cpu_seconds = _backend_cpu_seconds(self.ctx.db.engine) if self.ctx.db.is_postgres else 0.0
        done = sync_runs.sync_status(self.ctx, principal=self.principal, account_id=account_id).run
        assert state == "succeeded", done.error if done else state
        return elapsed, done

    def close(self) -> None:
        self.ctx.db.dispose()
        if self.dropped:
            _drop_postgres(self.admin_url, self.dropped)


def time_service(
    server: Dovecot,
    user: str,
    password: str,
    workdir: Path,
    database: str,
    admin_url: str,
    *,
    indexing: bool = True,
    drop_indexes: tuple[str, ...] = (),
) -> tuple[float, int, float, float]:
    """One first sync into a fresh database; ``indexing=False`` switches off the threading and search indexing
    done where rows are stored (issue 11: the doc rows made on the parsing thread, the threads and doc rows written
    with the batch, the end-of-sync backfill) -- their indexes and triggers stay -- to show what indexing costs.
    ``drop_indexes``: PostgreSQL indexes dropped before the sync (a what-if; ``--pg-drop-index``).  Returns
    ``(seconds, messages, CPU seconds of this process, CPU seconds of the PostgreSQL backends)`` (this process: all
    its threads, SQLite's work included; the backends: :func:`_backend_cpu_seconds`, 0 on SQLite): on a machine
    shared with other work the CPU per message is steadier than the rate."""
    service = BenchService(server, user, password, workdir, database, admin_url, drop_indexes)
    try:
        with contextlib.ExitStack() as stack:
            if not indexing:
                for name in ("doc_row", "after_insert", "write_docs", "finish_sync"):
                    stack.enter_context(mock.patch.object(search_index, name, lambda *a, **k: None))
            elapsed, run = service.sync()
        return elapsed, run.messages_added, service.cpu_seconds, service.backend_cpu_seconds
    finally:
        service.close()


def _measure_round(
    server: Dovecot, user: str, password: str, workdir: Path, args: argparse.Namespace
) -> dict[str, Any]:
    """One interleaved round of every run; each gets fresh target folders / databases."""
    measured: dict[str, tuple[float, ...] | None] = {"raw_fetch": time_raw_fetch(server, user, password)}
    measured["mbsync"] = time_mbsync(server, user, password, Path(tempfile.mkdtemp(dir=workdir)))
    if not args.no_sqlite:
        measured["service_sqlite"] = time_service(
            server, user, password, Path(tempfile.mkdtemp(dir=workdir)), "sqlite", args.postgres_url
        )
        if args.compare_indexing:
            measured["service_sqlite_no_index"] = time_service(
                server, user, password, Path(tempfile.mkdtemp(dir=workdir)), "sqlite", args.postgres_url,
                indexing=False,
            )  # fmt: skip
    if not args.no_postgres:
        drop = tuple(args.pg_drop_index)
        measured["service_postgresql"] = time_service(
            server, user, password, Path(tempfile.mkdtemp(dir=workdir)), "postgresql", args.postgres_url,
            drop_indexes=drop,
        )  # fmt: skip
        if args.compare_indexing:
            measured["service_postgresql_no_index"] = time_service(
                server, user, password, Path(tempfile.mkdtemp(dir=workdir)), "postgresql", args.postgres_url,
                indexing=False, drop_indexes=drop,
            )  # fmt: skip
    return measured


def _print_round(number: int, measured: dict[str, Any]) -> None:
    """A round's rates, the CPU per message of this process and of the PostgreSQL backends."""
    line = ", ".join(f"{k} {v[1] / v[0]:.0f}" for k, v in measured.items() if v)
    print(f"  round {number}: {line} msg/s")
    cpu = ", ".join(f"{k} {v[2] / v[1] * 1000:.2f}" for k, v in measured.items() if v and len(v) > 2)
    print(f"  round {number} CPU of this process: {cpu} ms/msg")
    backend = ", ".join(f"{k} {v[3] / v[1] * 1000:.2f}" for k, v in measured.items() if v and len(v) > 3 and v[3])
    print(f"  round {number} CPU of the PostgreSQL backends: {backend} ms/msg")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=5_000)
    parser.add_argument("--repeat", type=int, default=3, help="interleaved rounds; medians are reported")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument(
        "--compare-indexing", action="store_true", help="also sync with threading and search indexing off"
    )
    parser.add_argument(
        "--pg-drop-index",
        action="append",
        default=[],
        metavar="NAME",
        help="what-if: drop this PostgreSQL index before each PostgreSQL sync (repeatable)",
    )
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "sync_throughput.json"))
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="email-service-bench-"))
    results: dict[str, Any] = {"count": args.count, "approx_size": args.size, "repeat": args.repeat, "runs": {}}
    results["pg_drop_index"] = args.pg_drop_index
    rounds: list[dict[str, Any]] = []
    with Dovecot.start() as server:
        user, password = server.new_user()
        written = server.write_maildir(user, "INBOX", generate_messages(args.count, args.size))
        sizes = sum(len(m) for m in generate_messages(min(args.count, 200), args.size)) / min(args.count, 200)
        results["mean_message_bytes"] = round(sizes)
        print(f"mailbox: {written} messages of ~{sizes:.0f} bytes; {args.repeat} interleaved round(s)")
        for number in range(args.repeat):
            rounds.append(_measure_round(server, user, password, workdir, args))
            _print_round(number + 1, rounds[-1])
    shutil.rmtree(workdir, ignore_errors=True)

    names = list(rounds[0])
    rates = {
        name: statistics.median(r[name][1] / r[name][0] for r in rounds) if rounds[0][name] else None for name in names
    }
    raw, mbsync = rates.get("raw_fetch"), rates.get("mbsync")
    print(f"\n{'run (median)':<20}{'messages':>10}{'msg/s':>10}{'x raw':>9}{'x mbsync':>10}")
    for name in names:
        rate = rates[name]
        if rate is None:
            print(f"{name:<20}{'(not installed)':>39}")
            continue
        vs_raw = f"{rate / raw:.3f}" if raw else "-"
        vs_mbsync = f"{rate / mbsync:.2f}" if mbsync else "-"
        print(f"{name:<20}{rounds[0][name][1]:>10}{rate:>10.0f}{vs_raw:>9}{vs_mbsync:>10}")
        results["runs"][name] = {
            "messages": rounds[0][name][1],
            "msgs_per_s_median": round(rate, 1),
            "msgs_per_s_rounds": [round(r[name][1] / r[name][0], 1) for r in rounds],
            "process_cpu_ms_per_msg_rounds": [
                round(r[name][2] / r[name][1] * 1000, 3) for r in rounds if len(r[name]) > 2
            ],
            "backend_cpu_ms_per_msg_rounds": [
                round(r[name][3] / r[name][1] * 1000, 3) for r in rounds if len(r[name]) > 3
            ],
            "ratio_to_raw_fetch": round(rate / raw, 4) if raw else None,
            "ratio_to_mbsync": round(rate / mbsync, 3) if mbsync else None,
        }
    write_results(args.output, results)
    return 0


def write_results(path: str, results: dict[str, Any]) -> None:
    """Write a benchmark's figures as JSON to ``path`` (folders made as needed) and say where."""
    output = Path(path)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2))
    print(f"\nwritten to {output}")


if __name__ == "__main__":
    sys.exit(main())
