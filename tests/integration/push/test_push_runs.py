"""How a push meets the account's sync runs (issue 8), on the session database (SQLite or PostgreSQL under RLS):
an active run that may have read INBOX gets a follow-up, a queued run covering INBOX needs none, a run that ended
meanwhile gives way to a new one, and a run queued while another held the account's lock is not left stranded: its
job is retried shortly, and the end of the run that held the lock sends it again (:func:`after_run`).

The job queue here only records, so the runs stay exactly in the state each case needs.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable

import pytest
from flask.testing import FlaskClient
from sqlalchemy import update

from email_service.models import SyncRun, now_ms
from email_service.services.context import ServiceContext
from email_service.services.jobs import RecordingJobQueue, RetryJob
from email_service.services.sync_runs import enqueue_sync, queue_follow_up, sync_job_payload
from email_service.sync.account import after_run, sync_account
from email_service.sync.locks import account_sync_lock
from tests.conftest import Caller
from tests.integration.api.conftest import create_account

pytestmark = pytest.mark.integration


@dataclasses.dataclass
class Account:
    ctx: ServiceContext
    queue: RecordingJobQueue
    tenant_id: uuid.UUID
    id: uuid.UUID

    def request(
        self, trigger: str = "push", folder: str | None = "INBOX", follow_up: bool = True
    ) -> tuple[SyncRun, bool]:
        return enqueue_sync(
            self.ctx,
            tenant_id=self.tenant_id,
            account_id=self.id,
            trigger=trigger,
            principal=None,
            folder=folder,
            follow_up=follow_up,
        )

    def set_state(self, run: SyncRun, state: str) -> None:
        with self.ctx.db.tenant_session(self.tenant_id) as session:
            values: dict[str, object] = {"state": state}
            if state not in ("queued", "running"):
                values["finished_at"] = now_ms()
            session.execute(update(SyncRun).where(SyncRun.id == run.id).values(**values))

    def reload(self, run: SyncRun) -> SyncRun:
        with self.ctx.db.tenant_session(self.tenant_id) as session:
            fresh = session.get(SyncRun, run.id)
            assert fresh is not None
            return fresh


@pytest.fixture
def account(client: FlaskClient, caller: Caller, ctx: ServiceContext) -> Account:
    body = create_account(client, caller, hostname="127.0.0.1", port=1, encryption="none", isSyncEnabled=False)
    queue = RecordingJobQueue()
    return Account(dataclasses.replace(ctx, jobs=queue), queue, caller.tenant_id, uuid.UUID(body["id"]))


def _follow_up(run: SyncRun) -> tuple[str | None, str | None]:
    return run.follow_up_trigger, run.follow_up_folder


def test_a_push_during_a_running_sync_records_a_follow_up_on_it(account: Account) -> None:
    full, created = account.request(trigger="scheduler", folder=None, follow_up=False)
    assert created and full.folder is None
    account.set_state(full, "running")
    same, created = account.request()
    assert (same.id, created) == (full.id, False)
    assert _follow_up(account.reload(full)) == ("push", "INBOX")
    assert len(account.queue.queued) == 1, "nothing else queued while the run is active"


def test_a_queued_run_that_covers_inbox_needs_no_follow_up(account: Account) -> None:
    for folder in (None, "INBOX"):
        queued, _ = account.request(trigger="api", folder=folder, follow_up=False)
        again, created = account.request()
        assert (again.id, created) == (queued.id, False)
        assert _follow_up(account.reload(queued)) == (None, None), "it has read nothing yet: it will see the mail"
        account.set_state(queued, "succeeded")


def test_a_queued_run_of_another_folder_gets_a_follow_up(account: Account) -> None:
    other, _ = account.request(trigger="push", folder="Archive", follow_up=False)
    account.request()
    assert _follow_up(account.reload(other)) == ("push", "INBOX")


def test_follow_ups_of_different_folders_widen_to_every_folder(account: Account) -> None:
    full, _ = account.request(trigger="api", folder=None, follow_up=False)
    account.set_state(full, "running")
    account.request(folder="INBOX")
    account.request(folder="INBOX")
    assert _follow_up(account.reload(full)) == ("push", "INBOX")
    account.request(folder="Archive")
    assert _follow_up(account.reload(full)) == ("push", None)


def test_the_follow_up_is_queued_when_the_run_ends(account: Account) -> None:
    full, _ = account.request(trigger="scheduler", folder=None, follow_up=False)
    account.set_state(full, "running")
    account.request()
    account.set_state(full, "succeeded")
    follow_up = queue_follow_up(account.ctx, tenant_id=account.tenant_id, account_id=account.id, ended_run_id=full.id)
    assert follow_up is not None and follow_up.id != full.id
    assert (follow_up.state, follow_up.trigger, follow_up.folder) == ("queued", "push", "INBOX")
    assert account.queue.queued[-1].payload == sync_job_payload(account.tenant_id, account.id, follow_up.id)


def test_a_run_without_follow_up_queues_nothing_when_it_ends(account: Account) -> None:
    full, _ = account.request(trigger="api", folder=None, follow_up=False)
    account.set_state(full, "succeeded")
    after_run(account.ctx, tenant_id=account.tenant_id, account_id=account.id, ended_run_id=full.id)
    assert len(account.queue.queued) == 1


def test_a_push_that_finds_the_run_just_ended_queues_a_new_one(
    account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run ends between the push's read of the active run and its follow-up UPDATE."""
    import email_service.services.sync_runs as sync_runs

    full, _ = account.request(trigger="api", folder=None, follow_up=False)
    account.set_state(full, "running")
    read_active: Callable[..., SyncRun | None] = sync_runs._active_run
    ended = [False]

    def active_then_end(*args: object) -> SyncRun | None:
        run = read_active(*args)
        if run is not None and not ended[0]:
            ended[0] = True
            account.set_state(run, "succeeded")  # the worker finishes right after the push read the row
        return run

    monkeypatch.setattr(sync_runs, "_active_run", active_then_end)
    run, created = account.request()
    assert created and run.id != full.id and (run.trigger, run.folder) == ("push", "INBOX")
    assert _follow_up(account.reload(full)) == (None, None), "nothing was recorded on the ended run"


