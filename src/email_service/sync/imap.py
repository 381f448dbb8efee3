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

A poll compares the EXAMINE answer with the stored ``uidvalidity``, ``uidnext``, ``highestmodseq`` and message
count (``total_count``, kept by deltas, never recounted on the way):

* UIDNEXT and HIGHESTMODSEQ unchanged and EXISTS equal to the stored count: nothing changed.  The folder cost one
  EXAMINE; no stored UID is loaded, nothing is written but ``last_synced_at`` (set for all such folders in the
  transaction that records the run's outcome).
* Flags: with CONDSTORE ``UID FETCH 1:<uidnext-1> (FLAGS) (CHANGEDSINCE <highestmodseq>)``.  Without it every
  message's flags must be fetched; that one FETCH also lists every UID, so it gives new mail and expunges too.
* New mail: ``UID SEARCH UID <stored uidnext>:<uidnext-1>``.
* Expunges: with QRESYNC ``VANISHED (EARLIER)`` since the stored HIGHESTMODSEQ; otherwise only when EXISTS minus
  the new messages differs from the stored count (RFC 3501: the UIDs below the stored UIDNEXT were all stored, so
  equal counts mean none of them went), by comparing the UID list with the stored one.
* Afterwards the stored count must equal EXISTS; if not (a change missed, a race with the server, counts damaged)
  the folder is reconciled: full UID list diff and a recount.

Every UID range has an explicit upper bound (the EXAMINE's ``uidnext - 1``): ``*`` is the largest UID *in use*
(RFC 3501 section 9), so ``n:*`` can miss an expunged message at the top of a folder or match one below ``n``.

Local changes not yet written back (pending actions, :mod:`email_service.sync.pending`) are never undone: the
flag-merge step puts them on top of the server's flags (under the account row's lock), the new-UID step does not
bring back a message the user moved or deleted out of the folder, the folder-list step keeps folders created or
renamed locally and skips server names a pending rename or delete removes, and the folder's expected message count
allows for the messages pending moves and expunges take out of it or bring into it.  A write-back that lost track
of a message (a failed expunge, a move whose outcome is unknown) clears the folder's ``uidnext``: the next poll
then compares the whole UID list.

A folder the server will not open or read (``MailboxError``: SELECT/EXAMINE refused, e.g. ``NO [NOPERM]``; a FETCH
refused) gets the error on its row (``sync_error*``, cleared by its next good sync) and the run goes on with the
other folders; a folder that no longer exists (``[NONEXISTENT]``, or no longer in LIST) is removed.  A connection
failure ends the run; what was stored so far stays.  Handlers are idempotent: a batch only inserts UIDs not stored
yet and ``uidnext`` is only advanced once the folder is complete, so a crash resumes without duplicates or losses.
INBOX goes first; newest messages first.  The flag-merge, expunge and new-UID steps are separate methods
(:meth:`ImapMirror._merge_flags`, :meth:`ImapMirror._remove`, :meth:`ImapMirror._fetch_new`).

A run may be scoped to some folders (``email_sync_runs.folder``, e.g. INBOX after an IDLE push): the folder list
is refreshed as always, and only those folders are synced.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Collection
from dataclasses import dataclass, field, replace

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from email_service.models import EmailFolder, EmailMessage, folder_counts_delta, now_ms
from email_service.protocols.errors import ConnectionFailed, MailboxError, ProtocolError
from email_service.protocols.imap import ImapSession, MailboxInfo, MailboxStatus
from email_service.services.actions import lock_account
from email_service.services.changes import folder_message_ids, record_changes, record_folders_destroyed
from email_service.services.context import ServiceContext
from email_service.sync.pending import folder_guard, pending_count_offsets, uids_leaving, with_pending_flags
from email_service.sync.progress import RunProgress
from email_service.sync.store import IN_CHUNK, delete_messages, flag_columns
from email_service.sync.writer import MessageWriter

log = logging.getLogger("email_service.sync")

FlagChanges = dict[int, tuple[tuple[str, ...], int | None]]


@dataclass(frozen=True)
class FolderRef:
    """The identity and stored sync state of one folder row (``total_count``: its stored messages;
    ``pending_offset``: how many more of them there are locally than on the server because of pending moves and
    expunges, see :func:`email_service.sync.pending.pending_count_offsets`)."""

    id: uuid.UUID
    name: str
    uidvalidity: int | None
    uidnext: int | None
    highestmodseq: int | None
    state: str
    total_count: int
    pending_offset: int = 0

    @property
    def server_count(self) -> int:
        """The message count the server's EXISTS should show if nothing changed there since the last sync."""
        return self.total_count - self.pending_offset


@dataclass(frozen=True)
class StoredFlags:
    """A stored message's row id and flags, for merging the server's flags."""

    id: uuid.UUID
    flags: list[str]
    is_read: bool


@dataclass
class FolderChanges:
    """What one folder sync applies: ``flags`` ``{uid: (flags, modseq)}`` from the server, ``gone`` UIDs expunged
    there, ``new`` UIDs to fetch (newest first); ``listing`` when ``flags`` covers every message of the folder."""

    flags: FlagChanges = field(default_factory=dict)
    gone: set[int] = field(default_factory=set)
    new: list[int] = field(default_factory=list)
    listing: bool = False


def in_scope(name: str, folders: Collection[str] | None) -> bool:
    """True when mailbox ``name`` is among ``folders`` (``None``: all); INBOX matches case-insensitively (RFC 3501
    section 5.1)."""
    if folders is None:
        return True
    return name in folders or (name.upper() == "INBOX" and any(f.upper() == "INBOX" for f in folders))


class ImapMirror:
    """Mirrors one account's mailboxes into the database during one run (see the module docstring); ``folders``
    limits the run to those mailbox names (``None``: every selectable folder)."""

    def __init__(
        self,
        ctx: ServiceContext,
        tenant_id: uuid.UUID,
        account_id: uuid.UUID,
        imap: ImapSession,
        progress: RunProgress,
        folders: Collection[str] | None = None,
    ) -> None:
        self.ctx = ctx
        self.tenant_id = tenant_id
        self.account_id = account_id
        self.imap = imap
        self.progress = progress
        self.folders = folders

    def run(self) -> None:
        """Sync the folder list, then every selectable folder in scope, INBOX first; one folder's error never stops
        it.

        Raises :class:`ConnectionFailed` (or another non-folder :class:`ProtocolError`) when the connection or the
        session fails; folders finished before stay synced.
        """
        refs = [ref for ref in self._sync_folder_list(self.imap.list_mailboxes()) if in_scope(ref.name, self.folders)]
        self.progress.start(len(refs))
        for ref in refs:
            self._sync_folder_guarded(ref)

    # -- folder list and folder errors -----------------------------------------------------------------------

    def _sync_folder_list(self, mailboxes: list[MailboxInfo]) -> list[FolderRef]:
        names = {m.name for m in mailboxes}
        with self.ctx.db.tenant_session(self.tenant_id) as session:
            lock_account(session, self.account_id)  # lock order: account first (services.changes)
            stored = {
                f.name: f
                for f in session.execute(select(EmailFolder).where(EmailFolder.account_id == self.account_id)).scalars()
            }
            guard = folder_guard(session, self.account_id)  # local folder changes not yet written back
            mailboxes = [m for m in mailboxes if not guard.skips(m.name)]
            removed = [stored.pop(gone) for gone in set(stored) - names if not guard.keeps(gone)]
            self._log_removed_folders(session, [old.id for old in removed])
            for old in removed:
                session.delete(old)
            created: list[uuid.UUID] = []
            for mailbox in mailboxes:
                folder = stored.get(mailbox.name)
                if folder is None:
                    folder = EmailFolder(
                        id=uuid.uuid4(),
                        tenant_id=self.tenant_id,
                        account_id=self.account_id,
                        name=mailbox.name,
                        sync_state="initial",
                        total_count=0,
                        unread_count=0,
                    )
                    session.add(folder)
                    stored[mailbox.name] = folder
                    created.append(folder.id)
                folder.type = mailbox.role
                folder.delimiter = mailbox.delimiter
                folder.attributes = list(mailbox.flags)
                folder.is_selectable = mailbox.selectable
            updated = [f.id for f in stored.values() if f.id not in created and session.is_modified(f)]
            record_changes(
                session,
                tenant_id=self.tenant_id,
                account_id=self.account_id,
                kind="folder",
                created=created,
                updated=updated,
            )
            ordered = sorted(
                (stored[m.name] for m in mailboxes if m.selectable),
                key=lambda f: (f.type != "inbox", f.name.lower()),
            )
            session.flush()
            offsets = pending_count_offsets(session, self.account_id)  # read after the counts: errs towards a poll
            return [
                FolderRef(
                    f.id,
                    f.name,
                    f.uidvalidity,
                    f.uidnext,
                    f.highestmodseq,
                    f.sync_state,
                    f.total_count,
                    offsets.get(f.id, 0),
                )
                for f in ordered
            ]

    def _sync_folder_guarded(self, ref: FolderRef) -> None:
        """Sync one folder; a :class:`MailboxError` is recorded on the folder (or removes a folder that is gone)."""
        self.progress.enter_folder(ref.name)
        try:
            self._sync_folder(ref)
        except MailboxError as exc:
            if self._is_gone(ref.name, exc):
                log.info("folder %s no longer exists on the server: removed", ref.name)
                with self.ctx.db.tenant_session(self.tenant_id) as session:
                    lock_account(session, self.account_id)
                    self._log_removed_folders(session, [ref.id])
                    session.execute(delete(EmailFolder).where(EmailFolder.id == ref.id))
                self.progress.leave_folder(gone=True)
                return
            log.warning("folder %s of account %s not synced: %s", ref.name, self.account_id, exc.message)
            self._set_folder(ref.id, sync_error_kind=type(exc).__name__, sync_error=exc.message, sync_error_at=now_ms())
            self.progress.leave_folder(failed=True)
            return
        self.progress.leave_folder()

    def _log_removed_folders(self, session: Session, folder_ids: list[uuid.UUID]) -> None:
        record_folders_destroyed(session, tenant_id=self.tenant_id, account_id=self.account_id, folder_ids=folder_ids)

    def _is_gone(self, name: str, exc: MailboxError) -> bool:
        """``[NONEXISTENT]`` (RFC 5530), or LIST no longer shows the mailbox (not every server sends the code)."""
        if "[NONEXISTENT]" in (exc.server_text or "").upper():
            return True
        try:
            return not self.imap.mailbox_exists(name)
        except ConnectionFailed:
            raise
        except ProtocolError:
            return False

    def _set_folder(self, folder_id: uuid.UUID, **values: object) -> None:
        """Update the folder's row; when this sets or clears a sync error (shown by the API), log the folder."""
        with self.ctx.db.tenant_session(self.tenant_id) as session:
            lock_account(session, self.account_id)
            had_error = session.execute(
                select(EmailFolder.sync_error_kind).where(EmailFolder.id == folder_id)
            ).scalar_one_or_none()
            session.execute(
                update(EmailFolder).where(EmailFolder.id == folder_id).values(updated_at=now_ms(), **values)
            )
            if values.get("sync_error_kind") is not None or had_error is not None:
                record_changes(
                    session, tenant_id=self.tenant_id, account_id=self.account_id, kind="folder", updated=[folder_id]
                )

    # -- one folder ------------------------------------------------------------------------------------------

    def _sync_folder(self, ref: FolderRef) -> None:
        status = self.imap.select(ref.name, readonly=True)
        if ref.uidvalidity is not None and ref.uidvalidity != status.uidvalidity:
            ref = self._reset_folder(ref, status)
        if ref.state == "poll" and ref.uidnext is not None:
            if self._unchanged(ref, status):
                self.progress.unchanged(ref.id)
                return
            changes = self._poll_changes(ref, status)
        else:
            changes = self._listing_changes(ref, status, with_flags=False)
        self._merge_flags(ref, status, changes)
        removed = self._remove(ref, status, changes.gone)
        added = self._fetch_new(ref, status, changes.new)
        if ref.server_count - removed + added != status.exists:
            self._reconcile(ref, status)
        self._finish_folder(ref, status)

    def _unchanged(self, ref: FolderRef, status: MailboxStatus) -> bool:
        """RFC 7162 section 3.1.2.1: an unchanged HIGHESTMODSEQ means no flag changed; an unchanged UIDNEXT means
        nothing arrived; then EXISTS equal to the stored count means nothing was expunged.  Needs CONDSTORE."""
        return (
            self.imap.condstore
            and status.highestmodseq is not None
            and status.highestmodseq == ref.highestmodseq
            and status.uidnext == ref.uidnext
            and status.exists == ref.server_count
        )

    def _poll_changes(self, ref: FolderRef, status: MailboxStatus) -> FolderChanges:
        assert ref.uidnext is not None
        if not (self.imap.condstore and status.highestmodseq is not None and ref.highestmodseq is not None):
            return self._listing_changes(ref, status, with_flags=True)
        top = status.uidnext - 1
        changes = FolderChanges()
        modseq_moved = status.highestmodseq != ref.highestmodseq
        if modseq_moved:
            changes.flags = self.imap.fetch_flags(changedsince=ref.highestmodseq, up_to=top)
        if status.uidnext != ref.uidnext:
            arrived = set(self.imap.uids_in(ref.uidnext, top))
            changes.new = sorted(arrived - self._stored_uids(ref, status, min_uid=ref.uidnext), reverse=True)
        if self.imap.qresync:
            if modseq_moved:
                changes.gone = set(self.imap.vanished(ref.highestmodseq, up_to=top))
        elif status.exists - len(changes.new) != ref.server_count:
            changes.gone = self._stored_uids(ref, status) - set(self.imap.uids_in(1, top))
        return changes

    def _listing_changes(self, ref: FolderRef, status: MailboxStatus, *, with_flags: bool) -> FolderChanges:
        """Changes from the full UID list (first sync, resync, or a server without CONDSTORE: ``with_flags``, where
        the flags FETCH of every message is the UID list)."""
        top = status.uidnext - 1
        if with_flags:
            listing = self.imap.fetch_flags(up_to=top) if status.exists else {}
            stored_uids = self._stored_uids(ref, status)
            new = sorted(listing.keys() - stored_uids, reverse=True)
            return FolderChanges(flags=listing, gone=stored_uids - listing.keys(), new=new, listing=True)
        server = set(self.imap.uids_in(1, top)) if status.exists else set()
        stored_uids = self._stored_uids(ref, status)
        changes = FolderChanges(gone=stored_uids - server, new=sorted(server - stored_uids, reverse=True))
        if stored_uids & server:  # a first sync resumed: flags may have changed since those were stored
            changes.flags = self.imap.fetch_flags(sorted(stored_uids & server))
        return changes

    def _stored_uids(self, ref: FolderRef, status: MailboxStatus, *, min_uid: int = 1) -> set[int]:
        with self.ctx.db.tenant_session(self.tenant_id) as session:
            rows = session.execute(
                select(EmailMessage.uid).where(
                    EmailMessage.folder_id == ref.id,
                    EmailMessage.uidvalidity == status.uidvalidity,
                    EmailMessage.uid >= min_uid,
                )
            ).scalars()
            return {uid for uid in rows if uid is not None}

    @staticmethod
    def _stored_flags(
        session: Session, ref: FolderRef, status: MailboxStatus, uids: list[int] | None = None
    ) -> dict[int, StoredFlags]:
        """Stored flags by UID, read in ``session``: of ``uids`` (``IN`` lists of :data:`IN_CHUNK`), or of the
        whole folder."""
        query = select(EmailMessage.id, EmailMessage.uid, EmailMessage.flags, EmailMessage.is_read).where(
            EmailMessage.folder_id == ref.id, EmailMessage.uidvalidity == status.uidvalidity
        )
        chunks = [None] if uids is None else [uids[i : i + IN_CHUNK] for i in range(0, len(uids), IN_CHUNK)]
        found: dict[int, StoredFlags] = {}
        for chunk in chunks:
            rows = session.execute(query if chunk is None else query.where(EmailMessage.uid.in_(chunk)))
            found.update(
                (uid, StoredFlags(row_id, list(flags or []), is_read))
                for row_id, uid, flags, is_read in rows
                if uid is not None
            )
        return found

    # -- the steps that change stored messages ---------------------------------------------------------------

    def _merge_flags(self, ref: FolderRef, status: MailboxStatus, changes: FolderChanges) -> None:
        """Flag-merge step: the server's flags, with the pending local flag changes on top, over the stored ones,
        as one bulk UPDATE by primary key per :data:`IN_CHUNK` messages, and the folder's unread count by the
        difference.  One transaction under the account row's lock: the stored rows and the pending changes are
        read after the lock is taken, so a change the API is committing is either merged here or made after."""
        if not changes.flags:
            return
        now = now_ms()
        updates, unread = [], 0
        with self.ctx.db.tenant_session(self.tenant_id) as session:
            lock_account(session, self.account_id)
            stored = self._stored_flags(session, ref, status, None if changes.listing else sorted(changes.flags))
            known = {uid: row.id for uid, row in stored.items() if uid in changes.flags}
            merged = with_pending_flags(session, self.account_id, known, changes.flags)
            for uid, message_id in known.items():
                flags, modseq = merged[uid]
                row = stored[uid]
                if sorted(set(flags)) == sorted(row.flags):
                    continue
                values = flag_columns(flags)
                unread += int(not values["is_read"]) - int(not row.is_read)
                updates.append({"id": message_id, "modseq": modseq, "updated_at": now, **values})
            for start in range(0, len(updates), IN_CHUNK):
                session.execute(update(EmailMessage), updates[start : start + IN_CHUNK])  # executemany by key
            if unread:
                session.execute(folder_counts_delta(ref.id, unread=unread))
            self._log(session, "message", updated=[u["id"] for u in updates])
            self._log(session, "folder", updated=[ref.id] if unread else [])
        if updates:
            self.progress.updated(len(updates))

    def _remove(self, ref: FolderRef, status: MailboxStatus, uids: set[int]) -> int:
        """Expunge step: delete the stored messages of ``uids`` (those never stored are ignored); returns how many."""
        if not uids:
            return 0
        with self.ctx.db.tenant_session(self.tenant_id) as session:
            removed = delete_messages(
                session, ref.id, EmailMessage.uid, list(uids), EmailMessage.uidvalidity == status.uidvalidity
            )
        self.progress.removed(removed)
        return removed

    def _fetch_new(self, ref: FolderRef, status: MailboxStatus, uids: list[int]) -> int:
        """New-UID step: fetch ``uids`` (in this order) a batch per ``UID FETCH`` and store them (see
        :class:`MessageWriter`); UIDs expunged meanwhile are skipped, and so are UIDs a pending move or expunge
        takes out of this folder (the user moved or deleted them here).  Returns how many were stored."""
        if uids:
            leaving = uids_leaving(self.ctx, self.tenant_id, ref.id, status.uidvalidity)
            uids = [uid for uid in uids if uid not in leaving]
        self.progress.expect(len(uids))
        if not uids:
            return 0
        batch_size = self.ctx.settings.sync_batch_size
        writer = MessageWriter(
            self.ctx, tenant_id=self.tenant_id, account_id=self.account_id, folder_id=ref.id, progress=self.progress
        )
        with writer:
            for start in range(0, len(uids), batch_size):
                for fetched in self.imap.fetch_messages(uids[start : start + batch_size], batch_size=batch_size):
                    writer.add(
                        fetched.raw,
                        identity={"uid": fetched.uid, "uidvalidity": status.uidvalidity},
                        flags=fetched.flags,
                        received_at=fetched.internaldate_ms,
                        size=fetched.size,
                        modseq=fetched.modseq,
                    )
                writer.end_batch()
        return writer.added

    # -- repair and bookkeeping ------------------------------------------------------------------------------

    def _reset_folder(self, ref: FolderRef, status: MailboxStatus) -> FolderRef:
        """UIDVALIDITY changed (RFC 3501 section 2.3.1.1): every stored UID is void; drop the rows, resync."""
        log.info("UIDVALIDITY of %s changed (%s -> %s): refetching", ref.name, ref.uidvalidity, status.uidvalidity)
        with self.ctx.db.tenant_session(self.tenant_id) as session:
            lock_account(session, self.account_id)
            self._log(session, "message", destroyed=folder_message_ids(session, [ref.id]))
            self._log(session, "folder", updated=[ref.id])
            removed = session.execute(delete(EmailMessage).where(EmailMessage.folder_id == ref.id))
            session.execute(
                update(EmailFolder)
                .where(EmailFolder.id == ref.id)
                .values(
                    uidvalidity=status.uidvalidity,
                    uidnext=None,
                    highestmodseq=None,
                    sync_state="resync",
                    total_count=0,
                    unread_count=0,
                )
            )
        self.progress.removed(removed.rowcount or 0)  # type: ignore[attr-defined]
        return replace(
            ref, uidvalidity=status.uidvalidity, uidnext=None, highestmodseq=None, state="resync", total_count=0
        )

    def _reconcile(self, ref: FolderRef, status: MailboxStatus) -> None:
        """The stored count disagrees with EXISTS: compare the full UID lists, apply the difference, recount."""
        log.info("folder %s: stored count disagrees with EXISTS %d; comparing UID lists", ref.name, status.exists)
        server = set(self.imap.uids_in(1, status.uidnext - 1))
        stored = self._stored_uids(ref, status)
        self._remove(ref, status, stored - server)
        self._fetch_new(ref, status, sorted(server - stored, reverse=True))
        with self.ctx.db.tenant_session(self.tenant_id) as session:
            lock_account(session, self.account_id)
            total, unread = session.execute(
                select(func.count(), func.count().filter(EmailMessage.is_read.is_(False))).where(
                    EmailMessage.folder_id == ref.id
                )
            ).one()
            changed = session.execute(
                update(EmailFolder)
                .where(
                    EmailFolder.id == ref.id,
                    (EmailFolder.total_count != total) | (EmailFolder.unread_count != unread),
                )
                .values(total_count=total, unread_count=unread)
            )
            self._log(session, "folder", updated=[ref.id] if changed.rowcount else [])  # type: ignore[attr-defined]

    def _log(self, session: Session, kind: str, **changes: list[uuid.UUID]) -> None:
        """Log ``updated=`` / ``destroyed=`` ids of ``kind`` in the change log (services.changes)."""
        record_changes(session, tenant_id=self.tenant_id, account_id=self.account_id, kind=kind, **changes)

    def _finish_folder(self, ref: FolderRef, status: MailboxStatus) -> None:
        self._set_folder(
            ref.id,
            uidvalidity=status.uidvalidity,
            uidnext=status.uidnext,
            highestmodseq=status.highestmodseq,
            sync_state="poll",
            last_synced_at=now_ms(),
            sync_error_kind=None,
            sync_error=None,
            sync_error_at=None,
        )
