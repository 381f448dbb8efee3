"""Batches (issue 8): up to 1,000 messages in one request, written back in a handful of IMAP commands.

The account reaches Dovecot through a relay that records every command on the wire, so the test counts them.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.conftest import Caller
from tests.integration.writeback.conftest import MakeMirror, Mirror
from tests.support.dovecot import Dovecot
from tests.support.imap_relay import ImapRelay

pytestmark = pytest.mark.integration


def _all_ids(mirror: Mirror, folder: str) -> list[str]:
    folder_id = mirror.folders()[folder]["id"]
    ids: list[str] = []
    while True:
        page = mirror.api(
            "GET", f"/accounts/{mirror.account_id}/messages?folderId={folder_id}&limit=100&offset={len(ids)}"
        ).get_json()
        ids += [m["id"] for m in page["messages"]]
        if len(ids) >= page["pagination"]["total"]:
            return ids


def _batch(mirror: Mirror, **body: Any) -> Any:
    return mirror.api("POST", f"/accounts/{mirror.account_id}/messages/batch", json=body)


def test_a_batch_of_500_is_one_uid_store_and_one_uid_move(
    make_mirror: MakeMirror, dovecot: Dovecot, mail_user: tuple[str, str], relay: ImapRelay
) -> None:
    user, _ = mail_user
    dovecot.write_maildir(user, "INBOX", (f"Subject: bulk {i}\n\nbody {i}\n".encode() for i in range(500)))
    mirror = make_mirror(port=relay.port)
    ids = _all_ids(mirror, "INBOX")
    assert len(ids) == 500

    relay.reset()
    response = _batch(mirror, messageIds=ids, isRead=True, keywords={"add": ["$Bulk"]})
    assert response.status_code == 200
    assert response.get_json() == {"updatedCount": 500, "failedCount": 0, "failed": []}
    assert mirror.folders()["INBOX"]["unreadCount"] == 0
    mirror.settle()
    commands = relay.verbs()
    assert commands.count("UID STORE") == 1, commands
    assert len(commands) <= 8 and "STORE" not in commands and "FETCH" not in commands, commands
    assert all(flags >= {"\\Seen", "$Bulk"} for _s, flags in mirror.on_server("INBOX").values())

    relay.reset()
    archive = mirror.folders()["Archive"]["id"]
    moved = _batch(mirror, messageIds=ids, folderId=archive)
    assert moved.get_json()["updatedCount"] == 500
    counts = mirror.folders()
    assert (counts["INBOX"]["totalCount"], counts["Archive"]["totalCount"]) == (0, 500)
    mirror.settle()
    commands = relay.verbs()
    assert commands.count("UID MOVE") == 1 and len(commands) <= 8, commands
    assert mirror.on_server("INBOX") == {}
    assert len(mirror.on_server("Archive")) == 500
    archived = _all_ids(mirror, "Archive")
    assert sorted(archived) == sorted(ids), "every message keeps its id (COPYUID maps the UIDs)"

    relay.reset()
    status = mirror.sync()
    assert (status["counts"]["messagesAdded"], status["counts"]["messagesRemoved"]) == (0, 0)


def test_a_batch_reports_ids_that_are_not_messages_of_the_account(
    make_mirror: MakeMirror, ctx: Any, caller: Caller
) -> None:
    mirror = make_mirror({"INBOX": ["one", "two"]})
    ids = _all_ids(mirror, "INBOX")
    unknown = str(uuid.uuid4())
    body = _batch(mirror, messageIds=[*ids, ids[0], unknown], isFlagged=True).get_json()
    assert body == {
        "updatedCount": 2,
        "failedCount": 1,
        "failed": [{"id": unknown, "error": "Not found", "message": "Message not found in this account"}],
    }
    mirror.settle()
    assert all("\\Flagged" in flags for _s, flags in mirror.on_server("INBOX").values())

    deleted = _batch(mirror, messageIds=ids[:1], delete=True, permanent=True)
    assert deleted.get_json()["updatedCount"] == 1
    mirror.settle()
    assert len(mirror.on_server("INBOX")) == 1 and mirror.on_server("Trash") == {}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"messageIds": [], "isRead": True}, "messageIds"),
        ({"messageIds": [str(uuid.uuid4()) for _ in range(1001)], "isRead": True}, "messageIds"),
        ({"messageIds": [str(uuid.uuid4())]}, "changes"),
        ({"messageIds": [str(uuid.uuid4())], "delete": True, "isRead": True}, "delete"),
        ({"messageIds": [str(uuid.uuid4())], "isRead": True, "permanent": True}, "permanent"),
        ({"messageIds": ["not-a-uuid"], "isRead": True}, "messageIds"),
        ({"messageIds": [str(uuid.uuid4())], "isRead": True, "extra": 1}, "extra"),
    ],
)
def test_bad_batches_are_refused_with_the_field(make_mirror: MakeMirror, body: dict[str, Any], field: str) -> None:
    mirror = make_mirror()
    response = _batch(mirror, **body)
    assert response.status_code == 400, response.get_json()
    assert field in response.get_data(as_text=True)
