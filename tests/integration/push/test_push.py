"""IDLE push against a real Dovecot (RFC 2177, issue 8): mail delivered over LMTP shows up through the HTTP API by a
run with trigger ``push`` and no scheduled sync; mail arriving while a sync runs is fetched right after it; a server
without IDLE is polled instead; switching an account off stops its watcher and new credentials restart it.

How fast the mail shows up is measured by bench/push_latency.py, never asserted here: the waits are bounded and
generous.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Iterator

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from email_service.app import create_app
from email_service.models import PushLease, SyncRun
from email_service.services.context import ServiceContext
from email_service.sync.push_supervisor import PushSupervisor
from email_service.tasks.runner import InProcessJobRunner
from tests.conftest import Caller, create_imap_account, wait_for_sync
from tests.integration.push.conftest import GatedBlobStore, new_message, wait_for_subject
from tests.support.dovecot import Dovecot
from tests.support.services import wait_until

pytestmark = pytest.mark.integration


def _runs(ctx: ServiceContext, caller: Caller, account_id: str) -> list[SyncRun]:
    with ctx.db.tenant_session(caller.tenant_id) as session:
        return list(
            session.execute(
                select(SyncRun).where(SyncRun.account_id == uuid.UUID(account_id)).order_by(SyncRun.created_at)
            ).scalars()
        )


def _lease_holder(ctx: ServiceContext, caller: Caller, account_id: str) -> str | None:
    with ctx.db.tenant_session(caller.tenant_id) as session:
        return session.execute(
            select(PushLease.holder).where(PushLease.account_id == uuid.UUID(account_id))
        ).scalar_one_or_none()


def _idling(supervisor: PushSupervisor, account_id: str) -> bool:
    watcher = supervisor.watcher(uuid.UUID(account_id))
    return watcher is not None and watcher.idling.is_set()


def _idle_watcher_started(
    client: FlaskClient, caller: Caller, supervisor: PushSupervisor, account_id: str
) -> dict[str, object]:
    """Wait until the account's watcher idles and its catch-up run (asked for on connecting) has finished."""
    wait_until(lambda: _idling(supervisor, account_id), what="watcher idling on INBOX")
    status = wait_for_sync(client, account_id, caller.headers)
    assert status["trigger"] == "push" and status["state"] == "succeeded", status
    return status


def test_delivered_mail_is_listed_by_the_api_after_a_push_triggered_run(
    client: FlaskClient,
    caller: Caller,
    ctx: ServiceContext,
    dovecot: Dovecot,
    mail_user: tuple[str, str],
    start_push: Callable[..., PushSupervisor],
) -> None:
    user, password = mail_user
    account_id = create_imap_account(client, caller, dovecot.host, dovecot.imap_port, user, password)
    supervisor = start_push(caller.tenant_id)
    caught_up = _idle_watcher_started(client, caller, supervisor, account_id)
    assert _lease_holder(ctx, caller, account_id) == supervisor.holder

    dovecot.deliver(user, new_message("pushed over LMTP"))
    wait_for_subject(client, account_id, caller.headers, "pushed over LMTP")

    status = wait_for_sync(client, account_id, caller.headers)
    assert status["syncId"] != caught_up["syncId"] and status["trigger"] == "push"
    runs = _runs(ctx, caller, account_id)
    assert {run.trigger for run in runs} == {"push"}, "no scheduled, API or CLI sync ran"
    assert all(run.folder == "INBOX" for run in runs)
    assert sum(run.messages_added for run in runs) == 1 and runs[-1].folders_synced == 1


def test_mail_arriving_while_a_sync_runs_is_fetched_right_after_it(
    caller: Caller,
    ctx: ServiceContext,
    dovecot: Dovecot,
    mail_user: tuple[str, str],
    start_push: Callable[..., PushSupervisor],
) -> None:
    """A full sync is held inside folder ``Later`` (after INBOX) when new mail reaches INBOX: the push finds that
    run active, records a follow-up on it, and the follow-up run fetches the mail the moment the held run ends."""
    user, password = mail_user
    dovecot.create_mailbox(user, "Later")
    dovecot.append(user, "Later", new_message("held here"))
    gate = GatedBlobStore(ctx.blobs, marker=b"Subject: held here")
    runner = InProcessJobRunner(workers=2)
    gated = dataclasses.replace(ctx, blobs=gate, jobs=runner)
    runner.bind(gated)
    client = create_app(context=gated).test_client()
    try:
        account_id = create_imap_account(client, caller, dovecot.host, dovecot.imap_port, user, password)
        supervisor = start_push(caller.tenant_id, context=gated)
        caught_up = _idle_watcher_started(client, caller, supervisor, account_id)
        assert caught_up["counts"] == {  # the catch-up covered INBOX only: "Later" is not synced yet
            "foldersSynced": 1,
            "foldersFailed": 0,
            "messagesAdded": 0,
            "messagesUpdated": 0,
            "messagesRemoved": 0,
        }

        held = client.post(f"/api/v1/accounts/{account_id}/sync", headers=caller.headers).get_json()
        assert held["created"] is True
        assert gate.entered.wait(30), "the full sync reached folder Later"
        dovecot.deliver(user, new_message("arrived mid-sync"))

        def follow_up_recorded() -> bool:
            run = next(r for r in _runs(ctx, caller, account_id) if str(r.id) == held["syncId"])
            return run.follow_up_trigger == "push" and run.state == "running"

        wait_until(follow_up_recorded, what="push recorded as a follow-up on the running sync")
        gate.release()

        wait_for_subject(client, account_id, caller.headers, "arrived mid-sync")
        runs = _runs(ctx, caller, account_id)
        full = next(r for r in runs if str(r.id) == held["syncId"])
        after = [r for r in runs if r.created_at >= (full.finished_at or 0) and r.id != full.id]
        assert full.state == "succeeded" and full.folder is None
        assert full.messages_added == 1, "the held run fetched 'held here' only: it had read INBOX already"
        assert after and (after[0].trigger, after[0].folder, after[0].messages_added) == ("push", "INBOX", 1)
        assert sum(r.messages_added for r in after) == 1
    finally:
        gate.release()
        runner.shutdown(wait=True)


