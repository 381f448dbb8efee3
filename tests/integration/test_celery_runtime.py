"""Jobs on real Celery workers (issue 7): ``email-service worker``, ``beat`` and ``push`` started as processes
against the Redis at 127.0.0.1:6379 (db 13 the broker, db 14 the lease tests) and a database of their own
(SQLite file, or PostgreSQL with ``TEST_DATABASE_URL``), with the API in this process queueing through Celery.

The broker's visibility timeout is 15 s here (production: the longest job limit plus ten minutes), so that the
job of a worker killed with ``kill -9`` is delivered again within the test.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select, update

from email_service.app import create_app
from email_service.config import Settings
from email_service.models import EmailAccount, EmailMessage, SyncRun
from email_service.services.context import ServiceContext
from email_service.tasks.lease import DEFAULT_KEY, RedisLease
from email_service.tasks.runtime import start_job_runtime
from tests.conftest import Caller, create_imap_account, settings_env, wait_for_sync
from tests.support.databases import migrated_database
from tests.support.dovecot import Dovecot
from tests.support.services import ServiceProcess, free_port, sample, scrape, wait_until

pytestmark = pytest.mark.integration

BROKER_URL = "redis://127.0.0.1:6379/13"
LEASE_URL = "redis://127.0.0.1:6379/14"
VISIBILITY_SECONDS = 15


@dataclass
class Runtime:
    """The API of this process (jobs go to Celery) and the worker/beat processes a test started."""

    env: dict[str, str]
    ctx: ServiceContext
    client: FlaskClient
    logs: Path
    processes: list[ServiceProcess] = field(default_factory=list)
    _names: Iterator[int] = field(default_factory=itertools.count)

    def start(self, *args: str, **env: str) -> ServiceProcess:
        """``email-service <args>`` with metrics on a free port (``process.metrics_url``)."""
        port = free_port()
        name = f"{args[0]}-{next(self._names)}.log"
        process = ServiceProcess(list(args), self.env | {"METRICS_PORT": str(port), **env}, self.logs / name)
        process.metrics_url = f"http://127.0.0.1:{port}/metrics"
        self.processes.append(process.start())
        return process

    def api_metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        text = self.client.get("/metrics").get_data(as_text=True)
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }


def _flush(url: str) -> None:
    client = redis.Redis.from_url(url)
    client.flushdb()  # our own db number only
    client.close()


@pytest.fixture(scope="module")
def runtime(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    _flush(BROKER_URL)
    with migrated_database(data_dir, "celery") as urls:
        env = settings_env(
            data_dir,
            urls,
            JOB_RUNNER="celery",
            CELERY_BROKER_URL=BROKER_URL,
            CELERY_VISIBILITY_TIMEOUT=str(VISIBILITY_SECONDS),
            RATE_LIMIT="100000 per minute",
            LOG_FORMAT="json",
            SCHEDULER_TICK_SECONDS="1",
            SYNC_BATCH_SIZE="50",
        )
        jobs = start_job_runtime(Settings.from_env(env))
        runtime = Runtime(env, jobs.ctx, create_app(context=jobs.ctx).test_client(), tmp_path_factory.mktemp("logs"))
        try:
            yield runtime
        finally:
            jobs.ctx.db.dispose()
            _flush(BROKER_URL)


@pytest.fixture(autouse=True)
def _processes_stopped(runtime: Runtime) -> Iterator[None]:
    """Each test's workers and beats end with the test (a clean stop; pool processes too)."""
    yield
    while runtime.processes:
        runtime.processes.pop().stop()


def _stored_uids(ctx: ServiceContext, tenant_id: uuid.UUID, account_id: str) -> list[int]:
    with ctx.db.tenant_session(tenant_id) as session:
        return [
            uid
            for uid in session.execute(
                select(EmailMessage.uid).where(EmailMessage.account_id == uuid.UUID(account_id))
            ).scalars()
            if uid is not None
        ]


