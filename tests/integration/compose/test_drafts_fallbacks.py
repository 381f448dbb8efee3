"""Drafts on servers without UIDPLUS (RFC 4315) and on accounts without a Drafts folder (issue 9).

Without UIDPLUS there is no APPENDUID: the new copy's UID is found by ``UID SEARCH HEADER Message-ID``; and no
``UID EXPUNGE``: the replaced copy is only marked ``\\Deleted`` (a bare EXPUNGE would also remove every other
``\\Deleted`` message of the mailbox).  An account whose Drafts folder is unknown gets one (CREATE, with the
``\\Drafts`` special use where the server offers CREATE-SPECIAL-USE) before the APPEND.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import delete, select

from email_service.models import EmailFolder, EmailMessage
from email_service.services.context import ServiceContext
from tests.integration.writeback.conftest import MakeMirror
from tests.support.dovecot import Dovecot

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def no_uidplus(dovecot: Dovecot) -> Iterator[Dovecot]:
    with Dovecot.start(without=("UIDPLUS",)) as server:
        yield server


def test_without_uidplus_the_uid_comes_from_search_and_the_old_copy_is_marked_deleted(
    make_mirror: MakeMirror, no_uidplus: Dovecot
) -> None:
    mirror = make_mirror(server=no_uidplus)
    body = {"to": [{"email": "bob@example.com"}], "subject": "Plain server v1", "textBody": "one\n"}
    draft = mirror.api("POST", f"/accounts/{mirror.account_id}/messages", json=body).get_json()
    mirror.settle()
    (uid,) = mirror.on_server("Drafts")
    mirror.sync()
    assert [m["id"] for m in mirror.messages("Drafts").values()] == [draft["id"]]  # found by Message-ID, no twin

    edited = mirror.api("PUT", f"/messages/{draft['id']}", json={"subject": "Plain server v2"})
    assert edited.status_code == 200, edited.get_json()
    mirror.settle()
    assert mirror.actions("failed") == []
    state = mirror.on_server("Drafts")
    assert state[uid][0] == "Plain server v1" and "\\Deleted" in state[uid][1]
    ((new_uid, (subject, flags)),) = [(u, s) for u, s in state.items() if u != uid]
    assert subject == "Plain server v2" and "\\Deleted" not in flags and new_uid > uid


def test_an_account_without_a_known_drafts_folder_gets_one_before_the_append(
    make_mirror: MakeMirror, ctx: ServiceContext
) -> None:
    mirror = make_mirror()
    with ctx.db.tenant_session(mirror.tenant_id) as session:
        drafts = session.execute(
            select(EmailFolder).where(
                EmailFolder.account_id == uuid.UUID(mirror.account_id), EmailFolder.type == "drafts"
            )
        ).scalar_one()
        session.execute(delete(EmailMessage).where(EmailMessage.folder_id == drafts.id))
        session.delete(drafts)
    body = {"to": [{"email": "bob@example.com"}], "subject": "Into a new Drafts", "textBody": "hi\n"}
    created = mirror.api("POST", f"/accounts/{mirror.account_id}/messages", json=body)
    assert created.status_code == 201 and created.get_json()["folderName"] == "Drafts"
    mirror.settle()
    assert [a["kind"] for a in mirror.actions("applied")][:2] == ["append", "folder_create"]  # newest first
    assert [s for s, _ in mirror.on_server("Drafts").values()] == ["Into a new Drafts"]
    assert mirror.folders()["Drafts"]["role"] == "drafts"
