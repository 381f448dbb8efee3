"""The cost of migration 0014's trigger on a bulk flag sync: the sync's own flag-merge statement over ``--count``
messages of a kept 100,000-message mailbox, with the trigger on and off, side by side (issue 11).

Each round opens a transaction on the kept mailbox (``bench/api_latency.py --mailboxes DIR``: only copies, it is
rolled back), as the schema owner with the mailbox's tenant bound (``FORCE ROW LEVEL SECURITY``: the tenant policy
applies as it does to the app role); with the trigger off it is dropped inside that transaction first (PostgreSQL
and SQLite DDL are transactional, so the rollback puts it back).  Then it runs the statement of
``sync/imap.py`` ``_merge_flags`` -- ``update(EmailMessage)`` executemany by primary key, :data:`IN_CHUNK` rows a
statement, with ``\\Seen`` toggled on ``--count`` messages (the newest) -- times it, and rolls back.  Rounds
alternate which arm goes first.  PostgreSQL: ``VACUUM`` of the two tables after each round (the rolled-back rows'
versions).  Prints the median ms per arm and the ratio, and writes JSON (default ``bench/results/flag_update.json``).

    uv run python bench/flag_update.py --mailboxes DIR [--count 10000] [--rounds 5] [--no-sqlite] [--no-postgres]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.sync_throughput import write_results
from sqlalchemy import create_engine, select, text, update
from sqlalchemy.orm import Session

from email_service.models import EmailMessage
from email_service.services.flags import flag_columns
from email_service.sync.store import IN_CHUNK

TRIGGER = "email_messages_search_state"


def _round(url: str, tenant: str, account: uuid.UUID, count: int, trigger: bool) -> float:
    """One timed flag merge of ``count`` messages in a rolled-back transaction; ms."""
    postgresql = url.startswith("postgresql")
    # SQLite: pysqlite would run the DROP TRIGGER outside the transaction; here it never begins one itself.
    engine = create_engine(url) if postgresql else create_engine(url, connect_args={"isolation_level": None})
    try:
        with engine.connect() as connection:
            transaction = connection.begin()
            if not postgresql:
                connection.exec_driver_sql("BEGIN")
            if postgresql:
                connection.execute(text("SELECT set_config('app.current_tenant_id', :t, true)"), {"t": tenant})
            if not trigger:
                connection.execute(text(f"DROP TRIGGER {TRIGGER}" + (" ON email_messages" if postgresql else "")))
            rows = connection.execute(
                select(EmailMessage.id, EmailMessage.flags)
                .where(EmailMessage.account_id == account)
                .order_by(EmailMessage.received_at.desc())
                .limit(count)
            ).all()
            now = int(time.time() * 1000)
            updates = []
            for message_id, flags in rows:
                toggled = [f for f in flags if f != "\\Seen"] if "\\Seen" in flags else [*flags, "\\Seen"]
                updates.append({"id": message_id, "modseq": 1, "updated_at": now, **flag_columns(toggled)})
            started = time.perf_counter()
            session = Session(bind=connection)  # the ORM's bulk UPDATE by primary key, as the sync's session runs it
            for start in range(0, len(updates), IN_CHUNK):
                session.execute(update(EmailMessage), updates[start : start + IN_CHUNK])
            elapsed = (time.perf_counter() - started) * 1000
            transaction.rollback()
        if postgresql:
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                connection.execute(text("VACUUM email_messages, email_search_docs"))
        return elapsed
    finally:
        engine.dispose()


def measure(directory: Path, database: str, count: int, rounds: int) -> dict[str, Any]:
    info = json.loads((directory / f"{database}.json").read_text())
    url, tenant, account = info["DATABASE_MIGRATION_URL"], info["tenant"], uuid.UUID(info["account"])
    times: dict[str, list[float]] = {"trigger on": [], "trigger off": []}
    _round(url, tenant, account, count, True)  # warm-up
    for index in range(rounds):
        for arm in ("trigger on", "trigger off")[:: 1 if index % 2 else -1]:
            times[arm].append(_round(url, tenant, account, count, arm == "trigger on"))
    on, off = statistics.median(times["trigger on"]), statistics.median(times["trigger off"])
    print(f"{database}: {count} flag changes: trigger on {on:.0f} ms, off {off:.0f} ms, on/off {on / off:.2f}")
    for arm, values in times.items():
        print(f"  {arm}: {[round(value) for value in values]}")
    return {"count": count, "rounds": times, "median_on_ms": on, "median_off_ms": off, "ratio": on / off}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mailboxes", type=Path, required=True)
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "flag_update.json"))
    args = parser.parse_args()
    results = {}
    for database in ([] if args.no_sqlite else ["sqlite"]) + ([] if args.no_postgres else ["postgresql"]):
        results[database] = measure(args.mailboxes, database, args.count, args.rounds)
    write_results(args.output, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
