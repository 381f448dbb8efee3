"""Incremental sync cost: a sync that finds nothing and one that finds 100 new messages, against mbsync, one run.

For each folder size (default 10,000 and 100,000 messages in INBOX of a private Dovecot with CONDSTORE/QRESYNC),
the service (in-process, ``sync_account`` as a job runs it) on SQLite and on PostgreSQL and mbsync (Debian
``isync``) each mirror the mailbox once (not timed), then in ``--repeat`` interleaved rounds:

* ``no-change``: a sync with nothing new on the server;
* ``+N new``: ``--new`` messages are delivered (Maildir files, then one SELECT so Dovecot has indexed them before
  anyone is timed) and each mirror syncs them.

``raw_poll`` is the IMAP floor of a sync that finds nothing, with imaplib and nothing stored: LOGIN, ENABLE QRESYNC,
LIST, EXAMINE of every folder, LOGOUT (what the service sends then).  Prints the median milliseconds of each and the
ratios to mbsync and to ``raw_poll``, and writes them as JSON (default ``bench/results/incremental.json``).  Run::

    uv run python bench/incremental.py [--sizes 10000 100000] [--new 100] [--size 2000] [--repeat 5] [--no-postgres]
"""

from __future__ import annotations

import argparse
import imaplib
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.sync_throughput import BenchService, generate_messages, time_mbsync, write_results
from tests.support.dovecot import Dovecot

Timer = Callable[[], float]


def _index(server: Dovecot, user: str, password: str) -> None:
    """SELECT INBOX once (read-write, so Dovecot saves its index) so newly written Maildir files are indexed before
    anyone is timed."""
    client = imaplib.IMAP4(server.host, server.imap_port)
    client.login(user, password)
    client.select("INBOX")
    client.logout()


def raw_poll(server: Dovecot, user: str, password: str) -> float:
    """Seconds for LOGIN, ENABLE QRESYNC, LIST, EXAMINE of every mailbox, LOGOUT with imaplib."""
    started = time.perf_counter()
    client = imaplib.IMAP4(server.host, server.imap_port)
    client.login(user, password)
    client._simple_command("ENABLE", "QRESYNC")
    _typ, listing = client.list()
    for line in listing:
        name = (line.decode() if isinstance(line, bytes) else str(line)).rsplit(" ", 1)[-1].strip('"')
        client.select(name, readonly=True)
    client.logout()
    return time.perf_counter() - started


def _mirrors(server: Dovecot, user: str, password: str, workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Each mirror set up and given its first full sync: ``{name: (timer, closer)}`` (``raw_poll`` first)."""
    mirrors: dict[str, Any] = {"raw_poll": (lambda: raw_poll(server, user, password), lambda: None)}
    databases = ["sqlite"] + ([] if args.no_postgres else ["postgresql"])
    for database in databases:
        service = BenchService(server, user, password, workdir, database, args.postgres_url)
        started = time.perf_counter()
        service.sync()
        print(f"  service_{database}: first sync {time.perf_counter() - started:.1f} s")
        mirrors[f"service_{database}"] = (lambda service=service: service.sync()[0], service.close)
    if shutil.which("mbsync"):
        mbsync_dir = workdir / "mbsync"
        started = time.perf_counter()
        time_mbsync(server, user, password, mbsync_dir)
        print(f"  mbsync: first sync {time.perf_counter() - started:.1f} s")
        mirrors["mbsync"] = (lambda: _timed_mbsync(server, user, password, mbsync_dir), lambda: None)
    return mirrors


def _timed_mbsync(server: Dovecot, user: str, password: str, workdir: Path) -> float:
    """mbsync, after a pause: isync waits until its Maildir's last change is over a second old before it syncs
    (its guard against same-second Maildir timestamps), which would add up to 1 s right after it stored mail."""
    time.sleep(1.1)
    measured = time_mbsync(server, user, password, workdir)
    assert measured is not None
    return measured[0]


def measure_size(server: Dovecot, count: int, workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Rounds of no-change and +new syncs of a ``count``-message INBOX: ``{case: {mirror: [seconds, ...]}}``."""
    user, password = server.new_user()
    server.write_maildir(user, "INBOX", generate_messages(count, args.size))
    _index(server, user, password)
    print(f"INBOX of {count} messages of ~{args.size} bytes")
    mirrors = _mirrors(server, user, password, workdir / f"n{count}", args)
    cases: dict[str, dict[str, list[float]]] = {"no-change": {}, f"+{args.new} new": {}}
    try:
        for number in range(args.repeat):
            for name, (timer, _close) in mirrors.items():
                cases["no-change"].setdefault(name, []).append(timer())
            server.write_maildir(user, "INBOX", generate_messages(args.new, args.size, seed=1000 + number))
            _index(server, user, password)
            for name, (timer, _close) in mirrors.items():
                cases[f"+{args.new} new"].setdefault(name, []).append(timer())
            line = "; ".join(f"{case} " + ", ".join(f"{n} {v[-1] * 1000:.0f}" for n, v in runs.items())
                             for case, runs in cases.items())  # fmt: skip
            print(f"  round {number + 1}: {line} ms")
    finally:
        for _timer, close in mirrors.values():
            close()
    return cases


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--new", type=int, default=100, help="messages delivered before each +N sync")
    parser.add_argument("--size", type=int, default=2_000, help="approximate message size in bytes")
    parser.add_argument("--repeat", type=int, default=5, help="interleaved rounds; medians are reported")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "incremental.json"))
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="email-service-bench-"))
    results: dict[str, Any] = {"new": args.new, "approx_size": args.size, "repeat": args.repeat, "sizes": {}}
    try:
        with Dovecot.start() as server:
            measured = {count: measure_size(server, count, workdir, args) for count in args.sizes}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    print(f"\n{'folder':>8}  {'case':<10}{'mirror':<20}{'median ms':>10}{'x mbsync':>10}{'x raw_poll':>11}")
    for count, cases in measured.items():
        results["sizes"][count] = {}
        for case, runs in cases.items():
            medians = {name: statistics.median(values) for name, values in runs.items()}
            ratios = {ref: {n: m / medians[ref] for n, m in medians.items()} if medians.get(ref) else {}
                      for ref in ("mbsync", "raw_poll")}  # fmt: skip
            for name, median in medians.items():
                shown = [f"{r[name]:.2f}" if name in r else "-" for r in ratios.values()]
                print(f"{count:>8}  {case:<10}{name:<20}{median * 1000:>10.1f}{shown[0]:>10}{shown[1]:>11}")
                results["sizes"][count].setdefault(case, {})[name] = {
                    "median_ms": round(median * 1000, 1),
                    "rounds_ms": [round(value * 1000, 1) for value in runs[name]],
                    **{f"ratio_to_{ref}": round(r[name], 3) if name in r else None for ref, r in ratios.items()},
                }
    write_results(args.output, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
