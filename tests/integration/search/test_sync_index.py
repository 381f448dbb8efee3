"""A mailbox mirrored by the sync is searchable at once (issue 11): the sync makes each message's doc row on its
parsing thread (:class:`email_service.sync.writer.MessageWriter`), and those rows are the ones the one store path
makes from the stored message (:func:`email_service.services.search_index.doc_row`)."""

from __future__ import annotations

import uuid
from email.message import EmailMessage
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from email_service.models import EmailAttachment, SearchDoc
from email_service.models import EmailMessage as MessageRow
from email_service.services.context import ServiceContext
from email_service.services.search_index import doc_row
from tests.conftest import Caller, create_imap_account
from tests.support.dovecot import Dovecot
from tests.support.mirror import sync_now

pytestmark = pytest.mark.integration


def _raw(subject: str, body: str, *, html: str | None = None, attachment: str | None = None) -> bytes:
    message = EmailMessage()
    message["From"] = "Jürgen Groß <jg@example.de>"
    message["To"] = "Bob <bob@example.com>"
    message["Subject"] = subject
    message["Message-ID"] = f"<{uuid.uuid4().hex}@example.com>"
    if html is not None:
        message.set_content(html, subtype="html")
    else:
        message.set_content(body)
    if attachment:
        message.add_attachment(b"%PDF-1.4\n", maintype="application", subtype="pdf", filename=attachment)
    return bytes(message)


def _search(client: FlaskClient, caller: Caller, account_id: str, q: str) -> set[str]:
    response = client.get(
        f"/api/v1/accounts/{account_id}/messages/search", query_string={"q": q}, headers=caller.headers
    )
    assert response.status_code == 200, response.get_json()
    return {m["subject"] for m in response.get_json()["messages"]}


def test_a_synced_mailbox_is_searchable_with_the_store_paths_doc_rows(
    client: FlaskClient, caller: Caller, ctx: ServiceContext, dovecot: Dovecot, mail_user: tuple[str, str]
) -> None:
    user, password = mail_user
    dovecot.append(user, "INBOX", _raw("Budget review", "The budgets for the quarterly meetings_2026"))
    dovecot.append(user, "INBOX", _raw("Grüße aus Köln", "Ärger über die Straße"))
    dovecot.append(user, "INBOX", _raw("Markup only", "", html="<p>Only <b>htmlword</b> here</p>"))
    dovecot.append(user, "INBOX", _raw("With a file", "see attached", attachment="Résumé 2026.pdf"))
    account_id = create_imap_account(client, caller, dovecot.host, dovecot.imap_port, user, password)
    assert sync_now(client, caller, account_id)["state"] == "succeeded"

    assert _search(client, caller, account_id, "budget meeting") == {"Budget review"}
    assert _search(client, caller, account_id, "meetings_2026") == {"Budget review"}
    assert _search(client, caller, account_id, "koln arger") == {"Grüße aus Köln"}
    assert _search(client, caller, account_id, "htmlword") == {"Markup only"}
    assert _search(client, caller, account_id, "filename:resume") == {"With a file"}
    assert len(_search(client, caller, account_id, "from:jurgen")) == 4

    with ctx.db.tenant_session(caller.tenant_id) as session:
        messages = session.execute(select(MessageRow).where(MessageRow.account_id == uuid.UUID(account_id))).scalars()
        for message in messages:
            names = session.execute(
                select(EmailAttachment.filename).where(EmailAttachment.message_id == message.id)
            ).scalars()
            row = {c.key: getattr(message, c.key) for c in MessageRow.__table__.columns}
            expected = doc_row(row, [n for n in names if n])
            doc = session.execute(select(SearchDoc).where(SearchDoc.message_id == message.id)).scalar_one()
            stored: dict[str, Any] = {key: getattr(doc, key) for key in expected}
            assert stored == expected, message.subject
