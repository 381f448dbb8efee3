"""The attachment endpoints of seed 004 through HTTP: uploads to drafts (streamed limits, sniffed types, safe names,
dedup), ranged downloads with their headers, mirrored parts decoded from the raw message, deletes, isolation."""

from __future__ import annotations

import hashlib
import io
import tracemalloc
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from apiflask import APIFlask
from flask.testing import FlaskClient
from sqlalchemy import select

from email_service.models import EmailAttachment, EmailMessage
from email_service.services.context import ServiceContext
from tests.conftest import Caller
from tests.integration.api.attachment_helpers import HTML, PDF, SVG, TEXT, multipart, png, upload, uploaded
from tests.integration.api.conftest import ATTACHMENT_BYTES, Mailbox, seed_draft

pytestmark = pytest.mark.integration
MB = 1024 * 1024


@pytest.fixture
def mailbox(make_mailbox: Callable[[Caller], Mailbox], caller: Caller) -> Mailbox:
    return make_mailbox(caller)


@pytest.fixture
def draft(ctx: ServiceContext, mailbox: Mailbox) -> uuid.UUID:
    return seed_draft(ctx, mailbox.owner.tenant_id, uuid.UUID(mailbox.account_id))


def _draft_row(ctx: ServiceContext, tenant_id: uuid.UUID, draft_id: uuid.UUID) -> EmailMessage:
    with ctx.db.tenant_session(tenant_id) as session:
        row = session.get(EmailMessage, draft_id)
        assert row is not None
        return row


def _blob_files(ctx: ServiceContext, tenant_id: uuid.UUID) -> list[str]:
    return sorted(blob.sha256 for blob in ctx.blobs.list_blobs(str(tenant_id)))


def test_upload_list_metadata_download_delete(
    client: FlaskClient, ctx: ServiceContext, mailbox: Mailbox, draft: uuid.UUID
) -> None:
    owner = mailbox.owner
    created = uploaded(client, owner, draft, PDF, "report.pdf")
    digest = hashlib.sha256(PDF).hexdigest()
    assert created["mimeType"] == "application/pdf" and created["size"] == len(PDF)
    assert created["contentHash"] == digest and created["filename"] == "report.pdf"
    assert created["virusScanStatus"] == "skipped" and created["messageId"] == str(draft)
    assert created["url"] == f"/api/v1/attachments/{created['id']}/download"
    row = _draft_row(ctx, owner.tenant_id, draft)
    assert row.has_attachments and row.draft_changed_at is not None

    listed = client.get(f"/api/messages/{draft}/attachments?limit=10", headers=owner.headers).get_json()
    assert listed == {"data": [created], "pagination": {"total": 1, "offset": 0, "limit": 10}}
    metadata = client.get(f"/api/v1/attachments/{created['id']}/metadata", headers=owner.headers).get_json()
    assert metadata == {**created, "contentEncoding": "none", "disposition": "attachment", "virusName": None}

    download = client.get(created["url"], headers=owner.headers)
    assert download.status_code == 200 and download.data == PDF
    assert download.headers["Content-Type"] == "application/pdf"
    assert download.headers["Content-Length"] == str(len(PDF))
    assert download.headers["ETag"] == f'"{digest}"' and download.headers["Accept-Ranges"] == "bytes"
    assert download.headers["X-Content-Type-Options"] == "nosniff"
    assert download.headers["Cache-Control"] == "private"
    assert download.headers["Content-Disposition"] == 'attachment; filename="report.pdf"'
    assert client.get(created["url"], headers={**owner.headers, "If-None-Match": f'"{digest}"'}).status_code == 304

    changed_before = _draft_row(ctx, owner.tenant_id, draft).draft_changed_at
    deleted = client.delete(f"/api/v1/attachments/{created['id']}", headers=owner.headers)
    assert deleted.status_code == 200 and deleted.get_json() == {"success": True, "message": "Attachment deleted"}
    assert client.get(f"/api/v1/messages/{draft}/attachments", headers=owner.headers).get_json()["data"] == []
    row = _draft_row(ctx, owner.tenant_id, draft)
    assert not row.has_attachments and row.draft_changed_at is not None and row.draft_changed_at >= changed_before
    assert client.get(created["url"], headers=owner.headers).status_code == 404


