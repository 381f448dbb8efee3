"""Virus scanning with a real clamd (private signature database holding the EICAR test signature): an upload is
scanned by the ``scan_attachment`` job, a mirrored attachment before its first download; an infected attachment
is never served nor handed to a send; an unreachable scanner means 503, never an unscanned file."""

from __future__ import annotations

import base64
import dataclasses
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from apiflask import APIFlask
from flask.testing import FlaskClient

from email_service.app import create_app
from email_service.services.attachment_content import AttachmentInfected, draft_attachments
from email_service.services.context import ServiceContext, build_context
from email_service.tasks.runner import InProcessJobRunner
from tests.conftest import Caller, create_imap_account, make_settings, wait_for_sync
from tests.integration.api.attachment_helpers import PDF, upload, uploaded
from tests.integration.api.conftest import seed_draft
from tests.support.dovecot import Dovecot
from tests.support.peers import EICAR, EICAR_SIGNATURE, Clamd

pytestmark = pytest.mark.integration


@dataclasses.dataclass
class ScanningApp:
    """An app with scanning on, its own job runner and context (the session's database)."""

    app: APIFlask
    ctx: ServiceContext

    @property
    def client(self) -> FlaskClient:
        return self.app.test_client()


@pytest.fixture
def scanning(
    data_dir: Path, database_urls: tuple[str, str], ctx: ServiceContext, clamd: Clamd
) -> Iterator[ScanningApp]:
    settings = make_settings(
        data_dir, database_urls, VIRUS_SCAN_ENABLED="true", CLAMD_SOCKET=clamd.socket_path, RATE_LIMIT="10000/minute"
    )
    runner = InProcessJobRunner(workers=2)
    fresh = build_context(settings, jobs=runner)
    fresh.db.dispose()
    context = dataclasses.replace(fresh, db=ctx.db)
    runner.bind(context)
    yield ScanningApp(create_app(context=context), context)
    runner.shutdown(wait=True)


def _account(client: FlaskClient, caller: Caller) -> str:
    response = client.post(
        "/api/v1/accounts",
        headers=caller.headers,
        json={"accountName": "a", "emailAddress": f"u{uuid.uuid4().hex[:6]}@example.test", "protocol": "imap",
              "hostname": "127.0.0.1", "port": 1, "encryption": "none", "username": "u", "password": "p"},
    )  # fmt: skip
    assert response.status_code == 201
    return str(response.get_json()["id"])


