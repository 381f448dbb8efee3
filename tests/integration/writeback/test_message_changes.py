"""Acting on one message through the API, written back to a real Dovecot (issue 8): flags, keywords, move, delete.

Every change is checked three ways: the answer shows it at once (with ``pendingChanges``), the folder counts
follow at once, and the server -- read over a separate IMAP session -- holds it after the write-back.
"""

from __future__ import annotations

import uuid

import pytest

from tests.integration.writeback.conftest import MakeMirror

pytestmark = pytest.mark.integration


def test_flags_and_keywords_are_shown_at_once_and_reach_the_server(make_mirror: MakeMirror) -> None:
    mirror = make_mirror({"INBOX": ["first", "second"]})
    inbox = mirror.folders()["INBOX"]
    assert inbox["unreadCount"] == 2
    first = mirror.messages("INBOX")["first"]

    response = mirror.api(
        "PATCH",
        f"/messages/{first['id']}",
        json={"isRead": True, "isFlagged": True, "keywords": {"add": ["$Important", "Project-X"]}},
    )
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["id"] == first["id"] and body["isRead"] is True and body["isFlagged"] is True
    assert {"\\Seen", "\\Flagged", "$Important", "Project-X"} <= set(body["flags"])
    assert body["pendingChanges"] is True and body["lastError"] is None
    assert mirror.folders()["INBOX"]["unreadCount"] == 1, "the count follows the local change at once"

    mirror.settle()
    server = {subject: flags for subject, flags in mirror.on_server("INBOX").values()}
    assert {"\\Seen", "\\Flagged", "$Important", "Project-X"} <= server["first"]
    assert server["second"] == set()
    after = mirror.api("GET", f"/messages/{first['id']}").get_json()
    assert after["pendingChanges"] is False and after["isRead"] is True
    [applied] = mirror.actions("applied")
    assert applied["kind"] == "flags" and applied["messageId"] == first["id"] and applied["error"] is None

    cleared = mirror.api(
        "PATCH", f"/messages/{first['id']}", json={"isRead": False, "keywords": {"remove": ["$important"]}}
    ).get_json()
    assert cleared["isRead"] is False and "$Important" not in cleared["flags"]
    mirror.settle()
    server = {subject: flags for subject, flags in mirror.on_server("INBOX").values()}
    assert server["first"] == {"\\Flagged", "Project-X"}
    assert mirror.folders()["INBOX"]["unreadCount"] == 2


def test_put_is_a_synonym_of_patch(make_mirror: MakeMirror) -> None:
    mirror = make_mirror({"INBOX": ["answered"]})
    message = mirror.messages("INBOX")["answered"]
    response = mirror.api("PUT", f"/messages/{message['id']}", json={"isAnswered": True})
    assert response.status_code == 200 and response.get_json()["isAnswered"] is True
    alias = mirror.client.put(f"/api/messages/{message['id']}", headers=mirror.caller.headers, json={"isFlagged": True})
    assert alias.status_code == 200 and alias.get_json()["isFlagged"] is True
    mirror.settle()
    [(_subject, flags)] = mirror.on_server("INBOX").values()
    assert flags == {"\\Answered", "\\Flagged"}


def test_move_keeps_the_message_id_and_takes_the_new_uid(make_mirror: MakeMirror) -> None:
    mirror = make_mirror({"INBOX": ["to archive", "stays"]})
    folders = mirror.folders()
    message = mirror.messages("INBOX")["to archive"]
    moved = mirror.api("PATCH", f"/messages/{message['id']}", json={"folderId": folders["Archive"]["id"]})
    assert moved.status_code == 200
    body = moved.get_json()
    assert body["folderId"] == folders["Archive"]["id"] and body["folderName"] == "Archive"
    assert body["pendingChanges"] is True and body["uid"] is None, "no UID until the server has answered"
    counts = mirror.folders()
    assert (counts["INBOX"]["totalCount"], counts["Archive"]["totalCount"]) == (1, 1)

    mirror.settle()
    assert [s for s, _ in mirror.on_server("INBOX").values()] == ["stays"]
    [(new_uid, (subject, _flags))] = mirror.on_server("Archive").items()
    assert subject == "to archive"
    after = mirror.api("GET", f"/messages/{message['id']}").get_json()
    assert (after["uid"], after["folderId"], after["pendingChanges"]) == (new_uid, folders["Archive"]["id"], False)

    status = mirror.sync()  # the mirror agrees with the server: nothing added, nothing removed
    assert (status["counts"]["messagesAdded"], status["counts"]["messagesRemoved"]) == (0, 0)
    assert set(mirror.messages("Archive")) == {"to archive"}
    assert mirror.messages("Archive")["to archive"]["id"] == message["id"]