RANGES = [
    # (Range, If-Range, status, first byte, end byte exclusive)
    ("bytes=0-99", None, 206, 0, 100),
    ("bytes=100-", None, 206, 100, None),
    ("bytes=-50", None, 206, -50, None),
    ("bytes=10-10", None, 206, 10, 11),
    ("bytes=0-999999", None, 206, 0, None),  # last-pos past the end: up to the end
    ("bytes=999999-", None, 416, None, None),  # first-pos past the end
    ("bytes=0-9,20-29", None, 200, 0, None),  # several ranges: the whole file
    ("bytes=abc", None, 200, 0, None),  # malformed: ignored
    ("items=0-9", None, 200, 0, None),  # another unit: ignored
    ("bytes=0-99", "ETAG", 206, 0, 100),  # If-Range with our ETag: the range
    ("bytes=0-99", '"0000"', 200, 0, None),  # another ETag: the whole file
    ("bytes=0-99", "Sun, 01 Mar 2026 12:00:00 GMT", 200, 0, None),  # a date (no Last-Modified): the whole file
]


@pytest.mark.parametrize(("range_header", "if_range", "status", "start", "stop"), RANGES)
def test_range_requests(
    client: FlaskClient,
    mailbox: Mailbox,
    draft: uuid.UUID,
    range_header: str,
    if_range: str | None,
    status: int,
    start: int | None,
    stop: int | None,
) -> None:
    created = uploaded(client, mailbox.owner, draft, PDF, "r.pdf")
    etag = f'"{created["contentHash"]}"'
    headers = {**mailbox.owner.headers, "Range": range_header}
    if if_range is not None:
        headers["If-Range"] = etag if if_range == "ETAG" else if_range
    response = client.get(created["url"], headers=headers)
    assert response.status_code == status, response.headers
    size = len(PDF)
    if status == 416:
        assert response.headers["Content-Range"] == f"bytes */{size}"
        assert response.get_json()["error"] == "Range not satisfiable"
        return
    expected = PDF[start:stop]
    assert response.data == expected and response.headers["Content-Length"] == str(len(expected))
    if status == 206:
        first = start if start is not None and start >= 0 else size + (start or 0)
        assert response.headers["Content-Range"] == f"bytes {first}-{first + len(expected) - 1}/{size}"
    else:
        assert "Content-Range" not in response.headers


@pytest.mark.parametrize(
    ("content", "mime_type", "inline_allowed"),
    [(PDF, "application/pdf", True), (png(), "image/png", True), (TEXT, "text/plain", True),
     (HTML, "text/html", False), (SVG, "image/svg+xml", False)],
)  # fmt: skip
def test_inline_only_for_types_safe_to_render(
    app_with: Callable[..., APIFlask],
    mailbox: Mailbox,
    draft: uuid.UUID,
    content: bytes,
    mime_type: str,
    inline_allowed: bool,
) -> None:
    client = app_with(ALLOWED_MIME_TYPES="application/pdf,image/*,text/*").test_client()
    created = uploaded(client, mailbox.owner, draft, content, "shown")
    assert created["mimeType"] == mime_type
    inline = client.get(created["url"] + "?inline=true", headers=mailbox.owner.headers)
    assert inline.status_code == 200 and inline.data == content
    assert inline.headers["Content-Disposition"].startswith("inline;" if inline_allowed else "attachment;")
    assert inline.headers["Content-Security-Policy"] == "default-src 'none'; sandbox"
    default = client.get(created["url"], headers=mailbox.owner.headers)
    assert default.headers["Content-Disposition"].startswith("attachment;")
    assert client.get(created["url"] + "?inline=yes", headers=mailbox.owner.headers).status_code == 400


class CountingStream(io.RawIOBase):
    """A request body of ``size`` bytes produced on demand; records how much the server read."""

    def __init__(self, prefix: bytes, size: int, suffix: bytes) -> None:
        self.prefix, self.size, self.suffix = prefix, size, suffix
        self.position = 0
        self.total = len(prefix) + size + len(suffix)

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def readinto(self, buffer: Any) -> int:
        start = self.position
        end = min(start + len(buffer), self.total)
        head, body_end = len(self.prefix), len(self.prefix) + self.size
        data = bytearray()
        if start < head:
            data += self.prefix[start : min(end, head)]
        if end > head and start < body_end:
            data += b"a" * (min(end, body_end) - max(start, head))
        if end > body_end:
            data += self.suffix[max(start, body_end) - body_end : end - body_end]
        buffer[: len(data)] = data
        self.position = end
        return len(data)


