"""Scale-out: many accounts on Celery workers, and the API on gunicorn against the embedded server, in one run.

Against one private Dovecot, ``--accounts`` accounts (default 1,000; ``--messages`` small messages each) in a
database of their own (PostgreSQL at ``--postgres``, the app connecting as the non-owner role; ``--sqlite`` for a
file), with real ``email-service`` processes:

1. ``backlog``: 2 Celery workers (``email-service worker --concurrency 1`` each) and 1 beat (tick 1 s) start with
   every account due: syncs per minute while the backlog drains, scheduler lag (due time to start) p50/p99.
2. ``steady``: every account's ``syncInterval`` set to ``--interval`` seconds; for two intervals the beat queues
   each account when it is due: syncs per minute, scheduler lag p50/p99 (due = last attempt or success plus the
   interval).  RSS of each worker (main process plus its pool process) sampled every second: peak.
3. ``api``: ``GET /api/v1/accounts/{id}/messages?limit=20`` with ``wrk`` (Debian package ``wrk``) against
   ``email-service serve`` in production (gunicorn, ``WEB_CONCURRENCY=2`` x 4 threads) and in the embedded default
   (waitress, one process, 8 threads), one after the other, workers stopped: requests/second and latency.

Prints tables and writes ``bench/results/scale_accounts.json``.  Uses Redis db 13 at ``--redis`` (flushed before
and after).  Run::

    uv run python bench/scale_accounts.py [--accounts 1000] [--interval 120] [--sqlite]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import redis
from sqlalchemy import select, update
from tests.support.databases import migrated_database
from tests.support.dovecot import Dovecot
from tests.support.services import ServiceProcess, free_port, wait_until

from email_service.config import Settings
from email_service.models import EmailAccount, SyncRun
from email_service.security.credentials import generate_key
from email_service.security.tokens import Principal, create_jwt_token
from email_service.services import accounts
from email_service.services.context import ServiceContext, build_context

ROOT = Path(__file__).resolve().parents[1]
TENANTS = 20


def _env(data_dir: Path, urls: tuple[str, str], redis_url: str) -> dict[str, str]:
    return {
        "EMAIL_SERVICE_DATA_DIR": str(data_dir),
        "DATABASE_URL": urls[1],
        "DATABASE_MIGRATION_URL": urls[0],
        "JWT_SECRET_KEY": "bench-" + "j" * 40,
        "CREDENTIAL_ENCRYPTION_KEYS": generate_key(),
        "CORS_ORIGINS": "http://localhost:3000",
        "JOB_RUNNER": "celery",
        "CELERY_BROKER_URL": redis_url,
        "SCHEDULER_TICK_SECONDS": "1",
        "RATE_LIMIT": "100000000 per minute",
        "LOG_LEVEL": "INFO",  # the workers say "ready." at INFO
        "LOG_FORMAT": "json",
        "MAIL_TIMEOUT_SECONDS": "30",
        "AUTO_UPGRADE_DB": "false",
    }


def _create_accounts(ctx: ServiceContext, dovecot: Dovecot, count: int, messages: int) -> list[tuple[Principal, str]]:
    tenants = [uuid.uuid4() for _ in range(TENANTS)]
    created = []
    for i in range(count):
        user, password = dovecot.new_user()
        dovecot.write_maildir(
            user, "INBOX", (f"Subject: m{j}\n\nbody {j} of {user}\n".encode() for j in range(messages))
        )
        principal = Principal(tenants[i % TENANTS], uuid.uuid4(), "user")
        fields = {
            "account_name": f"bench {i}",
            "email_address": user,
            "protocol": "imap",
            "hostname": dovecot.host,
            "port": dovecot.imap_port,
            "encryption": "none",
            "username": user,
        }
        account = accounts.create_account(ctx, principal=principal, fields=fields, password=password)
        created.append((principal, str(account.id)))
    return created


def _runs(ctx: ServiceContext, tenants: set[uuid.UUID]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for tenant_id in tenants:
        with ctx.db.tenant_session(tenant_id) as session:
            for run in session.execute(select(SyncRun).where(SyncRun.tenant_id == tenant_id)).scalars():
                rows.append(
                    {
                        "account": run.account_id,
                        "created": run.created_at,
                        "started": run.started_at,
                        "finished": run.finished_at,
                        "state": run.state,
                    }
                )
    return rows


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class RssSampler:
    """Peak resident memory of each worker's process tree (main + pool processes), sampled every second."""

    def __init__(self, pids: list[int]) -> None:
        self.pids, self.peak = pids, {pid: 0 for pid in pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    @staticmethod
    def _tree_rss_kib(pid: int) -> int:
        total = 0
        for candidate in Path("/proc").iterdir():
            if not candidate.name.isdigit():
                continue
            try:
                status = (candidate / "status").read_text()
            except OSError:
                continue
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            if int(candidate.name) == pid or int(fields.get("PPid", "0").strip()) == pid:
                total += int(fields.get("VmRSS", "0 kB").split()[0])
        return total

    def _loop(self) -> None:
        while not self._stop.wait(1.0):
            for pid in self.pids:
                self.peak[pid] = max(self.peak[pid], self._tree_rss_kib(pid))

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def _phase(ctx: ServiceContext, tenants: set[uuid.UUID], since_ms: int, interval_s: int | None) -> dict[str, Any]:
    """Syncs per minute and scheduler lag of the runs created after ``since_ms``."""
    runs = sorted(_runs(ctx, tenants), key=lambda r: r["created"])
    by_account: dict[Any, list[dict[str, Any]]] = {}
    for run in runs:
        by_account.setdefault(run["account"], []).append(run)
    lags, done = [], []
    for history in by_account.values():
        for previous, run in zip([None, *history], history, strict=False):
            if run["created"] < since_ms or run["started"] is None:
                continue
            if run["finished"] is not None:
                done.append(run)
            if interval_s is None or previous is None:
                due = since_ms  # every account was due when the phase began
            else:
                due = max(previous["created"], previous["finished"] or 0) + interval_s * 1000
            lags.append((run["started"] - due) / 1000)
    if not done:
        return {"syncs": 0}
    span = (max(r["finished"] for r in done) - since_ms) / 60_000
    return {
        "syncs": len(done),
        "failed": sum(r["state"] == "failed" for r in done),
        "syncs_per_minute": len(done) / span,
        "lag_p50_s": _percentile(lags, 0.5),
        "lag_p99_s": _percentile(lags, 0.99),
    }


def _wrk(url: str, token: str, seconds: int) -> dict[str, float]:
    output = subprocess.run(
        ["wrk", "-t2", "-c16", f"-d{seconds}s", "--latency", "-H", f"Authorization: Bearer {token}", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)

    def latency(label: str) -> float:
        value, unit = re.search(rf"{label}\s+([\d.]+)(us|ms|s)", output).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    return {
        "rps": rps,
        "p50_ms": latency("50%"),
        "p99_ms": latency("99%"),
        "non_2xx": int(errors.group(1)) if errors else 0,
    }


def _api_bench(env: dict[str, str], logs: Path, principal: Principal, account_id: str, seconds: int) -> dict[str, Any]:
    settings = Settings.from_env(env)
    token = create_jwt_token(build_context(settings).tokens, tenant_id=principal.tenant_id, user_id=principal.user_id)
    path = f"/api/v1/accounts/{account_id}/messages?limit=20"
    modes = {
        "gunicorn (2 workers x 4 threads)": {
            "FLASK_ENV": "production",
            "CORS_ORIGINS": "https://mail.example.com",
            "WEB_CONCURRENCY": "2",
            "WEB_THREADS": "4",
        },
        "waitress (embedded, 1 process x 8 threads)": {"JOB_RUNNER": "inprocess", "SCHEDULER_ENABLED": "false"},
    }
    results = {}
    for name, extra in modes.items():
        port = free_port()
        server = ServiceProcess(["serve", "--port", str(port)], env | extra, logs / f"serve-{port}.log").start()
        try:
            wait_until(lambda p=port: _answers(p), 60, f"{name} to answer")
            _wrk(f"http://127.0.0.1:{port}{path}", token, 2)  # warm-up
            results[name] = _wrk(f"http://127.0.0.1:{port}{path}", token, seconds)
        finally:
            server.stop()
    return results


def _answers(port: int) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _sync_phases(
    ctx: ServiceContext, env: dict[str, str], work: Path, tenants: set[uuid.UUID], accounts: int, interval: int | None
) -> dict[str, Any]:
    """The backlog and steady phases on 2 workers and 1 beat, and the workers' peak RSS."""
    report: dict[str, Any] = {}
    workers = [
        ServiceProcess(["worker", "--concurrency", "1"], env, work / f"worker-{i}.log").start() for i in range(2)
    ]
    beat: ServiceProcess | None = None
    try:
        with RssSampler([w.pid for w in workers]) as rss:
            wait_until(lambda: all("ready." in w.output() for w in workers), 120, "the workers", interval=0.5)
            started_ms = int(time.time() * 1000)
            beat = ServiceProcess(["beat"], env, work / "beat.log").start()
            wait_until(
                lambda: _phase(ctx, tenants, started_ms, None)["syncs"] >= accounts,
                3600,
                "the backlog",
                interval=2,
            )
            report["backlog"] = _phase(ctx, tenants, started_ms, None)
            drain_s = report["backlog"]["syncs"] / report["backlog"]["syncs_per_minute"] * 60
            interval = interval or max(30, int(drain_s * 1.5))
            steady_ms = int(time.time() * 1000)
            for tenant_id in tenants:
                with ctx.db.tenant_session(tenant_id) as session:
                    session.execute(
                        update(EmailAccount).where(EmailAccount.tenant_id == tenant_id).values(sync_interval=interval)
                    )
            time.sleep(2 * interval + 5)
            beat.stop()
            time.sleep(5)
            report["steady"] = {"interval_s": interval, **_phase(ctx, tenants, steady_ms, interval)}
        report["worker_rss_peak_mib"] = [round(kib / 1024, 1) for kib in rss.peak.values()]
    finally:  # never leave a worker consuming the broker
        for process in [*workers, *([beat] if beat else [])]:
            process.stop()
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=5, help="messages per account")
    parser.add_argument(
        "--interval", type=int, default=None, help="steady-phase syncInterval (default: 1.5 x backlog drain time)"
    )
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--sqlite", action="store_true", help="an SQLite file instead of PostgreSQL")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--api-seconds", type=int, default=10)
    parser.add_argument("--output", type=Path, default=ROOT / "bench/results/scale_accounts.json")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (process logs) and print it")
    args = parser.parse_args()
    for tool in ("wrk", "dovecot"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            print(f"{tool} is not installed", file=sys.stderr)
            return 2
    work = Path(tempfile.mkdtemp(prefix="email-service-scale-"))
    broker = redis.Redis.from_url(args.redis)
    broker.flushdb()
    report: dict[str, Any] = {"accounts": args.accounts, "messages_per_account": args.messages}
    try:
        with (
            Dovecot.start() as dovecot,
            migrated_database(work, "scale", None if args.sqlite else args.postgres) as urls,
        ):
            env = _env(work, urls, args.redis)
            ctx = build_context(Settings.from_env(env))
            t0 = time.monotonic()
            created = _create_accounts(ctx, dovecot, args.accounts, args.messages)
            tenants = {principal.tenant_id for principal, _ in created}
            print(f"created {len(created)} accounts in {time.monotonic() - t0:.1f} s")
            report.update(_sync_phases(ctx, env, work, tenants, args.accounts, args.interval))
            report["api"] = _api_bench(env, work, created[0][0], created[0][1], args.api_seconds)
            ctx.db.dispose()
    finally:
        broker.flushdb()
        broker.close()
        if args.keep:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    _print(report)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, default=str))
    return 0