def test_delete_moves_to_trash_and_deleting_in_trash_expunges_only_that_message(make_mirror: MakeMirror) -> None:
    mirror = make_mirror({"INBOX": ["unwanted", "keep"]})
    folders = mirror.folders()
    message = mirror.messages("INBOX")["unwanted"]
    deleted = mirror.api("DELETE", f"/messages/{message['id']}")
    assert deleted.status_code == 200
    assert deleted.get_json() == {
        "message": "Message moved to Trash",
        "id": message["id"],
        "permanent": False,
        "folderId": folders["Trash"]["id"],
        "pendingChanges": True,
    }
    mirror.settle()
    assert [s for s, _ in mirror.on_server("Trash").values()] == ["unwanted"]

    # another client put a message there marked \Deleted, not expunged
    other_uid = mirror.server.append(mirror.user, "Trash", b"Subject: marked elsewhere\r\n\r\nx\r\n", ["\\Deleted"])
    in_trash = mirror.api("DELETE", f"/messages/{message['id']}")
    assert in_trash.status_code == 200 and in_trash.get_json()["permanent"] is True
    assert mirror.api("GET", f"/messages/{message['id']}").status_code == 404
    mirror.settle()
    assert {uid: s for uid, (s, _) in mirror.on_server("Trash").items()} == {other_uid: "marked elsewhere"}


def test_permanent_delete_expunges_only_the_chosen_message(make_mirror: MakeMirror) -> None:
    mirror = make_mirror({"INBOX": ["gone", "flagged deleted elsewhere", "kept"]})
    messages = mirror.messages("INBOX")
    with mirror.imap() as imap:
        imap.select_folder("INBOX")
        imap.add_flags([messages["flagged deleted elsewhere"]["uid"]], ["\\Deleted"])
    response = mirror.api("DELETE", f"/messages/{messages['gone']['id']}?permanent=true")
    assert response.status_code == 200 and response.get_json()["folderId"] is None
    assert mirror.folders()["INBOX"]["totalCount"] == 2
    mirror.settle()
    assert sorted(s for s, _ in mirror.on_server("INBOX").values()) == ["flagged deleted elsewhere", "kept"]
    assert [a["kind"] for a in mirror.actions("applied")] == ["expunge"]


def test_bad_input_is_a_400_naming_the_field_and_changes_nothing(make_mirror: MakeMirror) -> None:
    mirror = make_mirror({"INBOX": ["x"]})
    message = mirror.messages("INBOX")["x"]
    path = f"/messages/{message['id']}"
    for body, field in (
        ({"keywords": {"add": ["two words"]}}, "keywords"),
        ({"keywords": {"add": ["\\Seen"]}}, "keywords"),
        ({"keywords": {"add": ["a(b"]}}, "keywords"),
        ({"isRead": "yes"}, "isRead"),
        ({"isRead": 1}, "isRead"),
        ({"subject": "new"}, "subject"),
        ({}, None),
    ):
        response = mirror.api("PATCH", path, json=body)
        assert response.status_code == 400, (body, response.get_json())
        assert response.get_json()["error"] == "Invalid request"
        if field:
            assert field in response.get_data(as_text=True), (body, response.get_json())
    assert mirror.api("DELETE", f"{path}?permanent=yes").status_code == 400
    elsewhere = mirror.api("PATCH", path, json={"folderId": str(uuid.uuid4())})  # not a folder of this account
    assert elsewhere.status_code == 404 and "folderId" in elsewhere.get_json()["message"]
    text = mirror.client.patch(
        f"/api/v1{path}", headers=mirror.caller.headers, data="isRead=true", content_type="text/plain"
    )
    assert text.status_code == 415
    assert mirror.actions("pending") == [] and mirror.actions("applied") == []
    assert mirror.api("GET", path).get_json()["flags"] == []
