"""IMAP mailbox mirroring (RFC 3501/9051; CONDSTORE and QRESYNC of RFC 7162).

Per folder, an explicit state machine persisted in ``email_folders.sync_state``::

    [initial] --every UID fetched, newest first--> [poll] <-------------------------------------+
                                                     |  new UIDs >= stored uidnext; flag changes |
                                                     |  (CHANGEDSINCE highestmodseq); expunges   |
                                                     |  (VANISHED, else UID set diff) -----------+
                                                     |
                                                     | UIDVALIDITY changed: drop the folder's rows
                                                     v
                                                 [resync] --every UID fetched--> [poll]

Handlers are idempotent: messages are stored batch by batch in short transactions, and a batch only inserts UIDs
not stored yet, so a crash or a dropped connection resumes without duplicates or losses (``uidnext`` is only
advanced once the folder is complete).  INBOX goes first; newest messages first on an initial sync.
"""

from __future__ import annotations

import logging
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, func, select, update

from email_service.errors import EmailServiceError
from email_service.models import EmailAccount, EmailFolder, EmailMessage, SyncRun, now_ms
from email_service.protocols.imap import ImapSession, MailboxInfo, MailboxStatus
from email_service.services.accounts import account_password
from email_service.services.connection_test import imap_endpoint
from email_service.services.context import ServiceContext
from email_service.services.jobs import RetryJob
from email_service.sync.locks import LOCK_RETRY_SECONDS, account_sync_lock
from email_service.sync.pending import folder_guard, uids_leaving, with_pending_flags
from email_service.sync.store import flag_columns, insert_rows, message_rows

log = logging.getLogger("email_service.sync")
#: UIDs per ``IN (...)`` list: well under SQLite's bound-parameter limit.
IN_CHUNK = 500


@dataclass
class SyncCounts:
    """What one run changed."""

    folders_synced: int = 0
    messages_added: int = 0
    messages_updated: int = 0
    messages_removed: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class FolderRef:
    """The identity and stored sync state of one folder row."""

    id: uuid.UUID
    name: str
    uidvalidity: int | None
    uidnext: int | None
    highestmodseq: int | None
    state: str