def _print(report: dict[str, Any]) -> None:
    print(f"\n{report['accounts']} accounts x {report['messages_per_account']} messages, 2 Celery workers, 1 beat")
    print(f"{'phase':<10} {'syncs':>6} {'failed':>6} {'syncs/min':>10} {'lag p50':>8} {'lag p99':>8}")
    for phase in ("backlog", "steady"):
        row = report[phase]
        print(
            f"{phase:<10} {row['syncs']:>6} {row.get('failed', 0):>6} {row.get('syncs_per_minute', 0):>10.0f} "
            f"{row.get('lag_p50_s', 0):>7.1f}s {row.get('lag_p99_s', 0):>7.1f}s"
        )
    print(f"steady interval {report['steady']['interval_s']} s; worker RSS peak (MiB): {report['worker_rss_peak_mib']}")
    api = report["api"]
    base = next(v["rps"] for k, v in api.items() if k.startswith("waitress"))
    print(f"\n{'server':<44} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'x waitress':>10} {'non-2xx':>7}")
    for name, row in api.items():
        print(
            f"{name:<44} {row['rps']:>8.0f} {row['p50_ms']:>7.1f} {row['p99_ms']:>7.1f} {row['rps'] / base:>10.2f} "
            f"{row['non_2xx']:>7}"
        )


if __name__ == "__main__":
    sys.exit(main())
