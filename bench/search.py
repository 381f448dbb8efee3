"""Search latency on a mirrored mailbox of 100,000 messages, PostgreSQL and SQLite side by side (issue 11).

Builds the mailbox of :mod:`bench.mailbox100k` in each database (rows written through the store functions, so the
threads and the search index are made as a sync makes them), then runs 20 query shapes through the search service
(``search_messages``: parse, SQL, capped count, page of 50, snippets) ``--repeat`` times each, and prints p50/p95
in ms per query and database with the ratio PostgreSQL/SQLite; ``hits`` is the page's ``total`` (``250+``: more
than ``search.COUNT_CAP``, a lower bound).  On PostgreSQL the database is migrated by a superuser, so ``@@`` and
``LIKE`` are ``LEAKPROOF`` (migration 0011); it then measures the same database again with them ``NOT LEAKPROOF``
(``postgresql_no_leakproof``: what an operator without a superuser gets).  Writes JSON (default
``bench/results/search.json``).  Goal (issue 11): p95 under 50 ms.

``--mailboxes DIR`` uses (or builds once and keeps) the mailboxes of ``bench/api_latency.py --mailboxes DIR``
(``DIR/<database>.json``); they are only read (the ``NOT LEAKPROOF`` pass, which changes the database's catalog, is
skipped).  ``--compare SRC`` runs the same queries with the search code of another checkout (``SRC/src``, e.g. the
landed code in ``/work/main``) on the same mailbox: two worker processes, one per checkout, each repetition of a
query alternating between them (which goes first alternates too), so that before and after share the machine's
load (``--before-mailboxes DIR``: ``SRC`` searches the mailboxes kept there instead, e.g. copies of the same
mailboxes not migrated to this checkout's head).  ``cpu`` is the worker's process CPU time (SQLite's work
included, PostgreSQL's server not).  Run::

    uv run python bench/search.py [--count 100000] [--repeat 20] [--no-postgres] [--no-sqlite]
                                  [--mailboxes DIR] [--compare SRC [--before-mailboxes DIR]]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
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


def _once(mailbox: Mailbox, query: str, sort: str) -> tuple[float, float, int | str]:
    """One search of the mailbox: wall ms, process CPU ms, and ``hits`` (``total``, ``N+`` when a lower bound)."""
    started, cpu = time.perf_counter(), time.process_time()
    page = search_messages(mailbox.ctx, principal=mailbox.principal, account_id=mailbox.account_id,
                           query=query, sort=sort, limit=50)  # fmt: skip
    wall, cpu = (time.perf_counter() - started) * 1000, (time.process_time() - cpu) * 1000
    return wall, cpu, page.total if page.total_exact else f"{page.total}+"


def _summary(query: str, hits: int | str, walls: list[float], cpus: list[float]) -> dict[str, Any]:
    return {"query": query, "hits": hits, "p50_ms": round(statistics.median(walls), 2),
            "p95_ms": round(percentile(walls, 0.95), 2), "cpu_p50_ms": round(statistics.median(cpus), 2),
            "cpu_p95_ms": round(percentile(cpus, 0.95), 2)}  # fmt: skip


def run_queries(mailbox: Mailbox, repeat: int) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    for label, query, *sort in QUERIES:
        walls: list[float] = []
        cpus: list[float] = []
        hits: int | str = 0
        for _ in range(repeat):
            wall, cpu, hits = _once(mailbox, query, sort[0] if sort else "relevance")
            walls.append(wall)
            cpus.append(cpu)
        results[label] = _summary(query, hits, walls, cpus)
    return results


class Worker:
    """A worker process (``--worker``) searching the kept mailbox ``DIR/<database>.json`` with the search code of the
    checkout ``source`` (``None``: this one): one JSON request per line in, one JSON answer per line out."""

    def __init__(self, directory: Path, database: str, admin_url: str, source: Path | None) -> None:
        env = dict(os.environ)
        if source is not None:
            env["PYTHONPATH"] = os.pathsep.join([str(source / "src"), env.get("PYTHONPATH", "")])
        command = [sys.executable, __file__, "--worker", str(directory), database, admin_url]
        self.process = subprocess.Popen(command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.code = self.ask({"code": True})["code"]

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        answer: dict[str, Any] = json.loads(self.process.stdout.readline())
        return answer

    def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=60)


def _serve(directory: str, database: str, admin_url: str) -> int:
    """The worker's loop: ``{"code": true}`` -> where ``email_service`` comes from; ``{"query", "sort"}`` -> one
    search's ``{"wall", "cpu", "hits"}``."""
    import email_service

    mailbox = api_latency.kept_mailbox(Path(directory), database, admin_url, 0)
    for line in sys.stdin:
        request = json.loads(line)
        if request.get("code"):
            answer: dict[str, Any] = {"code": str(Path(email_service.__file__).parents[1])}
        else:
            wall, cpu, hits = _once(mailbox, request["query"], request["sort"])
            answer = {"wall": wall, "cpu": cpu, "hits": hits}
        print(json.dumps(answer), flush=True)
    mailbox.ctx.db.dispose()
    return 0


