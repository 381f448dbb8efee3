"""Moves and deletes on servers that lack MOVE (RFC 6851) or UIDPLUS (RFC 4315): Dovecot instances configured to
announce fewer capabilities, so that the fallback paths run against a real server.

With MOVE but without UIDPLUS the move works, but no COPYUID names the new UID: the row is dropped once the move
is applied and the sync it asks for brings the message back in its new folder, under a new id.
Without MOVE: ``UID COPY`` + ``UID STORE +FLAGS (\\Deleted)`` + ``UID EXPUNGE`` of exactly the copied UIDs; another
message marked ``\\Deleted`` in the same mailbox survives.  Without UIDPLUS as well: no way to remove only the chosen
messages (a bare EXPUNGE would take the other ``\\Deleted`` ones too), so the action fails with that reason and the
next sync shows the message where the server still has it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.writeback.conftest import MakeMirror
from tests.support.dovecot import Dovecot
from tests.support.imap_relay import ImapRelay
from tests.support.services import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def no_move(dovecot: Dovecot) -> Iterator[Dovecot]:
    with Dovecot.start(without=("MOVE",)) as server:
        yield server


@pytest.fixture(scope="module")
def no_uidplus(dovecot: Dovecot) -> Iterator[Dovecot]:
    with Dovecot.start(without=("MOVE", "UIDPLUS")) as server:
        yield server


@pytest.fixture(scope="module")
def move_without_uidplus(dovecot: Dovecot) -> Iterator[Dovecot]:
    with Dovecot.start(without=("UIDPLUS",)) as server:
        yield server


def test_without_move_a_move_is_copy_store_and_uid_expunge_of_those_uids(
    make_mirror: MakeMirror, no_move: Dovecot
) -> None:
    with ImapRelay(no_move.host, no_move.imap_port) as relay:
        mirror = make_mirror({"INBOX": ["move me", "marked elsewhere", "stays"]}, server=no_move, port=relay.port)
        messages = mirror.messages("INBOX")
        with mirror.imap() as imap:
            imap.select_folder("INBOX")
            imap.add_flags([messages["marked elsewhere"]["uid"]], ["\\Deleted"])
        relay.reset()
        archive = mirror.folders()["Archive"]["id"]
        response = mirror.api("PATCH", f"/messages/{messages['move me']['id']}", json={"folderId": archive})
        assert response.status_code == 200 and response.get_json()["folderId"] == archive
        mirror.settle()
        commands = relay.verbs()
    assert "UID MOVE" not in commands and "EXPUNGE" not in commands, commands
    assert {"UID COPY", "UID STORE", "UID EXPUNGE"} <= set(commands), commands
    assert sorted(s for s, _ in mirror.on_server("INBOX").values()) == ["marked elsewhere", "stays"]
    [(new_uid, (subject, _))] = mirror.on_server("Archive").items()
    assert subject == "move me"
    after = mirror.api("GET", f"/messages/{messages['move me']['id']}").get_json()
    assert (after["uid"], after["folderId"], after["pendingChanges"]) == (new_uid, archive, False)


def test_without_uidplus_moves_and_expunges_fail_cleanly_and_the_sync_shows_the_truth(
    make_mirror: MakeMirror, no_uidplus: Dovecot
) -> None:
    mirror = make_mirror({"INBOX": ["cannot move", "cannot expunge"]}, server=no_uidplus)
    messages = mirror.messages("INBOX")
    folders = mirror.folders()
    mirror.api("PATCH", f"/messages/{messages['cannot move']['id']}", json={"folderId": folders["Archive"]["id"]})
    mirror.api("DELETE", f"/messages/{messages['cannot expunge']['id']}?permanent=true")
    mirror.settle()

    failed = mirror.actions("failed")
    assert sorted(a["kind"] for a in failed) == ["expunge", "move"]
    assert all("UIDPLUS" in a["error"]["message"] and "EXPUNGE" in a["error"]["message"] for a in failed)
    assert sorted(s for s, _ in mirror.on_server("INBOX").values()) == ["cannot expunge", "cannot move"]
    assert mirror.on_server("Archive") == {}

    wait_until(lambda: set(mirror.messages("INBOX")) == {"cannot move", "cannot expunge"}, what="sync after failure")
    back = mirror.messages("INBOX")["cannot move"]
    assert back["id"] == messages["cannot move"]["id"], "the failed move puts the row back where the message is"
    assert back["pendingChanges"] is False and "UIDPLUS" in back["lastError"]
    assert mirror.folders()["INBOX"]["totalCount"] == 2 and mirror.folders()["Archive"]["totalCount"] == 0


def test_with_move_but_without_uidplus_the_sync_brings_the_moved_message_back(
    make_mirror: MakeMirror, move_without_uidplus: Dovecot
) -> None:
    mirror = make_mirror({"INBOX": ["moved", "stays"]}, server=move_without_uidplus)
    moved = mirror.messages("INBOX")["moved"]
    archive = mirror.folders()["Archive"]["id"]
    assert mirror.api("PATCH", f"/messages/{moved['id']}", json={"folderId": archive}).status_code == 200
    mirror.settle()
    assert [a["kind"] for a in mirror.actions("applied")] == ["move"]
    assert [s for s, _ in mirror.on_server("Archive").values()] == ["moved"]
    wait_until(lambda: set(mirror.messages("Archive")) == {"moved"}, what="sync after the move")
    assert set(mirror.messages("INBOX")) == {"stays"}
    assert mirror.folders()["Archive"]["totalCount"] == 1 and mirror.folders()["INBOX"]["totalCount"] == 1
