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

A run may be scoped to one folder (``email_sync_runs.folder``, e.g. INBOX after an IDLE push): the folder list is
refreshed as always, and only that folder is synced.  When the run ends, a follow-up that a push recorded on it
meanwhile is queued (:func:`email_service.services.sync_runs.queue_next_run`).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Collection
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
from email_service.services.sync_runs import queue_next_run
from email_service.sync.locks import account_sync_lock
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


def in_scope(name: str, folders: Collection[str] | None) -> bool:
    """True when mailbox ``name`` is among ``folders`` (``None``: all); INBOX matches case-insensitively (RFC 3501
    section 5.1)."""
    if folders is None:
        return True
    return name in folders or (name.upper() == "INBOX" and any(f.upper() == "INBOX" for f in folders))


class ImapMirror:
    """Mirrors one account's mailboxes into the database during one run; ``folders`` limits the run to those
    mailbox names (``None``: every selectable folder)."""

    def __init__(
        self,
        ctx: ServiceContext,
        tenant_id: uuid.UUID,
        account_id: uuid.UUID,
        imap: ImapSession,
        folders: Collection[str] | None = None,
    ):
        self.ctx = ctx
        self.tenant_id = tenant_id
        self.account_id = account_id
        self.imap = imap
        self.folders = folders
        self.counts = SyncCounts()

    def run(self) -> SyncCounts:
        """Sync the folder list, then every selectable folder in scope, INBOX first."""
        for ref in self._sync_folder_list(self.imap.list_mailboxes()):
            if in_scope(ref.name, self.folders):
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
            for gone in set(stored) - names:
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
                    )
                    self.ctx.blobs.put(fetched.raw, sha256=row["raw_sha256"])
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
                now = now_ms()
                updates = [
                    {"id": row_id, "modseq": changes[uid][1], "updated_at": now, **flag_columns(changes[uid][0])}
                    for row_id, uid, flags in rows
                    if uid is not None and sorted(set(changes[uid][0])) != sorted(flags or [])
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


def _active_run_scope(ctx: ServiceContext, tenant_id: uuid.UUID, run_id: uuid.UUID) -> tuple[bool, str | None]:
    """``(active, folder)`` of the run: is it still queued or running, and the one folder it covers (if any)."""
    with ctx.db.tenant_session(tenant_id) as session:
        row = session.execute(select(SyncRun.state, SyncRun.folder).where(SyncRun.id == run_id)).one_or_none()
    return (row is not None and row.state in ("queued", "running"), row.folder if row is not None else None)


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
    lock (working this run, or another one: when that one ends, its job sends this run's job again, see
    :func:`~email_service.services.sync_runs.queue_next_run`) or the run has already ended (a job delivered twice).
    Once the run has ended and the lock is released, a follow-up a push recorded meanwhile is queued.
    A run found ``running`` while we hold the lock was interrupted (its worker died): it is worked again, which is
    safe because every step of the mirror is idempotent.  Never raises for mail-server trouble: the error kind and
    the server's message go to the run row.
    """
    state = _sync_account_locked(ctx, tenant_id=tenant_id, account_id=account_id, run_id=run_id)
    if state != "skipped":  # after the lock is released, so that the next run's job can take it
        queue_next_run(ctx, tenant_id=tenant_id, account_id=account_id, ended_run_id=run_id)
    return state


def _sync_account_locked(ctx: ServiceContext, *, tenant_id: uuid.UUID, account_id: uuid.UUID, run_id: uuid.UUID) -> str:
    with account_sync_lock(ctx.db, account_id) as taken:
        active, folder = _active_run_scope(ctx, tenant_id, run_id) if taken else (False, None)
        if not active:
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
                mirror = ImapMirror(ctx, tenant_id, account_id, imap, folders=None if folder is None else (folder,))
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
