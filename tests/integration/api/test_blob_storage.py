"""Blob stores (filesystem and S3 through moto's server) under one contract, an API round trip on S3, and garbage
collection: unreferenced blobs go, referenced ones and writes in flight stay."""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from apiflask import APIFlask
from sqlalchemy import delete

from email_service import cli
from email_service.errors import NotFound
from email_service.models import EmailMessage
from email_service.services import blob_gc
from email_service.services.blob_gc import collect_blobs
from email_service.services.context import ServiceContext
from email_service.storage.blobs import BlobStore, FilesystemBlobStore
from email_service.storage.s3 import S3BlobStore
from tests.conftest import Caller
from tests.integration.api.attachment_helpers import PDF, uploaded
from tests.integration.api.conftest import ATTACHMENT_BYTES, RAW_MESSAGE, Mailbox, seed_draft
from tests.support.peers import S3Server

pytestmark = pytest.mark.integration


@pytest.fixture
def aws_environment(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    for name, value in s3_server.environment.items():
        monkeypatch.setenv(name, value)
    return s3_server


@pytest.fixture(params=["filesystem", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobStore]:
    if request.param == "filesystem":
        yield FilesystemBlobStore(tmp_path / "blobs")
    else:
        server: S3Server = request.getfixturevalue("s3_server")
        yield S3BlobStore(server.bucket, prefix=f"t{uuid.uuid4().hex}/", client=server.client())


def test_the_store_contract(store: BlobStore) -> None:
    tenant, other = str(uuid.uuid4()), str(uuid.uuid4())
    data = bytes(range(256)) * 1000
    digest = store.put(tenant, data)
    assert digest == hashlib.sha256(data).hexdigest() and store.put(tenant, data) == digest
    assert store.exists(tenant, digest) and not store.exists(other, digest)  # per tenant
    assert store.size(tenant, digest) == len(data) and store.get(tenant, digest) == data
    assert b"".join(store.iter_chunks(tenant, digest, start=1000, stop=70000, chunk_size=4096)) == data[1000:70000]
    assert b"".join(store.iter_chunks(tenant, digest, start=len(data) - 5)) == data[-5:]
    assert max(len(c) for c in store.iter_chunks(tenant, digest, chunk_size=4096)) <= 4096
    with pytest.raises(NotFound):
        store.iter_chunks(other, digest)
    with pytest.raises(NotFound):
        store.get(tenant, "../" + digest[3:])
    with store.writer(tenant) as writer:
        for piece in (b"abc", b"def"):
            writer.write(piece)
        streamed = writer.commit()
    assert streamed == hashlib.sha256(b"abcdef").hexdigest() and store.get(tenant, streamed) == b"abcdef"
    with store.writer(tenant) as writer:
        writer.write(b"never committed")
    assert {b.sha256 for b in store.list_blobs(tenant)} == {digest, streamed}
    assert tenant in set(store.namespaces())
    assert not store.collect(tenant, digest, written_before=time.time() - 3600)  # written just now: kept
    assert store.collect(tenant, digest, written_before=time.time() + 60)
    assert not store.exists(tenant, digest) and store.exists(tenant, streamed)


def test_an_upload_and_a_download_round_trip_through_s3(
    app_with: Callable[..., APIFlask], aws_environment: S3Server, ctx: ServiceContext, mailbox: Mailbox
) -> None:
    app = app_with(
        BLOB_STORAGE_TYPE="s3", S3_BUCKET=aws_environment.bucket, S3_ENDPOINT_URL=aws_environment.endpoint_url
    )
    client, owner = app.test_client(), mailbox.owner
    draft = seed_draft(ctx, owner.tenant_id, uuid.UUID(mailbox.account_id))
    created = uploaded(client, owner, draft, PDF, "s3.pdf")
    key = f"{owner.tenant_id}/{created['contentHash']}"
    stored = aws_environment.client().get_object(Bucket=aws_environment.bucket, Key=key)["Body"].read()
    assert stored == PDF
    assert client.get(created["url"], headers=owner.headers).data == PDF
    ranged = client.get(created["url"], headers={**owner.headers, "Range": "bytes=5-14"})
    assert ranged.status_code == 206 and ranged.data == PDF[5:15]
    assert ranged.headers["Content-Range"] == f"bytes 5-14/{len(PDF)}"


@pytest.fixture
def mailbox(make_mailbox: Callable[[Caller], Mailbox], caller: Caller) -> Mailbox:
    return make_mailbox(caller)


def _age(ctx: ServiceContext, tenant_id: uuid.UUID, digest: str, seconds: float) -> None:
    assert isinstance(ctx.blobs, FilesystemBlobStore)
    path = ctx.blobs.root / str(tenant_id) / digest[:2] / digest
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_collection_removes_unreferenced_blobs_and_keeps_referenced_and_recent_ones(
    client: Any, ctx: ServiceContext, mailbox: Mailbox
) -> None:
    owner = mailbox.owner
    tenant = str(owner.tenant_id)
    raw = hashlib.sha256(RAW_MESSAGE).hexdigest()
    part = hashlib.sha256(ATTACHMENT_BYTES).hexdigest()
    client.get(f"/api/v1/attachments/{mailbox.attachment_id}/download", headers=owner.headers)  # decoded blob
    draft = seed_draft(ctx, owner.tenant_id, uuid.UUID(mailbox.account_id))
    upload = uploaded(client, owner, draft, PDF, "x.pdf")
    orphan = ctx.blobs.put(tenant, b"nobody refers to me")
    fresh_orphan = ctx.blobs.put(tenant, b"written a moment ago")
    for digest in (raw, part, upload["contentHash"], orphan):
        _age(ctx, owner.tenant_id, digest, 7200)

    report = collect_blobs(ctx, grace_seconds=3600)
    assert report.removed >= 1 and report.referenced >= 3
    left = {blob.sha256 for blob in ctx.blobs.list_blobs(tenant)}
    assert {raw, part, upload["contentHash"], fresh_orphan} <= left and orphan not in left

    # The message is expunged and the upload removed from its draft: their blobs go at the next collection.
    client.delete(f"/api/v1/attachments/{upload['id']}", headers=owner.headers)
    with ctx.db.tenant_session(owner.tenant_id) as session:
        session.execute(delete(EmailMessage).where(EmailMessage.id == mailbox.message_id))
    collect_blobs(ctx, grace_seconds=3600)
    left = {blob.sha256 for blob in ctx.blobs.list_blobs(tenant)}
    assert not {raw, part, upload["contentHash"]} & left and fresh_orphan in left


def test_a_blob_written_again_during_a_collection_is_kept(
    ctx: ServiceContext, mailbox: Mailbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer stores bytes identical to an old unreferenced blob while the collector looks up references (its
    row is not committed yet): the write refreshes the blob, so the collector leaves it."""
    tenant = str(mailbox.owner.tenant_id)
    digest = ctx.blobs.put(tenant, b"about to be attached again")
    _age(ctx, mailbox.owner.tenant_id, digest, 7200)
    lookup = blob_gc.referenced_digests

    def lookup_while_a_write_lands(*args: Any) -> set[str]:
        found = lookup(*args)
        ctx.blobs.put(tenant, b"about to be attached again")  # the writer, before it commits its row
        return found

    monkeypatch.setattr(blob_gc, "referenced_digests", lookup_while_a_write_lands)
    report = collect_blobs(ctx, grace_seconds=3600)
    assert ctx.blobs.exists(tenant, digest) and report.referenced + report.recent >= 1


def test_gc_blobs_command(
    ctx: ServiceContext, mailbox: Mailbox, data_dir: Path, database_urls: tuple[str, str], monkeypatch: Any, capsys: Any
) -> None:
    tenant = str(mailbox.owner.tenant_id)
    orphan = ctx.blobs.put(tenant, b"orphan for the command")
    _age(ctx, mailbox.owner.tenant_id, orphan, 7200)
    env = {"EMAIL_SERVICE_DATA_DIR": str(data_dir), "DATABASE_URL": database_urls[1],
           "DATABASE_MIGRATION_URL": database_urls[0], "JWT_SECRET_KEY": "x" * 40, "AUTO_UPGRADE_DB": "false",
           "CREDENTIAL_ENCRYPTION_KEYS": ctx.settings.credential_keys[0]}  # fmt: skip
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert cli.main(["gc-blobs", "--dry-run"]) == 0
    dry = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert dry["dryRun"] is True and dry["removed"] >= 1 and ctx.blobs.exists(tenant, orphan)
    assert cli.main(["gc-blobs"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["removed"] >= 1 and set(report) >= {"tenants", "examined", "referenced", "recent", "removedBytes"}
    assert not ctx.blobs.exists(tenant, orphan)
