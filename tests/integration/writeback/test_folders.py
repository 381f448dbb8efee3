"""Folders through the API, written back to Dovecot (issue 8): create (nested, non-ASCII), rename with children,
delete, and the refusals (409 roles, subfolders, duplicates; 400 bad names).

Names are Unicode in the API; on the wire they are modified UTF-7 (RFC 3501 section 5.1.3), checked here with a
raw imaplib LIST.
"""

from __future__ import annotations

import imaplib
import uuid
from typing import Any

import pytest

from tests.integration.writeback.conftest import MakeMirror, Mirror

pytestmark = pytest.mark.integration


def _raw_names(mirror: Mirror) -> set[bytes]:
    """Mailbox names as the server sends them in LIST (modified UTF-7 bytes), via plain imaplib."""
    imap = imaplib.IMAP4(mirror.server.host, mirror.server.imap_port)
    try:
        imap.login(mirror.user, mirror.server.users[mirror.user])
        _typ, lines = imap.list()
    finally:
        imap.logout()
    return {line.rsplit(b' "/" ', 1)[1].strip(b'"') for line in lines if isinstance(line, bytes)}


def _create(mirror: Mirror, name: str, parent_id: str | None = None) -> Any:
    body: dict[str, Any] = {"name": name} if parent_id is None else {"name": name, "parentId": parent_id}
    return mirror.api("POST", f"/accounts/{mirror.account_id}/folders", json=body)


def test_create_nested_and_non_ascii_folders(make_mirror: MakeMirror) -> None:
    mirror = make_mirror({"INBOX": ["x"]})
    created = _create(mirror, "Projekte")
    assert created.status_code == 201, created.get_json()
    parent = created.get_json()
    assert parent["name"] == "Projekte" and parent["role"] == "custom" and parent["pendingChanges"] is True
    assert parent["parentId"] is None and parent["totalCount"] == 0

    child = _create(mirror, "Entwürfe für 2026", parent["id"]).get_json()
    assert child["name"] == "Projekte/Entwürfe für 2026" and child["parentId"] == parent["id"]
    mirror.settle()
    assert {b"Projekte", b"Projekte/Entw&APw-rfe f&APw-r 2026"} <= _raw_names(mirror)
    got = mirror.api("GET", f"/folders/{child['id']}").get_json()
    assert got["pendingChanges"] is False and got["name"] == "Projekte/Entwürfe für 2026"

    status = mirror.sync()  # the server now lists them: the mirror keeps the same folder ids
    assert status["state"] == "succeeded"
    assert mirror.folders()["Projekte/Entwürfe für 2026"]["id"] == child["id"]

    message = mirror.messages("INBOX")["x"]
    mirror.api("PATCH", f"/messages/{message['id']}", json={"folderId": child["id"]})
    mirror.settle()
    assert [s for s, _ in mirror.on_server("Projekte/Entwürfe für 2026").values()] == ["x"]


def test_a_folder_created_and_filled_before_the_write_back_survives_a_sync(make_mirror: MakeMirror) -> None:
    mirror = make_mirror({"INBOX": ["into new"]})
    folder = _create(mirror, "Neu").get_json()
    message = mirror.messages("INBOX")["into new"]
    mirror.api("PATCH", f"/messages/{message['id']}", json={"folderId": folder["id"]})
    mirror.settle()
    assert [s for s, _ in mirror.on_server("Neu").values()] == ["into new"]
    mirror.sync()
    assert mirror.messages("Neu")["into new"]["id"] == message["id"]