def _server_uids(dovecot: Dovecot, user: str) -> set[int]:
    with dovecot.imap(user) as imap:
        imap.select_folder("INBOX", readonly=True)
        return set(imap.search("ALL"))


def test_a_sync_request_runs_in_the_worker_and_the_messages_appear(
    runtime: Runtime, dovecot: Dovecot, mail_user: tuple[str, str]
) -> None:
    user, password = mail_user
    dovecot.write_maildir(user, "INBOX", (f"Subject: celery {i}\n\nbody {i}\n".encode() for i in range(30)))
    caller = Caller(runtime.ctx)
    worker = runtime.start("worker", "--concurrency", "1")
    account_id = create_imap_account(runtime.client, caller, dovecot.host, dovecot.imap_port, user, password)
    route = "/api/v1/accounts/<uuid:account_id>/sync"
    before = runtime.api_metrics()

    started = runtime.client.post(f"/api/v1/accounts/{account_id}/sync", headers=caller.headers)
    assert started.status_code == 202
    status = wait_for_sync(runtime.client, account_id, caller.headers, timeout=60)
    assert status["state"] == "succeeded" and status["counts"]["messagesAdded"] == 30

    listed = runtime.client.get(f"/api/v1/accounts/{account_id}/messages?limit=100", headers=caller.headers)
    assert {m["subject"] for m in listed.get_json()["messages"]} == {f"celery {i}" for i in range(30)}
    # The sync ran in the worker process: its metrics moved, merged over its pool processes.
    worked = wait_until(
        lambda: (
            (m := scrape(worker.metrics_url)) and sample(m, "email_service_sync_runs_total", outcome="succeeded") and m
        ),
        10,
        "the worker's metrics",
    )
    assert sample(worked, "email_service_sync_runs_total", outcome="succeeded") == 1
    assert sample(worked, "email_service_sync_messages_total", change="added") == 30
    assert sample(worked, "email_service_sync_duration_seconds_count") == 1
    assert sample(worked, "email_service_jobs_finished_total", kind="sync_account", outcome="succeeded") == 1
    assert sample(worked, "email_service_jobs_running", kind="sync_account") == 0
    after = runtime.api_metrics()
    queued = "email_service_jobs_queued_total"
    assert sample(after, queued, kind="sync_account") - sample(before, queued, kind="sync_account") == 1
    posted = {"method": "POST", "route": route, "status": "202"}
    assert (
        sample(after, "email_service_http_requests_total", **posted)
        - sample(before, "email_service_http_requests_total", **posted)
        == 1
    )


def test_a_worker_killed_mid_sync_leaves_the_job_to_the_next_worker(
    runtime: Runtime, dovecot: Dovecot, mail_user: tuple[str, str]
) -> None:
    user, password = mail_user
    count = 2000
    dovecot.write_maildir(
        user,
        "INBOX",
        (f"Subject: k{i}\nMessage-ID: <k{i}@example.com>\n\n{'x' * 300}\n".encode() for i in range(count)),
    )
    caller = Caller(runtime.ctx)
    account_id = create_imap_account(runtime.client, caller, dovecot.host, dovecot.imap_port, user, password)
    first = runtime.start("worker", "--concurrency", "1")
    sync_id = runtime.client.post(f"/api/v1/accounts/{account_id}/sync", headers=caller.headers).get_json()["syncId"]

    wait_until(
        lambda: 0 < len(_stored_uids(runtime.ctx, caller.tenant_id, account_id)) < count,
        60,
        "the first worker to be mid-sync",
        interval=0.02,
    )
    first.kill()  # kill -9 of the worker and its pool process
    stored_at_kill = len(_stored_uids(runtime.ctx, caller.tenant_id, account_id))
    assert 0 < stored_at_kill < count
    status = runtime.client.get(f"/api/v1/accounts/{account_id}/sync", headers=caller.headers).get_json()
    assert (status["syncId"], status["state"]) == (sync_id, "running")

    second = runtime.start("worker", "--concurrency", "1")
    status = wait_for_sync(runtime.client, account_id, caller.headers, timeout=VISIBILITY_SECONDS + 75)
    assert (status["syncId"], status["state"]) == (sync_id, "succeeded")  # the same job, delivered again
    stored = _stored_uids(runtime.ctx, caller.tenant_id, account_id)
    assert len(stored) == len(set(stored)) == count  # no duplicate, no gap
    assert set(stored) == _server_uids(dovecot, user)
    folders = runtime.client.get(f"/api/v1/accounts/{account_id}/folders", headers=caller.headers).get_json()
    assert next(f for f in folders["folders"] if f["role"] == "inbox")["totalCount"] == count
    worked = scrape(second.metrics_url)
    assert sample(worked, "email_service_jobs_finished_total", kind="sync_account", outcome="succeeded") == 1