def _wait_scanned(client: FlaskClient, caller: Caller, attachment_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        body: dict[str, Any] = client.get(
            f"/api/v1/attachments/{attachment_id}/metadata", headers=caller.headers
        ).get_json()
        if body["virusScanStatus"] not in ("pending", "error"):
            return body
        time.sleep(0.1)
    raise AssertionError("the scan job did not finish")


def test_an_uploaded_eicar_file_is_found_by_the_job_and_never_served_nor_sent(
    scanning: ScanningApp, caller: Caller
) -> None:
    client = scanning.client
    draft = seed_draft(scanning.ctx, caller.tenant_id, uuid.UUID(_account(client, caller)))
    infected = uploaded(client, caller, draft, EICAR, "eicar.txt")
    clean = uploaded(client, caller, draft, PDF, "fine.pdf")
    assert infected["virusScanStatus"] == "pending" and clean["virusScanStatus"] == "pending"

    found = _wait_scanned(client, caller, infected["id"])
    assert found["virusScanStatus"] == "infected" and found["virusName"] == EICAR_SIGNATURE
    assert _wait_scanned(client, caller, clean["id"])["virusScanStatus"] == "clean"

    refused = client.get(infected["url"], headers=caller.headers)
    assert refused.status_code == 403 and EICAR_SIGNATURE in refused.get_json()["message"]
    assert EICAR not in refused.data
    assert (
        client.get(infected["url"] + "?inline=true", headers={**caller.headers, "Range": "bytes=0-9"}).status_code
        == 403
    )
    assert client.get(clean["url"], headers=caller.headers).data == PDF

    with pytest.raises(AttachmentInfected, match=EICAR_SIGNATURE):
        draft_attachments(scanning.ctx, tenant_id=caller.tenant_id, message_id=draft, for_sending=True)
    built = draft_attachments(scanning.ctx, tenant_id=caller.tenant_id, message_id=draft)  # re-APPEND: all parts
    assert [d.attachment.filename for d in built] == ["eicar.txt", "fine.pdf"]


def test_a_download_never_serves_an_unscanned_file_when_the_scanner_is_down(
    scanning: ScanningApp, app_with: Any, caller: Caller, tmp_path: Path
) -> None:
    down = app_with(VIRUS_SCAN_ENABLED="true", CLAMD_SOCKET=str(tmp_path / "no-clamd.sock")).test_client()
    draft = seed_draft(scanning.ctx, caller.tenant_id, uuid.UUID(_account(down, caller)))
    created = uploaded(down, caller, draft, PDF, "wait.pdf")  # its job runs in the session runner: scanning off
    response = down.get(created["url"], headers=caller.headers)
    assert response.status_code == 503 and response.get_json()["error"] == "Service unavailable"
    assert "scanned" in response.get_json()["message"] and PDF not in response.data
    metadata = down.get(f"/api/v1/attachments/{created['id']}/metadata", headers=caller.headers).get_json()
    assert metadata["virusScanStatus"] == "error"
    recovered = scanning.client.get(created["url"], headers=caller.headers)  # clamd back: scanned, then served
    assert recovered.status_code == 200 and recovered.data == PDF


def _mail_with_attachments() -> bytes:
    eicar = base64.encodebytes(EICAR).replace(b"\n", b"\r\n")
    pdf = base64.encodebytes(PDF).replace(b"\n", b"\r\n")
    return (
        b"From: a@example.test\r\nTo: b@example.test\r\nSubject: two files\r\nMessage-ID: <scan@example.test>\r\n"
        b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="s"\r\n\r\n--s\r\nContent-Type: text/plain\r\n'
        b"\r\nsee attached\r\n--s\r\nContent-Type: application/octet-stream\r\n"
        b'Content-Disposition: attachment; filename="tool.com"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
        + eicar
        + b'--s\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename="fine.pdf"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n" + pdf + b"--s--\r\n"
    )


def test_eicar_in_a_mirrored_message_is_scanned_before_its_first_download_and_never_served(
    scanning: ScanningApp, caller: Caller, dovecot: Dovecot, mail_user: tuple[str, str]
) -> None:
    client = scanning.client
    user, password = mail_user
    dovecot.append(user, "INBOX", _mail_with_attachments())
    account_id = create_imap_account(client, caller, dovecot.host, dovecot.imap_port, user, password)
    client.post(f"/api/v1/accounts/{account_id}/sync", headers=caller.headers)
    assert wait_for_sync(client, account_id, caller.headers)["state"] == "succeeded"
    [message] = client.get(f"/api/v1/accounts/{account_id}/messages", headers=caller.headers).get_json()["messages"]
    listed = client.get(f"/api/v1/messages/{message['id']}/attachments", headers=caller.headers).get_json()["data"]
    by_name = {item["filename"]: item for item in listed}
    assert {item["virusScanStatus"] for item in listed} == {"pending"}  # not scanned at sync

    refused = client.get(by_name["tool.com"]["url"], headers=caller.headers)
    assert refused.status_code == 403 and EICAR_SIGNATURE in refused.get_json()["message"]
    assert EICAR not in refused.data
    metadata = client.get(f"/api/v1/attachments/{by_name['tool.com']['id']}/metadata", headers=caller.headers)
    assert metadata.get_json()["virusScanStatus"] == "infected"
    assert client.get(by_name["tool.com"]["url"], headers=caller.headers).status_code == 403  # and stays refused
    fine = client.get(by_name["fine.pdf"]["url"], headers=caller.headers)
    assert fine.status_code == 200 and fine.data == PDF
    statuses = client.get(f"/api/v1/messages/{message['id']}/attachments", headers=caller.headers).get_json()["data"]
    assert {item["filename"]: item["virusScanStatus"] for item in statuses} == {
        "tool.com": "infected",
        "fine.pdf": "clean",
    }
    refused_upload = upload(client, caller, message["id"], PDF)  # mirrored mail is not a draft
    assert refused_upload.status_code == 400
