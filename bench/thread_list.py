"""The thread list in-process, this checkout against another, on kept 100,000-message mailboxes (issue 11, stop 16).

Calls ``services.thread_list.list_threads`` directly (no HTTP, no server): the first page, the page of the mailbox's
folder, and a page at offset 1,000 and 10,000 threads, ``--repeat`` times each, in one worker process per checkout
(``PYTHONPATH`` first on the checkout's ``src``), the two workers alternating call by call so both share the
machine's load.  Prints the median and p95 wall ms and the median process-CPU ms per call, and the ratios.  Each
checkout reads its own copy of the mailbox (``--mailboxes`` / ``--compare-mailboxes``, as ``bench/api_latency.py``
keeps them: a copy at that checkout's migration).  Run::

    uv run python bench/thread_list.py --mailboxes DIR --compare CHECKOUT --compare-mailboxes DIR0 [--database sqlite]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

_WORKER = r"""
import json, sys, time, uuid
from pathlib import Path
from email_service.config import Settings
from email_service.security.tokens import Principal
from email_service.services import thread_list
from email_service.services.context import build_context
info = json.loads((Path(sys.argv[2]) / f"{sys.argv[3]}.json").read_text())
keys = ("EMAIL_SERVICE_DATA_DIR", "DATABASE_URL", "DATABASE_MIGRATION_URL", "JWT_SECRET_KEY",
        "CREDENTIAL_ENCRYPTION_KEYS")
ctx = build_context(Settings.from_env({key: info[key] for key in keys}))
principal = Principal(uuid.UUID(info["tenant"]), uuid.UUID(info["user"]), "user")
account_id, folder_id = uuid.UUID(info["account"]), uuid.UUID(info["folder"])
calls = {"first page": {}, "page in the folder": {"folder_id": folder_id},
         "offset 1000": {"offset": 1000}, "offset 10000": {"offset": 10000}}
for line in sys.stdin:
    kwargs = calls[line.strip()]
    wall, cpu = time.perf_counter(), time.process_time()
    thread_list.list_threads(ctx, principal=principal, account_id=account_id, limit=50, **kwargs)
    print(json.dumps([1000 * (time.perf_counter() - wall), 1000 * (time.process_time() - cpu)]), flush=True)
"""
CALLS = ("first page", "page in the folder", "offset 1000", "offset 10000")


def _worker(checkout: Path, mailboxes: Path, database: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(checkout / "src"), os.environ.get("PYTHONPATH", "")])}
    here = str(Path(__file__).resolve().parents[1])
    return subprocess.Popen([sys.executable, "-c", _WORKER, here, str(mailboxes), database], env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)  # fmt: skip


def _call(worker: subprocess.Popen[str], name: str) -> tuple[float, float]:
    assert worker.stdin and worker.stdout
    worker.stdin.write(name + "\n")
    worker.stdin.flush()
    wall, cpu = json.loads(worker.stdout.readline())
    return float(wall), float(cpu)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mailboxes", type=Path, required=True)
    parser.add_argument("--compare", type=Path, required=True)
    parser.add_argument("--compare-mailboxes", type=Path, required=True)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    this = Path(__file__).resolve().parents[1]
    workers = {"this": _worker(this, args.mailboxes, args.database),
               "other": _worker(args.compare.resolve(), args.compare_mailboxes, args.database)}  # fmt: skip
    found: dict[str, dict[str, list[tuple[float, float]]]] = {key: {} for key in workers}
    try:
        for name in CALLS:
            for index in range(args.repeat + 1):
                order = list(workers) if index % 2 else list(reversed(workers))
                for key in order:
                    timing = _call(workers[key], name)
                    if index:  # the first call of each warms the caches
                        found[key].setdefault(name, []).append(timing)
    finally:
        for worker in workers.values():
            worker.kill()
    print(f"{args.database}: median / p95 wall ms, median CPU ms; this checkout vs {args.compare}")
    print(f"{'call':<20}{'this':>26}{'other':>26}{'wall ratio':>12}{'cpu ratio':>11}")
    for name in CALLS:
        cells = []
        for key in workers:
            walls = sorted(wall for wall, _ in found[key][name])
            cpus = [cpu for _, cpu in found[key][name]]
            cells.append((statistics.median(walls), walls[int(0.95 * (len(walls) - 1))], statistics.median(cpus)))
        (w1, p1, c1), (w2, p2, c2) = cells
        print(f"{name:<20}{f'{w1:.1f} / {p1:.1f} / {c1:.1f}':>26}{f'{w2:.1f} / {p2:.1f} / {c2:.1f}':>26}"
              f"{w1 / w2:>12.3f}{c1 / c2:>11.3f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