def _streamed_body(file_size: int) -> tuple[CountingStream, str]:
    body, content_type = multipart(b"@@", "big.txt")
    head, tail = body.split(b"@@")
    return CountingStream(head, file_size, tail), content_type


def test_a_file_one_byte_over_25_mb_is_refused_while_it_streams(
    client: FlaskClient, mailbox: Mailbox, draft: uuid.UUID
) -> None:
    limit = 25 * MB
    owner = mailbox.owner
    stream, content_type = _streamed_body(limit + 1)
    response = client.post(
        f"/api/v1/messages/{draft}/attachments",
        headers=owner.headers,
        environ_overrides={"wsgi.input": stream, "CONTENT_LENGTH": str(stream.total), "CONTENT_TYPE": content_type},
    )
    assert response.status_code == 413 and response.get_json()["error"] == "Payload too large", response.get_json()
    assert str(limit) in response.get_json()["message"]

    # A 40 MB body of unknown length (chunked): refused once 25 MB + 1 byte of the file arrived, the rest unread.
    stream, content_type = _streamed_body(40 * MB)
    response = client.post(
        f"/api/v1/messages/{draft}/attachments",
        headers={**owner.headers, "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input": stream, "wsgi.input_terminated": True, "CONTENT_TYPE": content_type},
    )
    assert response.status_code == 413
    assert limit < stream.position < limit + 2 * MB, stream.position
    assert client.get(f"/api/v1/messages/{draft}/attachments", headers=owner.headers).get_json()["data"] == []


def test_a_file_of_exactly_25_mb_is_stored_without_holding_it_in_memory(
    client: FlaskClient, ctx: ServiceContext, mailbox: Mailbox, draft: uuid.UUID
) -> None:
    stream, content_type = _streamed_body(25 * MB)
    tracemalloc.start()
    try:
        response = client.post(
            f"/api/v1/messages/{draft}/attachments",
            headers=mailbox.owner.headers,
            environ_overrides={"wsgi.input": stream, "CONTENT_LENGTH": str(stream.total), "CONTENT_TYPE": content_type},
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["size"] == 25 * MB and response.get_json()["mimeType"] == "text/plain"
    assert peak < 8 * MB, f"peak Python allocation {peak} bytes while uploading 25 MB"
    assert hashlib.sha256(b"a" * (25 * MB)).hexdigest() == response.get_json()["contentHash"]


def test_upload_rules(
    client: FlaskClient, app_with: Callable[..., APIFlask], mailbox: Mailbox, draft: uuid.UUID
) -> None:
    owner = mailbox.owner
    not_draft = upload(client, owner, mailbox.message_id, PDF)
    assert not_draft.status_code == 400 and "draft" in not_draft.get_json()["message"]
    empty = upload(client, owner, draft, b"")
    assert empty.status_code == 400 and empty.get_json()["message"] == "file is empty"
    script = upload(client, owner, draft, b"\x7fELF\x02\x01\x01" + bytes(200))
    assert script.status_code == 400 and "is not allowed" in script.get_json()["message"]
    assert "file" in script.get_json()["details"]
    json_body = client.post(f"/api/v1/messages/{draft}/attachments", headers=owner.headers, json={"file": "x"})
    assert json_body.status_code == 415
    body, content_type = multipart(PDF, extra=(("comment", b"hi"),))
    unknown = client.post(
        f"/api/v1/messages/{draft}/attachments", headers={**owner.headers, "Content-Type": content_type}, data=body
    )
    assert unknown.status_code == 400 and "comment" in unknown.get_json()["message"]
    body, content_type = multipart(None, name_field="x.pdf")
    missing = client.post(
        f"/api/v1/messages/{draft}/attachments", headers={**owner.headers, "Content-Type": content_type}, data=body
    )
    assert missing.status_code == 400 and missing.get_json()["message"] == "file is required"
    nul = upload(client, owner, draft, PDF, name_field="a\x00b.pdf")
    assert nul.status_code == 400 and "filename" in nul.get_json()["message"]
    garbage = client.post(
        f"/api/v1/messages/{draft}/attachments",
        headers={**owner.headers, "Content-Type": "multipart/form-data; boundary=zz"},
        data=b"--zz\r\nno headers end",
    )
    assert garbage.status_code == 400
    assert client.get(f"/api/v1/messages/{draft}/attachments", headers=owner.headers).get_json()["data"] == []

    small = app_with(MAX_ATTACHMENTS_PER_MESSAGE="2").test_client()
    for index in range(2):
        uploaded(small, owner, draft, TEXT + str(index).encode(), f"{index}.txt")
    third = upload(small, owner, draft, TEXT + b"3")
    assert third.status_code == 400 and "at most 2 attachments" in third.get_json()["message"]


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("../../etc/passwd.pdf", "passwd.pdf"),
        ("C:\\Users\\me\\..\\report.pdf", "report.pdf"),
        ("invoice\u202efdp.exe.pdf", "invoicefdp.exe.pdf"),  # right-to-left override removed
        ("tab\tand\r\nnewline.pdf", "tab and newline.pdf"),
        (".hidden.pdf", "hidden.pdf"),
        ("Résumé final.pdf", "Résumé final.pdf"),
        ("CON.pdf", "_CON.pdf"),
        ("x" * 400 + ".pdf", "x" * 251 + ".pdf"),  # 255 bytes, extension kept
        ("", "attachment.pdf"),
        ("../", "attachment.pdf"),
    ],
)
def test_file_names_are_sanitised(
    client: FlaskClient, mailbox: Mailbox, draft: uuid.UUID, given: str, stored: str
) -> None:
    response = upload(client, mailbox.owner, draft, PDF, "ignored.pdf", name_field=given)
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["filename"] == stored
    disposition = client.get(response.get_json()["url"], headers=mailbox.owner.headers).headers["Content-Disposition"]
    assert "/" not in disposition and "\\" not in disposition and "\u202e" not in disposition
    if not stored.isascii():
        assert disposition == "attachment; filename=\"Resume final.pdf\"; filename*=UTF-8''R%C3%A9sum%C3%A9%20final.pdf"


