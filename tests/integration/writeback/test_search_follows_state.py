"""Search sees a message's flags and folder as they change, at once, whichever writer changes them (issue 11):
the API (write-back pending and after it), and a sync of changes made on a real Dovecot.

The search doc row holds a copy of the message's ``is_read``/``is_flagged``/``is_answered``/``is_draft``/``folder_id``
(migration 0014), kept in step by a trigger on ``email_messages``; each test also checks that every doc row of the
account equals its message row in those columns.
"""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from email_service.models import EmailMessage, SearchDoc
from tests.integration.writeback.conftest import MakeMirror, Mirror

pytestmark = pytest.mark.integration

_STATE = ("is_read", "is_flagged", "is_answered", "is_draft", "folder_id")


def _found(mirror: Mirror, query: str, folder_id: str | None = None) -> set[str]:
    params = {"q": query, **({"folderId": folder_id} if folder_id else {})}
    response = mirror.client.get(
        f"/api/v1/accounts/{mirror.account_id}/messages/search", query_string=params, headers=mirror.caller.headers
    )
    assert response.status_code == 200, response.get_json()
    return {m["subject"] for m in response.get_json()["messages"]}


def _docs_match_messages(mirror: Mirror) -> None:
    """Every doc row of the account holds its message row's flags and folder."""
    columns = [getattr(EmailMessage, name) for name in _STATE] + [getattr(SearchDoc, name) for name in _STATE]
    with mirror.ctx.db.tenant_session(mirror.tenant_id) as session:
        rows = session.execute(
            select(EmailMessage.subject, *columns)
            .join(SearchDoc, SearchDoc.message_id == EmailMessage.id)
            .where(EmailMessage.account_id == uuid.UUID(mirror.account_id))
        ).all()
    assert rows
    for subject, *values in rows:
        assert values[: len(_STATE)] == values[len(_STATE) :], subject


def test_flag_changes_and_moves_through_the_api_are_searchable_at_once(make_mirror: MakeMirror) -> None:
    mirror = make_mirror({"INBOX": ["alpha report", "beta report", "gamma report"]})
    inbox = mirror.messages("INBOX")
    archive = mirror.folders()["Archive"]["id"]
    assert _found(mirror, "is:unread report") == {"alpha report", "beta report", "gamma report"}

    def patch(subject: str, **body: object) -> None:
        response = mirror.api("PATCH", f"/messages/{inbox[subject]['id']}", json=body)
        assert response.status_code == 200, response.get_json()

    patch("alpha report", isRead=True, isFlagged=True)
    patch("beta report", isAnswered=True)
    patch("gamma report", folderId=archive)
    for when in ("pending", "written back"):
        assert _found(mirror, "is:unread report") == {"beta report", "gamma report"}, when
        assert _found(mirror, "is:read report") == {"alpha report"}, when
        assert _found(mirror, "is:flagged") == {"alpha report"}, when
        assert _found(mirror, "is:answered") == {"beta report"}, when
        assert _found(mirror, "in:archive report") == {"gamma report"}, when
        assert _found(mirror, "in:inbox -is:read") == {"beta report"}, when
        assert _found(mirror, "report", folder_id=archive) == {"gamma report"}, when
        _docs_match_messages(mirror)
        mirror.settle()

    patch("alpha report", isRead=False, isFlagged=False)
    assert _found(mirror, "is:unread report") == {"alpha report", "beta report", "gamma report"}
    assert _found(mirror, "is:flagged") == set()
    _docs_match_messages(mirror)


def test_changes_made_on_the_server_are_searchable_after_a_sync(make_mirror: MakeMirror) -> None:
    mirror = make_mirror({"INBOX": ["seen there", "flagged there", "draft there", "moved there"]})
    with mirror.imap() as imap:
        imap.select_folder("INBOX")
        uids = {subject: uid for uid, (subject, _flags) in mirror.on_server("INBOX").items()}
        imap.set_flags([uids["seen there"]], ["\\Seen"])
        imap.set_flags([uids["flagged there"]], ["\\Flagged", "\\Answered"])
        imap.set_flags([uids["draft there"]], ["\\Draft"])
        imap.move([uids["moved there"]], "Archive")
    assert _found(mirror, "is:unread there") == {"seen there", "flagged there", "draft there", "moved there"}

    mirror.sync()
    assert _found(mirror, "is:unread there") == {"flagged there", "draft there", "moved there"}
    assert _found(mirror, "is:read there") == {"seen there"}
    assert _found(mirror, "is:flagged is:answered") == {"flagged there"}
    assert _found(mirror, "is:draft") == {"draft there"}
    assert _found(mirror, "in:archive") == {"moved there"}
    assert _found(mirror, "in:inbox there") == {"seen there", "flagged there", "draft there"}
    _docs_match_messages(mirror)

    with mirror.imap() as imap:
        imap.select_folder("INBOX")
        imap.set_flags([uids["seen there"]], [])
    mirror.sync()
    assert _found(mirror, "is:read there") == set()
    _docs_match_messages(mirror)