def _scheduled_runs(ctx: ServiceContext, tenant_id: uuid.UUID, account_id: str) -> list[tuple[int, str, str]]:
    with ctx.db.tenant_session(tenant_id) as session:
        rows = session.execute(
            select(SyncRun.created_at, SyncRun.state, SyncRun.trigger)
            .where(SyncRun.account_id == uuid.UUID(account_id))
            .order_by(SyncRun.created_at)
        ).all()
    return [(created, state, trigger) for created, state, trigger in rows]


def _ready(worker: ServiceProcess) -> bool:
    """The worker logged Celery's ``<hostname> ready.``; AssertionError with its log if it exited first."""
    if not worker.running():
        raise AssertionError(f"the worker exited before it was ready:\n{worker.output()[-4000:]}")
    return any(str(line.get("event", "")).endswith(" ready.") for line in worker.json_lines())


def _wait_ready(worker: ServiceProcess) -> None:
    """Wait for ``_ready`` (2 minutes: a loaded 2-core CI machine starts several pool processes at once); the
    worker's log in the failure otherwise."""
    try:
        wait_until(lambda: _ready(worker), 120, "the worker to consume")
    except AssertionError as timed_out:
        raise AssertionError(f"{timed_out}; its log:\n{worker.output()[-4000:]}") from None


def _leader_pid() -> int | None:
    client = redis.Redis.from_url(BROKER_URL)  # beat leases in REDIS_URL, else the broker's Redis
    try:
        token = client.get(DEFAULT_KEY)
    finally:
        client.close()
    return int(token.decode().split(":")[1]) if token else None