def test_a_run_queued_while_another_held_the_lock_is_sent_again_when_that_one_ends(account: Account) -> None:
    """Run A has ended but its worker still holds the account's lock when run B is queued: B's job meets the lock
    and is retried shortly (RetryJob).  However long the hold lasts, when A's worker lets go of the lock it sends
    B's job again instead of B waiting for the recovery bound."""
    first, _ = account.request(trigger="scheduler", folder=None, follow_up=False)
    with account_sync_lock(account.ctx.db, account.id) as taken:
        assert taken
        account.set_state(first, "succeeded")
        second, created = account.request(trigger="api", folder=None, follow_up=False)
        assert created
        with pytest.raises(RetryJob):
            sync_account(account.ctx, tenant_id=account.tenant_id, account_id=account.id, run_id=second.id)
        assert account.reload(second).state == "queued"
    jobs_before = len(account.queue.queued)
    after_run(account.ctx, tenant_id=account.tenant_id, account_id=account.id, ended_run_id=first.id)
    resent = [(job.name, job.payload) for job in account.queue.queued[jobs_before:]]
    assert resent == [("sync_account", sync_job_payload(account.tenant_id, account.id, second.id))]


def test_a_follow_up_that_joins_a_stranded_queued_run_sends_its_job_again(account: Account) -> None:
    first, _ = account.request(trigger="scheduler", folder=None, follow_up=False)
    account.set_state(first, "running")
    account.request()  # a push during the run: follow-up recorded
    with account_sync_lock(account.ctx.db, account.id):
        account.set_state(first, "succeeded")
        stranded, _ = account.request(trigger="api", folder=None, follow_up=False)
        with pytest.raises(RetryJob):
            sync_account(account.ctx, tenant_id=account.tenant_id, account_id=account.id, run_id=stranded.id)
    jobs_before = len(account.queue.queued)
    after_run(account.ctx, tenant_id=account.tenant_id, account_id=account.id, ended_run_id=first.id)
    assert account.reload(stranded).state == "queued", "the queued full run covers INBOX: no new run"
    resent = [job.payload for job in account.queue.queued[jobs_before:]]
    assert resent == [sync_job_payload(account.tenant_id, account.id, stranded.id)]
