"""Write-back, the database side: record what the server did with one group of actions, in one transaction.

* Each action ends ``applied`` or ``failed`` (error kind and the server's words; also the message's ``lastError``).
* Flags: the row takes the server's flags (from the STORE answer) with the message's still-pending flag changes on
  top; the folder's unread count follows by delta.
* Move applied: the row keeps its id and takes the new UID (COPYUID), unless another move/expunge of it is still
  pending; then that next action learns where the message is now.  Applied without a new UID (no UIDPLUS): the
  row is dropped and the next sync brings the message back.
* Move failed: the row goes back to where the message still is on the server (or is dropped when that is unknown),
  and a sync is asked for.
* Expunge failed: the row is already gone, so the folder's stored UIDNEXT is cleared and the next sync compares
  its whole UID list and brings the message back.
* Folder rename failed: the local names go back.  Other failures (folder create/delete, a message gone) are
  corrected by the next sync, which the job queues.
* The change log gets the group's messages (updated, or destroyed when dropped here) and the folders touched.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, load_only

from email_service.models import REMOVING_KINDS, EmailFolder, EmailMessage, PendingAction, apply_folder_counts, now_ms
from email_service.services.actions import IN_CHUNK, pending_flag_deltas
from email_service.services.changes import record_changes
from email_service.services.flags import apply_flag_delta, flag_columns
from email_service.services.message_changes import CHANGED_COLUMNS
from email_service.sync.syncback_append import record_append
from email_service.sync.syncback_apply import Outcome


class OutcomeRecorder:
    """Records the outcomes of one group in the open ``session``; ``needs_sync`` tells whether the local state
    may now differ from the server's in a way only a sync can repair."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.needs_sync = False
        self.counts: dict[uuid.UUID, list[int]] = defaultdict(lambda: [0, 0])
        self.destroyed: list[uuid.UUID] = []

    def record(self, group: Sequence[PendingAction], outcomes: Sequence[Outcome]) -> None:
        """Mark the actions, then update the messages and folders they touched."""
        self._mark(outcomes)
        by_id = {outcome.action_id: outcome for outcome in outcomes}
        pairs = [(action, by_id[action.id]) for action in group]
        kind = group[0].kind
        if kind == "flags":
            self._flags(pairs)
        elif kind in REMOVING_KINDS:
            messages = self._messages([action.message_id for action, _ in pairs])
            later = self._pending_of([action.message_id for action, _ in pairs])
            for action, outcome in pairs:
                after = [other for other in later.get(action.message_id, []) if other.seq > action.seq]
                self._removal(action, outcome, messages.get(action.message_id), after)
        elif kind == "folder_rename" and not outcomes[0].ok:
            self._revert_rename(group[0])
        elif kind == "append":
            self.needs_sync = record_append(self.session, group[0], outcomes[0]) or self.needs_sync
        if any(not outcome.ok for outcome in outcomes) and kind != "flags":
            self.needs_sync = True
        self._log_changes(group)
        self._write_counts()

    def _mark(self, outcomes: Sequence[Outcome]) -> None:
        """One UPDATE per outcome kind (applied, or failed with one error) and 500 actions, not one per action."""
        now = now_ms()
        by_result: dict[tuple[bool, str | None, str | None], list[uuid.UUID]] = defaultdict(list)
        for outcome in outcomes:
            by_result[(outcome.ok, outcome.error, outcome.error_kind)].append(outcome.action_id)
        for (ok, error, kind), ids in by_result.items():
            values: dict[str, object] = {"attempts": PendingAction.attempts + 1, "updated_at": now}
            if ok:
                values.update(state="applied", applied_at=now, error=None, error_kind=None)
            else:
                values.update(state="failed", error=error, error_kind=kind)
            for start in range(0, len(ids), IN_CHUNK):
                chunk = ids[start : start + IN_CHUNK]
                self.session.execute(update(PendingAction).where(PendingAction.id.in_(chunk)).values(**values))

    def _messages(self, ids: Sequence[uuid.UUID | None]) -> dict[uuid.UUID | None, EmailMessage]:
        """The message rows (only the columns the write-back touches: no bodies) by id."""
        wanted = [i for i in dict.fromkeys(ids) if i is not None]
        found: dict[uuid.UUID | None, EmailMessage] = {}
        for start in range(0, len(wanted), IN_CHUNK):
            chunk = wanted[start : start + IN_CHUNK]
            rows = self.session.execute(
                select(EmailMessage).options(load_only(*CHANGED_COLUMNS)).where(EmailMessage.id.in_(chunk))
            )
            found.update((m.id, m) for m in rows.scalars())
        return found

    def _pending_of(self, ids: Sequence[uuid.UUID | None]) -> dict[uuid.UUID | None, list[PendingAction]]:
        """The still pending actions of these messages, in ``seq`` order, by message id."""
        wanted = [i for i in dict.fromkeys(ids) if i is not None]
        found: dict[uuid.UUID | None, list[PendingAction]] = defaultdict(list)
        for start in range(0, len(wanted), IN_CHUNK):
            rows = self.session.execute(
                select(PendingAction)
                .where(PendingAction.message_id.in_(wanted[start : start + IN_CHUNK]), PendingAction.state == "pending")
                .order_by(PendingAction.seq)
            ).scalars()
            for row in rows:
                found[row.message_id].append(row)
        return found

    def _flags(self, pairs: Sequence[tuple[PendingAction, Outcome]]) -> None:
        messages = self._messages([action.message_id for action, _ in pairs])
        deltas = pending_flag_deltas(self.session, [i for i in messages if i])  # this group is no longer pending
        now = now_ms()
        for action, outcome in pairs:
            message = messages.get(action.message_id)
            if message is None:
                continue
            message.last_error = None if outcome.ok else outcome.error
            if outcome.flags is None:  # the message is gone from the server: the next sync removes it
                self.needs_sync = True
                continue
            flags = list(outcome.flags[0])
            for add, remove in deltas.get(message.id, []):
                flags = apply_flag_delta(flags, add, remove)
            was_read = message.is_read
            for column, value in flag_columns(flags).items():
                setattr(message, column, value)
            if outcome.flags[1] is not None and message.uid == action.uid:
                message.modseq = outcome.flags[1]
            message.updated_at = now
            self.counts[message.folder_id][1] += int(was_read) - int(message.is_read)

    @staticmethod
    def _tell_later(later: Sequence[PendingAction], folder_id: uuid.UUID | None, uidvalidity: int, uid: int) -> None:
        """The next actions made while the message was shown in ``folder_id`` learn its UID there (up to and
        including the next move/expunge, after which it is elsewhere again)."""
        for other in later:
            if other.uid is None and other.folder_id == folder_id:
                other.uidvalidity, other.uid = uidvalidity, uid
            if other.kind in REMOVING_KINDS:
                return

    def _removal(
        self, action: PendingAction, outcome: Outcome, message: EmailMessage | None, later: Sequence[PendingAction]
    ) -> None:
        """Where the message is after a move/expunge: its row, and the UID its next pending actions act on."""
        final = not any(other.kind in REMOVING_KINDS for other in later)
        if message is not None:
            message.last_error = None if outcome.ok else outcome.error
        if action.kind == "expunge":
            if not outcome.ok:  # the row is gone, the message is not: have the next sync look for it
                self._rescan(action.folder_id)
            return
        if outcome.ok and outcome.moved_to is not None:
            uidvalidity, uid = outcome.moved_to
            self._tell_later(later, action.target_folder_id, uidvalidity, uid)
            if message is not None and final and message.folder_id == action.target_folder_id:
                message.uidvalidity, message.uid = uidvalidity, uid
            return
        if not outcome.ok and action.uid is not None and action.uidvalidity is not None:
            self._tell_later(later, action.folder_id, action.uidvalidity, action.uid)  # it is still there
        self.needs_sync = True
        if message is None or not final:
            return
        source = self.session.get(EmailFolder, action.folder_id) if action.folder_id else None
        if not outcome.ok and source is not None and action.uid is not None:
            self._shift(message, source.id)
            message.uidvalidity, message.uid = action.uidvalidity, action.uid
        else:  # moved without a new UID, or failed and its place is unknown: the next sync shows it
            if not outcome.ok:
                self._rescan(action.folder_id)
            self._shift(message, None)
            self.session.flush()
            self.session.execute(delete(EmailMessage).where(EmailMessage.id == message.id))
            self.destroyed.append(message.id)

    def _rescan(self, folder_id: uuid.UUID | None) -> None:
        """Make the next sync compare the folder's whole UID list with the server's (the stored UIDNEXT is what lets
        it look only above it): a message whose row was dropped here, but that the server still has below that
        UIDNEXT, comes back."""
        if folder_id is not None:
            self.session.execute(update(EmailFolder).where(EmailFolder.id == folder_id).values(uidnext=None))

    def _shift(self, message: EmailMessage, folder_id: uuid.UUID | None) -> None:
        """Move the row's counts from its folder to ``folder_id`` (``None``: out of every folder)."""
        unread = int(not message.is_read)
        self.counts[message.folder_id][0] -= 1
        self.counts[message.folder_id][1] -= unread
        if folder_id is not None:
            self.counts[folder_id][0] += 1
            self.counts[folder_id][1] += unread
            message.folder_id = folder_id

    def _revert_rename(self, action: PendingAction) -> None:
        details = action.details or {}
        old, new, delimiter = str(details["from"]), str(details["to"]), details.get("delimiter")
        rows = self.session.execute(select(EmailFolder).where(EmailFolder.account_id == action.account_id)).scalars()
        for folder in rows:
            if folder.name == new or (delimiter and folder.name.startswith(f"{new}{delimiter}")):
                folder.name = old + folder.name[len(new) :]

    def _log_changes(self, group: Sequence[PendingAction]) -> None:
        """Log the group's messages still stored as updated (new UID, flags, ``pendingChanges``, ``lastError``),
        those dropped here as destroyed, and the folders whose counts or names moved (services.changes)."""
        self.session.flush()
        tenant_id, account_id = group[0].tenant_id, group[0].account_id
        wanted = [a.message_id for a in group if a.message_id is not None]
        folders = [f for f, (total, unread) in self.counts.items() if total or unread]
        folders += [a.folder_id for a in group if a.kind.startswith("folder_") and a.folder_id is not None]
        stored: list[uuid.UUID] = []
        for start in range(0, len(wanted), IN_CHUNK):
            chunk = wanted[start : start + IN_CHUNK]
            stored += self.session.execute(select(EmailMessage.id).where(EmailMessage.id.in_(chunk))).scalars()
        live = list(self.session.execute(select(EmailFolder.id).where(EmailFolder.id.in_(folders))).scalars())
        for kind, updated, destroyed in (("message", stored, self.destroyed), ("folder", live, [])):
            record_changes(
                self.session,
                tenant_id=tenant_id,
                account_id=account_id,
                kind=kind,
                updated=updated,
                destroyed=destroyed,
            )
        self.destroyed = []

    def _write_counts(self) -> None:
        self.session.flush()
        apply_folder_counts(self.session, self.counts)
        self.counts.clear()
