"""Write-back racing the server and the sync (issue 8), driven step by step: the app's jobs are only recorded,
and the test runs the sync and the write-back itself, in the order it wants to prove.

* a sync between the local change and its write-back keeps the local value (and still takes the server's other
  changes), and does not put a moved message back into its old folder;
* a message expunged on the server before the write-back: the action fails cleanly with the server's words, the
  message shows ``lastError``, a sync is asked for, and that sync removes the message;
* sync and write-back of one account never run together: whichever finds the account lock taken retries later,
  and a sync that met the write-back's lock gets its job again when the write-back ends;
* pending moves and expunges do not make an unchanged folder cost more than one EXAMINE.
"""

from __future__ import annotations

import uuid

import pytest
from flask.testing import FlaskClient

from email_service.services.context import ServiceContext
from email_service.services.jobs import RecordingJobQueue, RetryJob
from email_service.sync.locks import account_sync_lock
from tests.integration.writeback.conftest import MakeMirror, Mirror, run_sync, run_syncback

pytestmark = pytest.mark.integration


def _patch(client: FlaskClient, mirror: Mirror, message_id: str, body: dict[str, object]) -> dict[str, object]:
    response = client.patch(f"/api/v1/messages/{message_id}", headers=mirror.caller.headers, json=body)
    assert response.status_code == 200, response.get_json()
    result: dict[str, object] = response.get_json()
    return result


def test_a_sync_before_the_write_back_keeps_the_local_change(
    make_mirror: MakeMirror, quiet_client: FlaskClient, quiet_ctx: ServiceContext
) -> None:
    mirror = make_mirror({"INBOX": ["read me", "move me", "flag me"]})
    messages, folders = mirror.messages("INBOX"), mirror.folders()
    _patch(quiet_client, mirror, messages["read me"]["id"], {"isRead": True})
    _patch(quiet_client, mirror, messages["move me"]["id"], {"folderId": folders["Archive"]["id"]})
    _patch(quiet_client, mirror, messages["flag me"]["id"], {"keywords": {"add": ["$Todo"]}})
    with mirror.imap() as imap:  # meanwhile another client changes other flags of the same messages
        imap.select_folder("INBOX")
        imap.add_flags([messages["read me"]["uid"], messages["flag me"]["uid"]], ["\\Answered"])

    assert run_sync(quiet_ctx, mirror.tenant_id, mirror.account_id) == "succeeded"
    inbox = mirror.messages("INBOX")
    assert set(inbox) == {"read me", "flag me"}, "the moved message is not added back to INBOX"
    assert inbox["read me"]["isRead"] is True and inbox["read me"]["isAnswered"] is True
    assert set(inbox["flag me"]["flags"]) == {"$Todo", "\\Answered"}
    assert all(m["pendingChanges"] for m in inbox.values())
    assert mirror.folders()["INBOX"]["unreadCount"] == 1 and mirror.folders()["Archive"]["totalCount"] == 1

    assert run_syncback(quiet_ctx, mirror.tenant_id, mirror.account_id) == "done"
    server = {subject: flags for subject, flags in mirror.on_server("INBOX").values()}
    assert server == {"read me": {"\\Seen", "\\Answered"}, "flag me": {"$Todo", "\\Answered"}}
    assert [s for s, _ in mirror.on_server("Archive").values()] == ["move me"]

    assert run_sync(quiet_ctx, mirror.tenant_id, mirror.account_id) == "succeeded"
    assert set(mirror.messages("INBOX")) == {"read me", "flag me"}
    archived = mirror.messages("Archive")["move me"]
    assert archived["id"] == messages["move me"]["id"] and archived["pendingChanges"] is False