class ImapMirror:
    """Mirrors one account's mailboxes into the database during one run."""

    def __init__(self, ctx: ServiceContext, tenant_id: uuid.UUID, account_id: uuid.UUID, imap: ImapSession):
        self.ctx = ctx
        self.tenant_id = tenant_id
        self.account_id = account_id
        self.imap = imap
        self.counts = SyncCounts()

    def run(self) -> SyncCounts:
        """Sync the folder list, then every selectable folder, INBOX first."""
        for ref in self._sync_folder_list(self.imap.list_mailboxes()):
            self._sync_folder(ref)
            self.counts.folders_synced += 1
        return self.counts

    def _sync_folder_list(self, mailboxes: list[MailboxInfo]) -> list[FolderRef]:
        names = {m.name for m in mailboxes}
        with self.ctx.db.tenant_session(self.tenant_id) as session:
            stored = {
                f.name: f
                for f in session.execute(select(EmailFolder).where(EmailFolder.account_id == self.account_id)).scalars()
            }
            guard = folder_guard(session, self.account_id)  # local folder changes not yet written back
            mailboxes = [m for m in mailboxes if not guard.skips(m.name)]
            for gone in set(stored) - names:
                if not guard.keeps(gone):
                    session.delete(stored.pop(gone))
            for mailbox in mailboxes:
                folder = stored.get(mailbox.name)
                if folder is None:
                    folder = EmailFolder(
                        id=uuid.uuid4(),
                        tenant_id=self.tenant_id,
                        account_id=self.account_id,
                        name=mailbox.name,
                        sync_state="initial",
                    )
                    session.add(folder)
                    stored[mailbox.name] = folder
                folder.type = mailbox.role
                folder.delimiter = mailbox.delimiter
                folder.attributes = list(mailbox.flags)
                folder.is_selectable = mailbox.selectable
            ordered = sorted(
                (stored[m.name] for m in mailboxes if m.selectable),
                key=lambda f: (f.type != "inbox", f.name.lower()),
            )
            return [FolderRef(f.id, f.name, f.uidvalidity, f.uidnext, f.highestmodseq, f.sync_state) for f in ordered]

    def _sync_folder(self, ref: FolderRef) -> None:
        status = self.imap.select(ref.name, readonly=True)
        state = ref.state
        if ref.uidvalidity is not None and ref.uidvalidity != status.uidvalidity:
            log.info(
                "UIDVALIDITY of %s changed (%s -> %s): refetching",
                ref.name,
                ref.uidvalidity,
                status.uidvalidity,
            )
            state = "resync"
            with self.ctx.db.tenant_session(self.tenant_id) as session:
                removed = session.execute(delete(EmailMessage).where(EmailMessage.folder_id == ref.id))
                self.counts.messages_removed += removed.rowcount or 0  # type: ignore[attr-defined]
                session.execute(
                    update(EmailFolder)
                    .where(EmailFolder.id == ref.id)
                    .values(uidvalidity=status.uidvalidity, uidnext=None, highestmodseq=None, sync_state="resync")
                )
        stored_uids = self._stored_uids(ref.id, status.uidvalidity)
        if state == "poll" and self.imap.qresync and ref.highestmodseq and ref.uidnext:
            gone, new = self._changes_by_qresync(ref, status, stored_uids)
        else:
            server_uids = set(self.imap.all_uids()) if status.exists else set()
            gone, new = stored_uids - server_uids, server_uids - stored_uids
        if state == "poll":
            self._sync_flags(ref, status, stored_uids - gone)
        if gone:
            self._remove(ref.id, status.uidvalidity, gone)
        if new:  # not back into a mailbox the user moved or deleted them from (write-back pending)
            new -= uids_leaving(self.ctx, self.tenant_id, ref.id, status.uidvalidity)
        self._fetch_new(ref.id, status.uidvalidity, sorted(new, reverse=True))
        self._finish_folder(ref.id, status)

    def _changes_by_qresync(
        self, ref: FolderRef, status: MailboxStatus, stored_uids: set[int]
    ) -> tuple[set[int], set[int]]:
        """``(expunged, new)`` UIDs without listing the whole mailbox (RFC 7162 section 3.2.10).

        Expunges come from ``VANISHED (EARLIER)`` since the stored HIGHESTMODSEQ (unchanged HIGHESTMODSEQ: nothing
        was expunged); new mail is ``UID SEARCH UID <stored uidnext>:*``.
        """
        assert ref.highestmodseq is not None and ref.uidnext is not None
        gone: set[int] = set()
        if status.highestmodseq != ref.highestmodseq:
            gone = set(self.imap.vanished(ref.highestmodseq)) & stored_uids
        new: set[int] = set()
        if status.uidnext != ref.uidnext:
            new = set(self.imap.uids_from(ref.uidnext)) - stored_uids
        return gone, new

    def _stored_uids(self, folder_id: uuid.UUID, uidvalidity: int) -> set[int]:
        with self.ctx.db.tenant_session(self.tenant_id) as session:
            rows = session.execute(
                select(EmailMessage.uid).where(
                    EmailMessage.folder_id == folder_id, EmailMessage.uidvalidity == uidvalidity
                )
            ).scalars()
            return {uid for uid in rows if uid is not None}

    def _fetch_new(self, folder_id: uuid.UUID, uidvalidity: int, uids: list[int]) -> None:
        """Fetch and parse batch N+1 while batch N is being stored (one batch in flight).

        Parsing and the raw-blob writes run on this thread; the row insert, which mostly waits on the database,
        runs on the writer thread.  (Blob writes on one or four extra threads measured 5-10 % slower on 2 cores,
        each short syscall waiting for the GIL held by the parser; parsing in worker processes gained nothing.)
        Each batch is its own short transaction, submitted only after its blobs are on disk, so an interruption
        loses at most the uncommitted batches and a committed row always has its raw bytes.
        """
        batch_size = self.ctx.settings.sync_batch_size
        scan_status = "pending" if self.ctx.settings.virus_scan_enabled else "skipped"
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="email-sync-writer") as writer:
            pending: Future[int] | None = None
            for start in range(0, len(uids), batch_size):
                chunk = uids[start : start + batch_size]
                messages, attachments = [], []
                for fetched in self.imap.fetch_messages(chunk, batch_size=batch_size):
                    row, parts = message_rows(
                        fetched,
                        tenant_id=self.tenant_id,
                        account_id=self.account_id,
                        folder_id=folder_id,
                        uidvalidity=uidvalidity,
                        scan_status=scan_status,
                    )
                    self.ctx.blobs.put(str(self.tenant_id), fetched.raw, sha256=row["raw_sha256"])
                    messages.append(row)
                    attachments.extend(parts)
                if pending is not None:
                    self.counts.messages_added += pending.result()
                pending = writer.submit(self._write_batch, messages, attachments)
            if pending is not None:
                self.counts.messages_added += pending.result()

    def _write_batch(self, messages: list[dict[str, Any]], attachments: list[dict[str, Any]]) -> int:
        with self.ctx.db.tenant_session(self.tenant_id) as session:
            insert_rows(session, messages, attachments)
        return len(messages)

    def _sync_flags(self, ref: FolderRef, status: MailboxStatus, known: set[int]) -> None:
        if not known:
            return
        if ref.highestmodseq and status.highestmodseq is not None:
            if status.highestmodseq == ref.highestmodseq:
                return
            changes = self.imap.fetch_flags(changedsince=ref.highestmodseq)
        else:
            changes = self.imap.fetch_flags(sorted(known))
        uids = sorted(changes)
        with self.ctx.db.tenant_session(self.tenant_id) as session:
            for start in range(0, len(uids), IN_CHUNK):
                rows = session.execute(
                    select(EmailMessage.id, EmailMessage.uid, EmailMessage.flags).where(
                        EmailMessage.folder_id == ref.id,
                        EmailMessage.uidvalidity == status.uidvalidity,
                        EmailMessage.uid.in_(uids[start : start + IN_CHUNK]),
                    )
                ).all()
                merged = with_pending_flags(session, rows, changes)  # pending local changes win until applied
                now = now_ms()
                updates = [
                    {"id": row_id, "modseq": merged[uid][1], "updated_at": now, **flag_columns(merged[uid][0])}
                    for row_id, uid, flags in rows
                    if uid is not None and sorted(set(merged[uid][0])) != sorted(flags or [])
                ]
                if updates:
                    session.execute(update(EmailMessage), updates)  # bulk UPDATE by primary key (executemany)
                self.counts.messages_updated += len(updates)

    def _remove(self, folder_id: uuid.UUID, uidvalidity: int, uids: set[int]) -> None:
        with self.ctx.db.tenant_session(self.tenant_id) as session:
            ordered = sorted(uids)
            for start in range(0, len(ordered), IN_CHUNK):
                session.execute(
                    delete(EmailMessage).where(
                        EmailMessage.folder_id == folder_id,
                        EmailMessage.uidvalidity == uidvalidity,
                        EmailMessage.uid.in_(ordered[start : start + IN_CHUNK]),
                    )
                )
        self.counts.messages_removed += len(uids)

    def _finish_folder(self, folder_id: uuid.UUID, status: MailboxStatus) -> None:
        with self.ctx.db.tenant_session(self.tenant_id) as session:
            total, unread = session.execute(
                select(func.count(), func.count().filter(EmailMessage.is_read.is_(False))).where(
                    EmailMessage.folder_id == folder_id
                )
            ).one()
            session.execute(
                update(EmailFolder)
                .where(EmailFolder.id == folder_id)
                .values(
                    uidvalidity=status.uidvalidity,
                    uidnext=status.uidnext,
                    highestmodseq=status.highestmodseq,
                    sync_state="poll",
                    total_count=total,
                    unread_count=unread,
                    last_synced_at=now_ms(),
                    updated_at=now_ms(),
                )
            )