def test_rename_moves_the_children_along_on_the_server_and_locally(make_mirror: MakeMirror) -> None:
    mirror = make_mirror({"Work/Projects": ["in projects"], "Work/Old": []})
    folders = mirror.folders()
    archive_root = _create(mirror, "Ablage").get_json()
    mirror.settle()

    work = folders.get("Work")
    assert work is not None, "Dovecot lists the parent of Work/Projects"
    renamed = mirror.api("PATCH", f"/folders/{work['id']}", json={"name": "Büro", "parentId": archive_root["id"]})
    assert renamed.status_code == 200, renamed.get_json()
    assert renamed.get_json()["name"] == "Ablage/Büro" and renamed.get_json()["parentId"] == archive_root["id"]
    names = set(mirror.folders())
    assert {"Ablage/Büro/Projects", "Ablage/Büro/Old"} <= names and "Work/Projects" not in names
    mirror.settle()
    raw = _raw_names(mirror)
    assert b"Ablage/B&APw-ro/Projects" in raw and b"Work/Projects" not in raw
    assert [s for s, _ in mirror.on_server("Ablage/Büro/Projects").values()] == ["in projects"]

    projects_id = folders["Work/Projects"]["id"]
    mirror.sync()
    assert mirror.folders()["Ablage/Büro/Projects"]["id"] == projects_id, "renamed folders keep their ids"
    assert set(mirror.messages("Ablage/Büro/Projects")) == {"in projects"}

    back = mirror.api("PATCH", f"/folders/{projects_id}", json={"parentId": None}).get_json()
    assert back["name"] == "Projects" and back["parentId"] is None
    mirror.settle()
    assert b"Projects" in _raw_names(mirror)


def test_delete_takes_the_messages_along_and_refuses_roles_and_parents(make_mirror: MakeMirror) -> None:
    mirror = make_mirror({"Work/Projects": ["goes too"], "Temp": ["goes"]})
    folders = mirror.folders()
    for role in ("INBOX", "Sent", "Drafts", "Trash"):
        refused = mirror.api("DELETE", f"/folders/{folders[role]['id']}")
        assert refused.status_code == 409 and folders[role]["role"] in refused.get_json()["message"]
        assert mirror.api("PATCH", f"/folders/{folders[role]['id']}", json={"name": "Other"}).status_code == 409
    parent = mirror.api("DELETE", f"/folders/{folders['Work']['id']}")
    assert parent.status_code == 409 and "subfolders" in parent.get_json()["message"]

    temp = folders["Temp"]
    response = mirror.api("DELETE", f"/folders/{temp['id']}")
    assert response.status_code == 200 and response.get_json() == {"message": "Folder deleted", "id": temp["id"]}
    assert mirror.api("GET", f"/folders/{temp['id']}").status_code == 404
    assert "Temp" not in mirror.folders()
    mirror.settle()
    assert b"Temp" not in _raw_names(mirror)
    mirror.sync()
    assert "Temp" not in mirror.folders()


def test_bad_and_duplicate_names(make_mirror: MakeMirror) -> None:
    mirror = make_mirror({"Work/Projects": []})
    folders = mirror.folders()
    for name in ("a/b", " padded", "", "tab\there", "star*", "x" * 256):
        response = _create(mirror, name)
        assert response.status_code == 400, (name, response.get_json())
        assert "name" in response.get_data(as_text=True)
    for name, parent in (("Trash", None), ("inbox", None), ("Projects", folders["Work"]["id"])):
        response = _create(mirror, name, parent)
        assert response.status_code == 409, (name, response.get_json())
    unknown_parent = _create(mirror, "Orphan", str(uuid.uuid4()))
    assert unknown_parent.status_code == 404 and "parentId" in unknown_parent.get_json()["message"]
    other = mirror.api("PATCH", f"/folders/{folders['Work/Projects']['id']}", json={"name": "Junk", "parentId": None})
    assert other.status_code == 409
    own_child = mirror.api(
        "PATCH", f"/folders/{folders['Work']['id']}", json={"parentId": folders["Work/Projects"]["id"]}
    )
    assert own_child.status_code == 400
    assert mirror.api("PATCH", f"/folders/{folders['Work']['id']}", json={}).status_code == 400
    assert mirror.actions("pending") == [] and mirror.actions("applied") == []
