"""Blob garbage collection (``email-service gc-blobs``): remove blobs that no row references any more -- raw
messages of expunged or deleted messages, decoded parts of those, uploads removed from drafts -- and unfinished
uploads, never a blob that is referenced or was written within the grace period (DESIGN.md section 9).

Per tenant namespace of the store (:mod:`email_service.storage.blobs`): the blobs last written before ``now -
grace`` are looked up, 500 at a time, in every column that names a blob (:data:`BLOB_REFERENCES`) in a transaction
bound to that tenant; the unreferenced ones are removed with :meth:`BlobStore.collect`, which re-checks the write
time at the moment of removal.  A writer stores (or refreshes) a blob *before* it commits the row naming it, so a
blob being referenced right now is either seen by the lookup or counts as freshly written; the grace period
(``BLOB_GC_GRACE_SECONDS``, default one hour) only has to outlast the time between a blob write and its row's
commit (seconds).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice

from sqlalchemy import select

from email_service.models import EmailAttachment, EmailMessage
from email_service.services.context import ServiceContext
from email_service.storage.blobs import StoredBlob

#: Every column holding the sha256 of a blob; a table that starts naming blobs adds its column here.
BLOB_REFERENCES = (EmailMessage.raw_sha256, EmailAttachment.content_hash)
#: Digests looked up per query (well under SQLite's bound-parameter limit).
LOOKUP_BATCH = 500


@dataclass
class CollectionReport:
    """What one collection found: tenants visited, blobs examined, removed (and their bytes), kept because
    referenced or recently written, unfinished uploads removed."""

    tenants: int = 0
    examined: int = 0
    removed: int = 0
    removed_bytes: int = 0
    referenced: int = 0
    recent: int = 0
    incoming_removed: int = 0


def _batches(blobs: Iterable[StoredBlob], size: int) -> Iterator[list[StoredBlob]]:
    iterator = iter(blobs)
    while batch := list(islice(iterator, size)):
        yield batch


def referenced_digests(ctx: ServiceContext, tenant_id: uuid.UUID, digests: set[str]) -> set[str]:
    """The digests among ``digests`` that some row of the tenant names (one query per column)."""
    found: set[str] = set()
    with ctx.db.tenant_session(tenant_id) as session:
        for column in BLOB_REFERENCES:
            table = column.class_
            rows = session.execute(
                select(column).where(table.tenant_id == tenant_id, column.in_(sorted(digests))).distinct()
            ).scalars()
            found.update(digest for digest in rows if digest)
    return found


def collect_blobs(ctx: ServiceContext, *, grace_seconds: int | None = None, dry_run: bool = False) -> CollectionReport:
    """Remove unreferenced blobs last written more than ``grace_seconds`` ago (``BLOB_GC_GRACE_SECONDS`` when
    ``None``) from every tenant namespace; ``dry_run`` only counts them (``removed``) without removing."""
    grace = ctx.settings.blob_gc_grace_seconds if grace_seconds is None else grace_seconds
    written_before = time.time() - grace
    report = CollectionReport()
    for namespace in list(ctx.blobs.namespaces()):
        report.tenants += 1
        tenant_id = uuid.UUID(namespace)
        for batch in _batches(ctx.blobs.list_blobs(namespace), LOOKUP_BATCH):
            report.examined += len(batch)
            old = [blob for blob in batch if blob.modified < written_before]
            report.recent += len(batch) - len(old)
            if not old:
                continue
            referenced = referenced_digests(ctx, tenant_id, {blob.sha256 for blob in old})
            for blob in old:
                if blob.sha256 in referenced:
                    report.referenced += 1
                elif dry_run or ctx.blobs.collect(namespace, blob.sha256, written_before=written_before):
                    report.removed += 1
                    report.removed_bytes += blob.size
                else:
                    report.recent += 1
        if not dry_run:
            report.incoming_removed += ctx.blobs.remove_stale_incoming(namespace, written_before=written_before)
    return report