def _run_state(ctx: ServiceContext, tenant_id: uuid.UUID, run_id: uuid.UUID) -> str | None:
    with ctx.db.tenant_session(tenant_id) as session:
        return session.execute(select(SyncRun.state).where(SyncRun.id == run_id)).scalar_one_or_none()


def _run_is_active(ctx: ServiceContext, tenant_id: uuid.UUID, run_id: uuid.UUID) -> bool:
    return _run_state(ctx, tenant_id, run_id) in ("queued", "running")


def _set_run_and_account(
    ctx: ServiceContext,
    tenant_id: uuid.UUID,
    run_id: uuid.UUID,
    account_id: uuid.UUID,
    run: dict[str, object],
    account: dict[str, object],
) -> None:
    """Update the run row and the account's sync flags in one transaction, so that ``GET /accounts/{id}/sync``
    never sees a finished run on an account still marked syncing (or the reverse)."""
    with ctx.db.tenant_session(tenant_id) as session:
        session.execute(update(SyncRun).where(SyncRun.id == run_id).values(updated_at=now_ms(), **run))
        session.execute(update(EmailAccount).where(EmailAccount.id == account_id).values(**account))


def sync_account(ctx: ServiceContext, *, tenant_id: uuid.UUID, account_id: uuid.UUID, run_id: uuid.UUID) -> str:
    """Run one sync of an IMAP account and record its outcome on the :class:`SyncRun` row.

    Returns the final run state: ``succeeded``, ``failed``, or ``skipped`` when another worker holds the account's
    lock (it is working this run: the run row is left to it) or the run has already ended (a job delivered twice).
    Raises :class:`RetryJob` when the lock is taken while the run is still ``queued``: the account's write-back
    (:mod:`email_service.sync.syncback`) holds it, and the sync runs once it is done.
    A run found ``running`` while we hold the lock was interrupted (its worker died): it is worked again, which is
    safe because every step of the mirror is idempotent.  Never raises for mail-server trouble: the error kind and
    the server's message go to the run row.
    """
    with account_sync_lock(ctx.db, account_id) as taken:
        if not taken and _run_state(ctx, tenant_id, run_id) == "queued":  # the write-back holds the lock
            raise RetryJob("The account's write-back is running", delay_seconds=LOCK_RETRY_SECONDS)
        if not taken or not _run_is_active(ctx, tenant_id, run_id):
            return "skipped"
        started = now_ms()
        _set_run_and_account(
            ctx, tenant_id, run_id, account_id, {"state": "running", "started_at": started}, {"is_syncing": True}
        )
        mirror: ImapMirror | None = None
        try:
            with ctx.db.tenant_session(tenant_id) as session:
                account = session.get(EmailAccount, account_id)
                if account is None or account.deleted_at is not None or not account.is_enabled:
                    raise EmailServiceError("Account is deleted or disabled")
                endpoint = imap_endpoint(ctx, account, account_password(ctx, session, account))
            with ImapSession(endpoint) as imap:
                mirror = ImapMirror(ctx, tenant_id, account_id, imap)
                mirror.run()
        except EmailServiceError as exc:
            log.warning("sync of account %s failed: %s: %s", account_id, type(exc).__name__, exc.message)
            counts = mirror.counts if mirror else SyncCounts()
            _finish(ctx, tenant_id, account_id, run_id, counts, error=(type(exc).__name__, exc.message))
            return "failed"
        except Exception:
            log.exception("sync of account %s failed unexpectedly", account_id)
            counts = mirror.counts if mirror else SyncCounts()
            _finish(
                ctx,
                tenant_id,
                account_id,
                run_id,
                counts,
                error=("InternalError", "Internal error during sync"),
            )
            return "failed"
        _finish(ctx, tenant_id, account_id, run_id, mirror.counts, error=None)
        return "succeeded"


def _finish(
    ctx: ServiceContext,
    tenant_id: uuid.UUID,
    account_id: uuid.UUID,
    run_id: uuid.UUID,
    counts: SyncCounts,
    *,
    error: tuple[str, str] | None,
) -> None:
    finished = now_ms()
    run: dict[str, object] = {
        "state": "failed" if error else "succeeded",
        "finished_at": finished,
        "folders_synced": counts.folders_synced,
        "messages_added": counts.messages_added,
        "messages_updated": counts.messages_updated,
        "messages_removed": counts.messages_removed,
        "error_kind": error[0] if error else None,
        "error": error[1] if error else None,
    }
    account: dict[str, object] = {"is_syncing": False}
    if error is None:
        account["last_sync_at"] = finished
    _set_run_and_account(ctx, tenant_id, run_id, account_id, run, account)