def test_same_bytes_are_one_attachment_per_draft_and_one_blob_per_tenant(
    client: FlaskClient,
    ctx: ServiceContext,
    mailbox: Mailbox,
    draft: uuid.UUID,
    make_mailbox: Callable[[Caller], Mailbox],
    make_caller: Callable[..., Caller],
) -> None:
    owner = mailbox.owner
    first = uploaded(client, owner, draft, PDF, "a.pdf")
    again = upload(client, owner, draft, PDF, "b.pdf")
    assert again.status_code == 200 and again.get_json() == first
    other_draft = seed_draft(ctx, owner.tenant_id, uuid.UUID(mailbox.account_id))
    second = uploaded(client, owner, other_draft, PDF, "c.pdf")
    assert second["id"] != first["id"] and second["contentHash"] == first["contentHash"]
    digest = hashlib.sha256(PDF).hexdigest()
    assert _blob_files(ctx, owner.tenant_id).count(digest) == 1

    stranger = make_mailbox(make_caller())
    stranger_draft = seed_draft(ctx, stranger.owner.tenant_id, uuid.UUID(stranger.account_id))
    uploaded(client, stranger.owner, stranger_draft, PDF, "d.pdf")
    assert digest in _blob_files(ctx, stranger.owner.tenant_id)  # its own copy, in its own namespace


def test_a_mirrored_part_is_served_from_its_raw_message(
    client: FlaskClient, ctx: ServiceContext, mailbox: Mailbox
) -> None:
    owner = mailbox.owner
    listed = client.get(f"/api/v1/messages/{mailbox.message_id}/attachments", headers=owner.headers).get_json()
    [item] = listed["data"]
    digest = hashlib.sha256(ATTACHMENT_BYTES).hexdigest()
    assert item["id"] == str(mailbox.attachment_id) and item["contentHash"] == digest
    assert digest not in _blob_files(ctx, owner.tenant_id)  # not decoded at sync
    download = client.get(item["url"], headers={**owner.headers, "Range": "bytes=9-"})
    assert download.status_code == 206 and download.data == ATTACHMENT_BYTES[9:]
    assert digest in _blob_files(ctx, owner.tenant_id)  # decoded once, on first use
    assert client.get(item["url"], headers=owner.headers).data == ATTACHMENT_BYTES
    metadata = client.get(f"/api/v1/attachments/{item['id']}/metadata", headers=owner.headers).get_json()
    assert metadata["contentEncoding"] == "base64" and metadata["disposition"] == "attachment"
    refused = client.delete(f"/api/v1/attachments/{item['id']}", headers=owner.headers)
    assert refused.status_code == 400 and "drafts" in refused.get_json()["message"]


