"""Search latency on a mirrored mailbox of 100,000 messages, PostgreSQL and SQLite side by side (issue 11).

Builds the mailbox of :mod:`bench.mailbox100k` in each database (rows written through the store functions, so the
threads and the search index are made as a sync makes them), then runs 20 query shapes through the search service
(``search_messages``: parse, SQL, capped count, page of 50, snippets) ``--repeat`` times each, and prints p50/p95
in ms per query and database with the ratio PostgreSQL/SQLite; ``hits`` is the page's ``total`` (``1000+``: more
than ``search.COUNT_CAP``, a lower bound).  On PostgreSQL the database is migrated by a superuser, so ``@@`` and
``LIKE`` are ``LEAKPROOF`` (migration 0011); it then measures the same database again with them ``NOT LEAKPROOF``
(``postgresql_no_leakproof``: what an operator without a superuser gets).  Writes JSON (default
``bench/results/search.json``).  Goal (issue 11): p95 under 50 ms.  Run::

    uv run python bench/search.py [--count 100000] [--repeat 20] [--no-postgres]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import api_latency
from bench.mailbox100k import Mailbox, build, close
from bench.sync_throughput import write_results

from email_service.services.search import search_messages

QUERIES = [
    ("common word", "meeting"),
    ("common word, date sort", "budget", "date"),
    ("rare word", "zeppelin"),
    ("two words", "budget review"),
    ("phrase", '"budget review"'),
    ("rare phrase", '"quokka marmalade"'),
    ("from: full address", "from:sender42@example0.com"),
    ("from: partial", "from:nder4"),
    ("to: partial", "to:peer7"),
    ("subject:", "subject:invoice"),
    ("has:attachment", "has:attachment"),
    ("has:attachment + word", "has:attachment report"),
    ("negated word", "meeting -budget"),
    ("OR", "zeppelin OR quokka"),
    ("is:unread + word", "is:unread schedule"),
    ("in:inbox + word", "in:inbox client"),
    ("after: + word", "after:2025-02-01 team"),
    ("larger:", "larger:2K"),
    ("filename:", "filename:report"),
    ("combined", "(project OR client) from:example3 -invoice is:unread"),
]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def run_queries(mailbox: Mailbox, repeat: int) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    for label, query, *sort in QUERIES:
        timings: list[float] = []
        hits: int | str = 0
        for _ in range(repeat):
            started = time.perf_counter()
            page = search_messages(mailbox.ctx, principal=mailbox.principal, account_id=mailbox.account_id,
                                   query=query, sort=sort[0] if sort else "relevance", limit=50)  # fmt: skip
            timings.append((time.perf_counter() - started) * 1000)
            hits = page.total if page.total_exact else f"{page.total}+"
        results[label] = {"query": query, "hits": hits, "p50_ms": round(statistics.median(timings), 2),
                          "p95_ms": round(percentile(timings, 0.95), 2)}  # fmt: skip
    return results


def _not_leakproof(mailbox: Mailbox) -> None:
    """Undo what migration 0011 does for a superuser (as an operator without one never gets it)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(mailbox.ctx.settings.database_migration_url)
    with engine.begin() as connection:
        for function in ("ts_match_vq(tsvector, tsquery)", "textlike(text, text)"):
            connection.execute(text(f"ALTER FUNCTION {function} NOT LEAKPROOF"))
    engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "search.json"))
    parser.add_argument(
        "--api-latency", type=int, default=0, metavar="SECONDS",
        help="also run bench/api_latency.py's wrk measurements on the same mailboxes, SECONDS per endpoint",
    )  # fmt: skip
    args = parser.parse_args()
    api: dict[str, Any] = {}
    workdir = Path(tempfile.mkdtemp(prefix="email-service-bench-search-"))
    databases = ([] if args.no_sqlite else ["sqlite"]) + ([] if args.no_postgres else ["postgresql"])
    measured: dict[str, dict[str, dict[str, Any]]] = {}
    for database in databases:
        mailbox = build(workdir / database, database, args.postgres_url, args.count)
        try:
            run_queries(mailbox, 2)  # warm the caches
            measured[database] = run_queries(mailbox, args.repeat)
            if args.api_latency:
                api[database] = api_latency.measure(mailbox, args.api_latency, args.count * 9 // 10)
            if database == "postgresql":  # the same database again without migration 0011's LEAKPROOF
                _not_leakproof(mailbox)
                run_queries(mailbox, 2)
                measured["postgresql_no_leakproof"] = run_queries(mailbox, args.repeat)
        finally:
            close(mailbox)
    databases = list(measured)
    width = {db: max(17, len(db) + 6) for db in databases}
    header = f"{'query':<26}{'hits':>7}" + "".join(f"{db + ' p50':>{width[db]}}{'p95':>8}" for db in databases)
    print("\n" + header + ("   last/first p95" if len(databases) > 1 else ""))
    for label, *_ in QUERIES:
        first = measured[databases[0]][label]
        line = f"{label:<26}{first['hits']:>7}"
        for database in databases:
            result = measured[database][label]
            line += f"{result['p50_ms']:>{width[database]}.1f}{result['p95_ms']:>8.1f}"
        if len(databases) > 1:
            line += f"{measured[databases[-1]][label]['p95_ms'] / max(first['p95_ms'], 0.01):>15.2f}"
        print(line)
    for database in databases:
        worst = max(measured[database].values(), key=lambda r: r["p95_ms"])
        print(f"{database}: worst p95 {worst['p95_ms']} ms ({worst['query']}); goal < 50 ms")
    write_results(args.output, {"count": args.count, "repeat": args.repeat, "databases": measured})
    if api:
        api_latency.report(api, args.count)
        write_results(str(Path(args.output).with_name("api_latency.json")),
                      {"count": args.count, "seconds": args.api_latency, "databases": api})  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