@pytest.fixture(scope="module")
def dovecot_without_idle() -> Iterator[Dovecot]:
    """A private Dovecot that does not announce IDLE (RFC 2177) after login."""
    with Dovecot.start(without=("IDLE",)) as server:
        yield server


def test_an_account_whose_server_has_no_idle_is_polled_at_its_interval(
    client: FlaskClient,
    caller: Caller,
    ctx: ServiceContext,
    runner: InProcessJobRunner,
    dovecot_without_idle: Dovecot,
    start_push: Callable[..., PushSupervisor],
) -> None:
    server = dovecot_without_idle
    user, password = server.new_user()
    account_id = create_imap_account(client, caller, server.host, server.imap_port, user, password)
    supervisor = start_push(caller.tenant_id)
    wait_until(lambda: uuid.UUID(account_id) in supervisor.polled(), what="account found without IDLE")
    assert supervisor.watched() == set() and server.imap_sessions(user) == 0, "no connection is kept open"
    assert _lease_holder(ctx, caller, account_id) == supervisor.holder, "nobody else retries it meanwhile"

    server.deliver(user, new_message("found by polling"))
    assert runner.schedule_due([caller.tenant_id]) == 1  # never synced: due now
    status = wait_for_sync(client, account_id, caller.headers)
    assert status["trigger"] == "scheduler" and status["counts"]["messagesAdded"] == 1
    wait_for_subject(client, account_id, caller.headers, "found by polling")
    assert {run.trigger for run in _runs(ctx, caller, account_id)} == {"scheduler"}


def test_switching_an_account_off_stops_its_watcher_and_new_credentials_restart_it(
    client: FlaskClient,
    caller: Caller,
    ctx: ServiceContext,
    dovecot: Dovecot,
    mail_user: tuple[str, str],
    start_push: Callable[..., PushSupervisor],
) -> None:
    user, password = mail_user
    account_id = create_imap_account(client, caller, dovecot.host, dovecot.imap_port, user, password)
    account = uuid.UUID(account_id)
    url = f"/api/v1/accounts/{account_id}"
    supervisor = start_push(caller.tenant_id, start=False)

    def reconciled_to(watched: bool) -> None:
        supervisor.tick()
        assert (account in supervisor.watched()) is watched
        if watched:
            wait_until(lambda: _idling(supervisor, account_id), what="watcher idling")
            wait_until(lambda: dovecot.imap_sessions(user) == 1, what="exactly one IDLE connection")
        else:
            assert _lease_holder(ctx, caller, account_id) is None, "lease released"
            wait_until(lambda: dovecot.imap_sessions(user) == 0, what="IDLE connection closed")

    reconciled_to(True)
    first = supervisor.watcher(account)
    supervisor.tick()
    assert supervisor.watcher(account) is first, "an unchanged account keeps its watcher"

    for off, on in (({"isSyncEnabled": False}, {"isSyncEnabled": True}), ({"isEnabled": False}, {"isEnabled": True})):
        assert client.put(url, headers=caller.headers, json=off).status_code == 200
        reconciled_to(False)
        assert client.put(url, headers=caller.headers, json=on).status_code == 200
        reconciled_to(True)

    before = supervisor.watcher(account)
    dovecot.add_user(user, "a-new-password")
    assert client.put(url, headers=caller.headers, json={"password": "a-new-password"}).status_code == 200
    reconciled_to(True)
    assert supervisor.watcher(account) is not before, "new credentials: a new connection"

    assert client.delete(url, headers=caller.headers).status_code == 200
    reconciled_to(False)
