"""Requests per second of the first list page with 1, 2 and 4 threads in one process, no HTTP server (issue 11).

Reads the mailbox that ``bench/api_latency.py --mailboxes DIR`` keeps (``DIR/<database>.json``), builds the app of
the checkout whose environment runs this file (rate limit lifted), and has N threads each call the Flask test client
on the folder's first page for ``--seconds``; prints requests per second and the machine's context switches per
request (``/proc/stat``, Linux).  One process, several threads: what a waitress process or a gunicorn worker does
with several connections at once, without the server.  A driver that releases the GIL often (``sqlite3`` releases
it around every row it steps) shows here as context switches and lost throughput (``bench/README.md``, stop 18).
To compare checkouts, run it with each one's environment, alternating (``cd OTHER && uv run --frozen python
THIS/bench/list_threads.py OTHER_DIR sqlite``).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.list_cpu import app_on_kept_mailbox


def _context_switches() -> int:
    with open("/proc/stat") as stat:
        return next(int(line.split()[1]) for line in stat if line.startswith("ctxt"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mailboxes", type=Path, help="the --mailboxes folder of bench/api_latency.py")
    parser.add_argument("database", choices=["sqlite", "postgresql"])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2, 4])
    args = parser.parse_args()
    app, kept, _, headers = app_on_kept_mailbox(args.mailboxes, args.database)
    url = f"/api/v1/accounts/{kept.account_id}/messages?folderId={kept.folder_id}&limit=50"
    warm = app.test_client()
    for _ in range(50):
        assert warm.get(url, headers=headers).status_code == 200
    for count in args.threads:
        done = [0] * count
        stop = time.perf_counter() + args.seconds

        def run(index: int, until: float = stop, counts: list[int] = done) -> None:
            client = app.test_client()
            while time.perf_counter() < until:
                client.get(url, headers=headers)
                counts[index] += 1

        before = _context_switches()
        threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        total = sum(done)
        switches = (_context_switches() - before) / max(total, 1)
        print(f"threads {count}: {total / args.seconds:.0f} req/s, {switches:.0f} context switches per request")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