def _endpoints(mailbox: Mailbox, draft: uuid.UUID, attachment_id: str) -> list[tuple[str, str, dict[str, Any]]]:
    body, content_type = multipart(PDF + b"other", "x.pdf")
    return [
        ("GET", f"/messages/{mailbox.message_id}/attachments", {}),
        ("POST", f"/messages/{draft}/attachments", {"data": body, "content_type": content_type}),
        ("GET", f"/attachments/{attachment_id}/download", {}),
        ("GET", f"/attachments/{attachment_id}/metadata", {}),
        ("DELETE", f"/attachments/{attachment_id}", {}),
    ]


@pytest.mark.parametrize("prefix", ["/api/v1", "/api"])
def test_other_users_and_tenants_never_reach_an_attachment(
    client: FlaskClient,
    ctx: ServiceContext,
    mailbox: Mailbox,
    draft: uuid.UUID,
    make_caller: Callable[..., Caller],
    prefix: str,
) -> None:
    owner = mailbox.owner
    attachment = uploaded(client, owner, draft, PDF, "secret-name.pdf")
    colleague, outsider, outsider_admin = owner.colleague(ctx), make_caller(), make_caller(role="admin")
    for method, path, options in _endpoints(mailbox, draft, attachment["id"]):
        for who, status in ((colleague, 403), (outsider, 404), (outsider_admin, 404)):
            response = client.open(prefix + path, method=method, headers=who.headers, **options)
            assert response.status_code == status, (method, path, response.get_data(as_text=True))
            assert set(response.get_json()) == {"error", "message"}
            assert "secret-name" not in response.get_data(as_text=True)
            assert PDF not in response.get_data()
    admin = owner.colleague(ctx, "admin")
    for method, path, options in _endpoints(mailbox, draft, attachment["id"]):
        response = client.open(prefix + path, method=method, headers=admin.headers, **options)
        assert response.status_code in (200, 201), (method, path, response.get_data(as_text=True))
    with ctx.db.tenant_session(owner.tenant_id) as session:
        assert session.execute(select(EmailMessage.id).where(EmailMessage.id == draft)).scalar_one() == draft


def test_the_message_html_is_served_sanitised_with_cid_links_and_remote_images_on_request(
    client: FlaskClient, ctx: ServiceContext, mailbox: Mailbox
) -> None:
    owner = mailbox.owner
    html = (
        '<p onclick="steal()">Hello</p><script>alert(1)</script><img src="cid:logo@example.test">'
        '<img src="https://track.example/open.gif"><a href="javascript:alert(1)">x</a>'
    )
    with ctx.db.tenant_session(owner.tenant_id) as session:
        message = session.get(EmailMessage, mailbox.message_id)
        assert message is not None
        message.html_body = html
        attachment = session.get(EmailAttachment, mailbox.attachment_id)
        assert attachment is not None
        attachment.content_id = "logo@example.test"
    body = client.get(f"/api/v1/messages/{mailbox.message_id}", headers=owner.headers).get_json()
    assert body["hasRemoteImages"] is True
    assert (
        "script" not in body["htmlBody"] and "onclick" not in body["htmlBody"] and "javascript" not in body["htmlBody"]
    )
    assert "track.example" not in body["htmlBody"] and "<p>Hello</p>" in body["htmlBody"]
    assert f'src="/api/v1/attachments/{mailbox.attachment_id}/download?inline=true"' in body["htmlBody"]
    assert body["attachments"][0]["url"] == f"/api/v1/attachments/{mailbox.attachment_id}/download"
    shown = client.get(f"/api/v1/messages/{mailbox.message_id}?remoteImages=true", headers=owner.headers).get_json()
    assert 'src="https://track.example/open.gif"' in shown["htmlBody"] and "script" not in shown["htmlBody"]
    raw = client.get(f"/api/v1/messages/{mailbox.message_id}/raw", headers=owner.headers)
    assert raw.status_code == 200  # the unsanitised original stays available only as the raw message
    assert client.get(f"/api/v1/messages/{mailbox.message_id}?remoteImages=1", headers=owner.headers).status_code == 400
