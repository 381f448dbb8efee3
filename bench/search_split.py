"""Where a search's time goes: SQL against Python, per query shape of ``bench/search.py`` (issue 11).

For each shape, on a kept mailbox (``bench/api_latency.py --mailboxes DIR``, ``DIR/<database>.json``), medians of
``--repeat``: ``wall``, the time of ``search_messages``; ``exec``, the time its driver spent in ``execute`` (on
PostgreSQL the whole result arrives there); ``replay``, its statements replayed straight on the driver in a tenant
transaction (execute and fetch of every row: SQLite's SQL time, as SQLite steps through rows in the fetch).
``python`` is ``wall`` minus the SQL (``exec`` on PostgreSQL, ``replay`` on SQLite): parsing, building and
compiling statements, result rows, ranking, snippets, the transaction's own round trips.
``--explain LABEL`` prints the plans of that shape's statements (PostgreSQL ``EXPLAIN (ANALYZE, BUFFERS)`` as the
app role under RLS, SQLite ``EXPLAIN QUERY PLAN``).  Run::

    uv run python bench/search_split.py --mailboxes DIR [--database sqlite|postgresql] [--repeat 9]
                                        [--only LABEL ...] [--explain LABEL]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import api_latency
from bench.mailbox100k import Mailbox
from bench.search import QUERIES
from sqlalchemy import event, text

from email_service.services.search import search_messages


def _search(mailbox: Mailbox, query: str, sort: str) -> float:
    started = time.perf_counter()
    search_messages(mailbox.ctx, principal=mailbox.principal, account_id=mailbox.account_id, query=query, sort=sort)
    return (time.perf_counter() - started) * 1000


def _statements(mailbox: Mailbox, query: str, sort: str) -> tuple[list[tuple[str, Any]], float, float]:
    """The statements one search runs (driver SQL and parameters; the tenant transaction's own excluded), the
    search's wall ms and the ms its driver spent executing them (on PostgreSQL a result is received whole by the
    execute; SQLite steps through most of its rows in the fetch, which is not counted here)."""
    seen: list[tuple[str, Any]] = []
    spent = [0.0, 0.0]
    engine = mailbox.ctx.db.engine

    def before(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        seen.append((statement, parameters))
        spent[1] = time.perf_counter()

    def after(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        spent[0] += time.perf_counter() - spent[1]

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    try:
        wall = _search(mailbox, query, sort)
    finally:
        event.remove(engine, "before_cursor_execute", before)
        event.remove(engine, "after_cursor_execute", after)
    return seen, wall, spent[0] * 1000


def _replay(mailbox: Mailbox, statements: list[tuple[str, Any]], explain: bool) -> float:
    """ms to execute and fetch ``statements`` once, in one tenant transaction (plans printed with ``explain``)."""
    total = 0.0
    with mailbox.ctx.db.tenant_session(mailbox.principal.tenant_id) as session:
        connection = session.connection()
        for statement, parameters in statements:
            started = time.perf_counter()
            connection.exec_driver_sql(statement, parameters).all()
            total += time.perf_counter() - started
            if explain and not statement.lstrip().upper().startswith("SELECT SET_CONFIG"):
                postgres = connection.dialect.name == "postgresql"
                prefix = "EXPLAIN (ANALYZE, BUFFERS) " if postgres else "EXPLAIN QUERY PLAN "
                print("--", statement[:300].replace("\n", " "))
                for row in connection.exec_driver_sql(prefix + statement, parameters):
                    print("  ", row[-1] if postgres else f"{row[0]:>3} {row[1]:>3} {row[3]}")
    return total * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mailboxes", type=Path, required=True)
    parser.add_argument("--database", default="postgresql", choices=["sqlite", "postgresql"])
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--only", nargs="*", default=None, help="shape labels (default: all 20)")
    parser.add_argument("--explain", default=None, help="print the plans of this shape's statements")
    args = parser.parse_args()
    mailbox = api_latency.kept_mailbox(args.mailboxes, args.database, args.postgres_url, 0)
    with mailbox.ctx.db.tenant_session(mailbox.principal.tenant_id) as session:
        session.execute(text("SELECT 1"))
    print(f"{'shape':<26}{'wall':>8}{'exec':>8}{'replay':>8}{'python':>8}{'stmts':>6}   (median ms of {args.repeat})")
    for label, query, *sort in QUERIES:
        if args.only and label not in args.only and label != args.explain:
            continue
        order = sort[0] if sort else "relevance"
        runs = [_statements(mailbox, query, order) for _ in range(args.repeat)]
        statements = runs[0][0]
        replays = [_replay(mailbox, statements, False) for _ in range(args.repeat)]
        wall, executed = statistics.median(run[1] for run in runs), statistics.median(run[2] for run in runs)
        sql = executed if mailbox.ctx.db.is_postgres else statistics.median(replays)
        print(
            f"{label:<26}{wall:>8.1f}{executed:>8.1f}{statistics.median(replays):>8.1f}{wall - sql:>8.1f}"
            f"{len(statements):>6}"
        )
        if label == args.explain:
            _replay(mailbox, statements, True)
    mailbox.ctx.db.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