def test_two_workers_and_two_beats_sync_each_due_account_once_per_interval(runtime: Runtime, dovecot: Dovecot) -> None:
    interval, caller = 3, Caller(runtime.ctx)
    account_ids = []
    for _ in range(3):
        user, password = dovecot.new_user()
        dovecot.append(user, "INBOX", b"Subject: due\r\n\r\nbody\r\n")
        account_ids.append(create_imap_account(runtime.client, caller, dovecot.host, dovecot.imap_port, user, password))
    with runtime.ctx.db.tenant_session(caller.tenant_id) as session:  # the API's minimum is 60 s: shortened here
        session.execute(
            update(EmailAccount).where(EmailAccount.tenant_id == caller.tenant_id).values(sync_interval=interval)
        )
    workers = [runtime.start("worker", "--concurrency", "1") for _ in range(2)]
    for worker in workers:
        _wait_ready(worker)
    beats = [runtime.start("beat"), runtime.start("beat")]
    leader_pid = wait_until(_leader_pid, 30, "a beat to take the lease")
    assert leader_pid in {beat.pid for beat in beats}
    observed = time.monotonic()
    time.sleep(4 * interval)
    assert _leader_pid() == leader_pid  # one leader all along: the other beat never ticked
    leader = next(beat for beat in beats if beat.pid == leader_pid)
    follower = next(beat for beat in beats if beat.pid != leader_pid)
    assert leader.stop() == 0  # a clean stop hands the lease over at once
    assert wait_until(lambda: _leader_pid() == follower.pid, 10, "the other beat to take over")
    follower.stop()
    elapsed_ms = (time.monotonic() - observed) * 1000 + 2 * interval * 1000
    for account_id in account_ids:
        wait_until(
            lambda a=account_id: all(
                s in ("succeeded", "failed") for _c, s, _t in _scheduled_runs(runtime.ctx, caller.tenant_id, a)
            ),
            30,
            "the last runs to finish",
        )
        runs = _scheduled_runs(runtime.ctx, caller.tenant_id, account_id)
        assert {(state, trigger) for _c, state, trigger in runs} == {("succeeded", "scheduler")}
        gaps = [later - earlier for (earlier, _s, _t), (later, _s2, _t2) in itertools.pairwise(runs)]
        assert len(runs) >= 2 and all(gap >= interval * 1000 for gap in gaps), gaps  # once per interval
        assert len(runs) <= elapsed_ms / (interval * 1000) + 1
    leaders = [b for b in beats if any(r.get("event") == "scheduler leadership taken" for r in b.json_lines())]
    assert {b.pid for b in leaders} == {leader_pid, follower.pid}
    for worker in workers:
        assert worker.running(), worker.output()[-4000:]


def test_the_beat_lease_has_one_holder_and_passes_on_when_it_expires_or_is_released() -> None:
    _flush(LEASE_URL)
    first = RedisLease(LEASE_URL, ttl_seconds=1, key="test:lease")
    second = RedisLease(LEASE_URL, ttl_seconds=1, key="test:lease")
    try:
        assert first.hold() and not second.hold()
        assert first.hold() and not second.hold()  # renewed by its holder only
        time.sleep(1.3)  # the holder stopped renewing (died)
        assert second.hold() and not first.hold()
        second.release()
        assert first.hold()
    finally:
        first.release()
        second.release()
        _flush(LEASE_URL)


def test_a_push_process_hands_the_syncs_it_triggers_to_the_celery_workers(
    runtime: Runtime, dovecot: Dovecot, mail_user: tuple[str, str]
) -> None:
    """``email-service push`` takes its job queue from the runtime of the settings (issue 7): with Celery, the INBOX
    syncs its IDLE watchers ask for run in a worker process, not in the push process."""
    user, password = mail_user
    caller = Caller(runtime.ctx)
    worker = runtime.start("worker", "--concurrency", "1")
    account_id = create_imap_account(runtime.client, caller, dovecot.host, dovecot.imap_port, user, password)
    runtime.start("push", PUSH_LEASE_SECONDS="4")

    def pushed_runs() -> list[tuple[int, str, str]]:
        return [run for run in _scheduled_runs(runtime.ctx, caller.tenant_id, account_id) if run[2] == "push"]

    wait_until(lambda: any(state == "succeeded" for _at, state, _t in pushed_runs()), 60, "the catch-up sync")
    dovecot.deliver(user, b"Subject: pushed through celery\r\nMessage-ID: <pushed@example.com>\r\n\r\nbody\r\n")

    def listed() -> bool:
        body = runtime.client.get(f"/api/v1/accounts/{account_id}/messages", headers=caller.headers).get_json()
        return "pushed through celery" in {m["subject"] for m in body["messages"]}

    wait_until(listed, 60, "the pushed message listed by the API")
    # the catch-up and the new mail (the message is listed once its rows commit, a moment before its run's outcome)
    wait_until(lambda: sum(state == "succeeded" for _at, state, _t in pushed_runs()) >= 2, 30, "the push run to end")
    worked = scrape(worker.metrics_url)
    assert sample(worked, "email_service_jobs_finished_total", kind="sync_account", outcome="succeeded") >= 2