def test_an_action_on_a_message_expunged_on_the_server_fails_cleanly(
    make_mirror: MakeMirror, quiet_client: FlaskClient, quiet_ctx: ServiceContext
) -> None:
    mirror = make_mirror({"INBOX": ["flagged then gone", "moved then gone", "untouched"]})
    messages, folders = mirror.messages("INBOX"), mirror.folders()
    _patch(quiet_client, mirror, messages["flagged then gone"]["id"], {"isFlagged": True})
    _patch(quiet_client, mirror, messages["moved then gone"]["id"], {"folderId": folders["Archive"]["id"]})
    for subject in ("flagged then gone", "moved then gone"):
        mirror.server.expunge(mirror.user, "INBOX", messages[subject]["uid"])

    assert run_syncback(quiet_ctx, mirror.tenant_id, mirror.account_id) == "done"
    failed = {a["kind"]: a for a in mirror.actions("failed")}
    assert set(failed) == {"flags", "move"}
    for action in failed.values():
        assert "no longer in INBOX" in action["error"]["message"] and action["error"]["kind"] == "MessageGone"
    flagged = mirror.api("GET", f"/messages/{messages['flagged then gone']['id']}").get_json()
    assert flagged["pendingChanges"] is False and "no longer in INBOX" in flagged["lastError"]
    assert mirror.on_server("Archive") == {}
    queued = quiet_ctx.jobs
    assert isinstance(queued, RecordingJobQueue)
    assert [job.name for job in queued.queued][-1] == "sync_account", "the write-back asks for a sync"

    assert run_sync(quiet_ctx, mirror.tenant_id, mirror.account_id) == "succeeded"
    assert set(mirror.messages("INBOX")) == {"untouched"}
    assert mirror.messages("Archive") == {}
    counts = mirror.folders()
    assert (counts["INBOX"]["totalCount"], counts["Archive"]["totalCount"]) == (1, 0)


def test_sync_and_write_back_of_one_account_wait_for_each_other(
    make_mirror: MakeMirror, quiet_client: FlaskClient, quiet_ctx: ServiceContext
) -> None:
    mirror = make_mirror({"INBOX": ["x"]})
    _patch(quiet_client, mirror, mirror.messages("INBOX")["x"]["id"], {"isRead": True})
    with account_sync_lock(quiet_ctx.db, uuid.UUID(mirror.account_id)) as taken:
        assert taken
        with pytest.raises(RetryJob):
            run_syncback(quiet_ctx, mirror.tenant_id, mirror.account_id)
        with pytest.raises(RetryJob):  # a queued sync waits too, instead of being dropped
            run_sync(quiet_ctx, mirror.tenant_id, mirror.account_id)
    queue = quiet_ctx.jobs
    assert isinstance(queue, RecordingJobQueue)
    queued_before = len(queue.queued)
    assert run_syncback(quiet_ctx, mirror.tenant_id, mirror.account_id) == "done"
    [(_subject, flags)] = mirror.on_server("INBOX").values()
    assert flags == {"\\Seen"}
    # the write-back let go of the lock: the sync that met it gets its job again, whatever its retries did
    resent = [job for job in queue.queued[queued_before:] if job.name == "sync_account"]
    assert [job.payload["accountId"] for job in resent] == [mirror.account_id]
    assert run_sync(quiet_ctx, mirror.tenant_id, mirror.account_id) == "succeeded"


def test_a_sync_while_moves_and_expunges_are_pending_costs_one_examine_per_folder(
    make_mirror: MakeMirror, quiet_client: FlaskClient, quiet_ctx: ServiceContext
) -> None:
    """Pending moves and expunges leave the local counts apart from the server's EXISTS until they are applied; the
    sync allows for them, so an unchanged server still costs one EXAMINE per folder (no UID list, no refetch)."""
    mirror = make_mirror({"INBOX": ["move me", "expunge me", "stays"]})
    messages, folders = mirror.messages("INBOX"), mirror.folders()
    _patch(quiet_client, mirror, messages["move me"]["id"], {"folderId": folders["Archive"]["id"]})
    gone = quiet_client.delete(
        f"/api/v1/messages/{messages['expunge me']['id']}?permanent=true", headers=mirror.caller.headers
    )
    assert gone.status_code == 200, gone.get_json()
    mirror.server.record_imap(mirror.user)

    assert run_sync(quiet_ctx, mirror.tenant_id, mirror.account_id) == "succeeded"
    commands = mirror.server.imap_commands(mirror.user)
    assert {c.split(" ")[0].upper() for c in commands} <= {"ENABLE", "LIST", "EXAMINE", "LOGOUT"}, commands
    assert set(mirror.messages("INBOX")) == {"stays"} and set(mirror.messages("Archive")) == {"move me"}

    assert run_syncback(quiet_ctx, mirror.tenant_id, mirror.account_id) == "done"
    assert run_sync(quiet_ctx, mirror.tenant_id, mirror.account_id) == "succeeded"
    assert set(mirror.messages("INBOX")) == {"stays"} and set(mirror.messages("Archive")) == {"move me"}
    counts = mirror.folders()
    assert (counts["INBOX"]["totalCount"], counts["Archive"]["totalCount"]) == (1, 1)
    assert mirror.messages("Archive")["move me"]["id"] == messages["move me"]["id"]
