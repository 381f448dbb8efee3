"""Storing the new messages of one folder, batch by batch (shared by the IMAP and POP3 mirrors).

Parsing, the raw-blob writes and the search doc rows (the stemmed words, pure CPU) run on the caller's thread; the
row insert, which mostly waits on the database, runs on one writer thread while the caller fetches and parses the
next batch (one batch in flight). (Blob writes on one or four extra threads measured 5-10 % slower on 2 cores, each
short syscall waiting for the GIL held by the parser; parsing in worker processes gained nothing. For the same
reason the doc rows -- and on PostgreSQL their ``tsv`` literal -- are made here, not on the writer thread: stemming
there held the GIL while this thread's blob syscalls queued for it.) Each batch is one short transaction that
inserts the rows, moves the folder's counts and records the run's progress, submitted only after its blobs are on
disk: an interruption loses at most the uncommitted batches, and a committed row always has its raw bytes. The same
transaction logs the new messages as created and the folder (its counts) as updated (the change log).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Any, Self

from email_service.services import search_index
from email_service.services.context import ServiceContext
from email_service.sync.progress import RunProgress
from email_service.sync.store import add_messages, message_rows


class MessageWriter:
    """Buffers parsed messages of one folder and stores them a batch at a time; use as a context manager.

    Leaving the ``with`` block normally stores the last batch and waits for it; leaving it by an exception waits
    for the batch in flight and drops the unsubmitted one (a later run fetches those messages again).
    """

    def __init__(
        self,
        ctx: ServiceContext,
        *,
        tenant_id: uuid.UUID,
        account_id: uuid.UUID,
        folder_id: uuid.UUID,
        progress: RunProgress,
    ) -> None:
        self.ctx, self.tenant_id, self.account_id, self.folder_id = ctx, tenant_id, account_id, folder_id
        self.progress = progress
        self.scan_status = "pending" if ctx.settings.virus_scan_enabled else "skipped"
        self.added = 0
        self._messages: list[dict[str, Any]] = []
        self._attachments: list[dict[str, Any]] = []
        self._docs: dict[uuid.UUID, dict[str, Any]] = {}
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="email-sync-writer")
        self._pending: Future[int] | None = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if exc_type is None:
                self.end_batch()
            self._wait()
        finally:
            self._pool.shutdown(wait=True)

    def add(
        self,
        raw: bytes,
        *,
        identity: Mapping[str, Any],
        flags: Iterable[str] = (),
        received_at: int | None = None,
        size: int | None = None,
        modseq: int | None = None,
    ) -> None:
        """Parse one message (see :func:`message_rows` for the arguments), put its raw bytes in the tenant's blob
        namespace and buffer its rows and its search doc row for the current batch.  Its attachments await a
        virus scan (``pending``) when scanning is on."""
        row, parts = message_rows(
            raw,
            identity=identity,
            tenant_id=self.tenant_id,
            account_id=self.account_id,
            folder_id=self.folder_id,
            flags=flags,
            received_at=received_at,
            size=size,
            modseq=modseq,
            scan_status=self.scan_status,
        )
        self.ctx.blobs.put(str(self.tenant_id), raw, sha256=row["raw_sha256"])
        self._messages.append(row)
        self._attachments.extend(parts)
        names = [str(part["filename"]) for part in parts if part.get("filename")]
        self._docs[row["id"]] = search_index.doc_row(row, names, tsv=self.ctx.db.is_postgres)

    def end_batch(self) -> None:
        """Hand the buffered messages to the writer thread (after the previous batch is stored)."""
        if not self._messages:
            return
        messages, attachments, docs = self._messages, self._attachments, self._docs
        self._messages, self._attachments, self._docs = [], [], {}
        self._wait()
        self._pending = self._pool.submit(self._store, messages, attachments, docs)

    def _wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            self.added += pending.result()

    def _store(
        self, messages: list[dict[str, Any]], attachments: list[dict[str, Any]], docs: dict[uuid.UUID, dict[str, Any]]
    ) -> int:
        with self.ctx.db.tenant_session(self.tenant_id) as session:
            add_messages(
                session,
                tenant_id=self.tenant_id,
                account_id=self.account_id,
                folder_id=self.folder_id,
                messages=messages,
                attachments=attachments,
                docs=docs,
            )
            self.progress.stored(len(messages))
            session.execute(self.progress.run_update())
        return len(messages)