def compare(
    directory: Path, database: str, admin_url: str, source: Path, repeat: int, before: Path | None = None
) -> dict[str, Any]:
    """``{"after": {label: summary}, "before": {...}}``: this checkout and ``source`` on the kept mailbox (``source``
    on the one kept in ``before`` when given: the same mailbox before this checkout's migrations), each repetition
    alternating between them (the first of each pair alternating too); two warm-up runs each."""
    workers = {"after": Worker(directory, database, admin_url, None),
               "before": Worker(before or directory, database, admin_url, source)}  # fmt: skip
    print(f"  {database}: after = {workers['after'].code}, before = {workers['before'].code}")
    results: dict[str, Any] = {"after": {}, "before": {}}
    try:
        for label, query, *sort in QUERIES:
            request = {"query": query, "sort": sort[0] if sort else "relevance"}
            times: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in workers}
            hits: dict[str, Any] = {}
            for index in range(repeat + 2):
                for name in list(workers)[:: 1 if index % 2 else -1]:
                    answer = workers[name].ask(request)
                    hits[name] = answer["hits"]
                    if index >= 2:  # the first two of each: warm-up
                        times[name][0].append(answer["wall"])
                        times[name][1].append(answer["cpu"])
            for name, (walls, cpus) in times.items():
                results[name][label] = _summary(query, hits[name], walls, cpus)
    finally:
        for worker in workers.values():
            worker.stop()
    return results


def _not_leakproof(mailbox: Mailbox) -> None:
    """Undo what migration 0011 does for a superuser (as an operator without one never gets it)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(mailbox.ctx.settings.database_migration_url)
    with engine.begin() as connection:
        for function in ("ts_match_vq(tsvector, tsquery)", "textlike(text, text)"):
            connection.execute(text(f"ALTER FUNCTION {function} NOT LEAKPROOF"))
    engine.dispose()


def _print_table(measured: dict[str, dict[str, dict[str, Any]]]) -> None:
    databases = list(measured)
    width = {db: max(17, len(db) + 6) for db in databases}
    header = f"{'query':<26}{'hits':>7}" + "".join(f"{db + ' p50':>{width[db]}}{'p95':>8}" for db in databases)
    print("\n" + header + ("   last/first p95" if len(databases) > 1 else ""))
    for label, *_ in QUERIES:
        first = measured[databases[0]][label]
        line = f"{label:<26}{first['hits']!s:>7}"
        for database in databases:
            result = measured[database][label]
            line += f"{result['p50_ms']:>{width[database]}.1f}{result['p95_ms']:>8.1f}"
        if len(databases) > 1:
            line += f"{measured[databases[-1]][label]['p95_ms'] / max(first['p95_ms'], 0.01):>15.2f}"
        print(line)
    for database in databases:
        worst = max(measured[database].values(), key=lambda r: r["p95_ms"])
        under = sum(1 for r in measured[database].values() if r["p95_ms"] < 50)
        print(f"{database}: {under} of {len(QUERIES)} under 50 ms p95; worst {worst['p95_ms']} ms ({worst['query']})")


def _measure(args: argparse.Namespace, database: str, workdir: Path, api: dict[str, Any]) -> dict[str, Any]:
    """``{run name: {label: summary}}`` for one database (see the module docstring); with ``--api-latency``, the wrk
    figures of this checkout on the same mailbox into ``api[database]``."""
    if args.compare:
        args.mailboxes.mkdir(parents=True, exist_ok=True)
        api_latency.kept_mailbox(args.mailboxes, database, args.postgres_url, args.count).ctx.db.dispose()
        both = compare(args.mailboxes, database, args.postgres_url, args.compare.resolve(), args.repeat,
                       args.before_mailboxes)  # fmt: skip
        return {f"{database} before": both["before"], f"{database} after": both["after"]}
    if args.mailboxes:
        args.mailboxes.mkdir(parents=True, exist_ok=True)
        mailbox = api_latency.kept_mailbox(args.mailboxes, database, args.postgres_url, args.count)
    else:
        mailbox = build(workdir / database, database, args.postgres_url, args.count)
    measured: dict[str, dict[str, Any]] = {}
    try:
        run_queries(mailbox, 2)  # warm the caches
        measured[database] = run_queries(mailbox, args.repeat)
        if args.api_latency:
            depth = args.count * 9 // 10
            api[database] = api_latency.measure(mailbox, args.api_latency, depth, {"this checkout": None})
        if database == "postgresql" and not args.mailboxes:  # the same database without 0011's LEAKPROOF
            _not_leakproof(mailbox)
            run_queries(mailbox, 2)
            measured["postgresql_no_leakproof"] = run_queries(mailbox, args.repeat)
    finally:
        close(mailbox)
    return measured


def main() -> int:
    if len(sys.argv) == 5 and sys.argv[1] == "--worker":
        return _serve(*sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "search.json"))
    parser.add_argument("--mailboxes", type=Path, help="use (or build and keep) the mailboxes kept in this directory")
    parser.add_argument("--compare", type=Path, help="a second checkout to measure side by side (needs --mailboxes)")
    parser.add_argument("--before-mailboxes", type=Path, help="with --compare: the mailboxes that checkout searches")
    parser.add_argument(
        "--api-latency", type=int, default=0, metavar="SECONDS",
        help="also run bench/api_latency.py's wrk measurements on the same mailboxes, SECONDS per endpoint",
    )  # fmt: skip
    args = parser.parse_args()
    if args.compare and not args.mailboxes:
        parser.error("--compare needs --mailboxes")
    workdir = Path(tempfile.mkdtemp(prefix="email-service-bench-search-"))
    measured: dict[str, dict[str, Any]] = {}
    api: dict[str, Any] = {}
    for database in ([] if args.no_sqlite else ["sqlite"]) + ([] if args.no_postgres else ["postgresql"]):
        measured.update(_measure(args, database, workdir, api))
    if args.compare:  # one table per database: before, after, and after/before
        for database in dict.fromkeys(name.split()[0] for name in measured):
            _print_table({name: rows for name, rows in measured.items() if name.split()[0] == database})
    else:
        _print_table(measured)
    write_results(args.output, {"count": args.count, "repeat": args.repeat, "databases": measured})
    if api:
        api_latency.report(api, args.count)
        write_results(str(Path(args.output).with_name("api_latency.json")),
                      {"count": args.count, "seconds": args.api_latency, "databases": api})  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
