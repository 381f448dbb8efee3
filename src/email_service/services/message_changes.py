"""Acting on mail: flags and keywords, move, delete to Trash or expunge -- one message or a batch (issue 8).

Each accepted change updates the message rows at once (the API answers with them), adjusts the folder counts by
deltas in the same statement batch (never a recount), and records pending actions in the SAME transaction
(:mod:`email_service.services.actions`); after the commit the account's write-back job is queued.  The server stays
the source of truth (DESIGN.md section 7): the write-back replaces the local values by what the server reports.

How a pending move looks locally: the row shows its new ``folder_id`` at once, and its ``uid``/``uidvalidity`` are
cleared until the server has answered with the new UID (COPYUID, RFC 4315); the action keeps where the message is
on the server.  So neither the target's new-UID step nor any folder's expunge diff can mistake the row for a
server message, and the unique ``(folder, uidvalidity, uid)`` index never sees two rows claim one UID.
An expunge removes the row at once (the action keeps the server location).  The same transaction logs the changed
messages (a move is an update of ``folderId``), the expunged ones and the folders whose counts moved.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, load_only

from email_service.errors import Conflict, InvalidInput, NotFound
from email_service.models import EmailAccount, EmailFolder, EmailMessage, apply_folder_counts, now_ms
from email_service.security.tokens import Principal
from email_service.services.accounts import load_account
from email_service.services.actions import IN_CHUNK, NewAction, lock_account, record_actions, request_syncback
from email_service.services.changes import record_changes
from email_service.services.context import ServiceContext
from email_service.services.flags import apply_flag_delta, flag_columns, same_flags
from email_service.services.mailbox import load_message

#: Most messages one batch request may name.
MAX_BATCH = 1000
_SYSTEM_FLAGS = (("is_read", "\\Seen"), ("is_flagged", "\\Flagged"), ("is_answered", "\\Answered"))
#: The columns changes of messages read and write: batches load only these (no bodies).
CHANGED_COLUMNS = (
    EmailMessage.id,
    EmailMessage.account_id,
    EmailMessage.folder_id,
    EmailMessage.uid,
    EmailMessage.uidvalidity,
    EmailMessage.modseq,
    EmailMessage.flags,
    EmailMessage.is_read,
    EmailMessage.is_flagged,
    EmailMessage.is_answered,
    EmailMessage.is_draft,
    EmailMessage.last_error,
    EmailMessage.updated_at,
)


@dataclass(frozen=True)
class MessageChange:
    """What ``PATCH /messages/{id}`` (or a batch) asks for; ``None`` / empty means "leave as it is".

    ``add_keywords`` / ``remove_keywords`` are IMAP keywords (atoms, RFC 3501 section 9), validated by the API.
    ``folder_id`` moves the message to that folder of the same account.
    """

    is_read: bool | None = None
    is_flagged: bool | None = None
    is_answered: bool | None = None
    add_keywords: tuple[str, ...] = ()
    remove_keywords: tuple[str, ...] = ()
    folder_id: uuid.UUID | None = None

    def flag_delta(self) -> tuple[list[str], list[str]]:
        """``(add, remove)``: the IMAP flags to set and to clear.  Clearing comes first (locally, as on the server,
        see :func:`~email_service.services.flags.apply_flag_delta`), so a keyword in both lists ends up set."""
        add, remove = list(dict.fromkeys(self.add_keywords)), list(dict.fromkeys(self.remove_keywords))
        for name, flag in _SYSTEM_FLAGS:
            value = getattr(self, name)
            if value is True:
                add.append(flag)
            elif value is False:
                remove.append(flag)
        return add, remove


@dataclass(frozen=True)
class BatchFailure:
    """One message of a batch that was not changed: its id, the error kind and a sentence."""

    id: uuid.UUID
    error: str
    message: str


@dataclass(frozen=True)
class BatchResult:
    """``{updatedCount, failedCount, failed}`` of a batch request."""

    updated_count: int
    failed: list[BatchFailure] = field(default_factory=list)


@dataclass(frozen=True)
class DeleteResult:
    """Outcome of ``DELETE /messages/{id}``: moved to Trash (``folder_id`` is the Trash) or expunged (``None``)."""

    id: uuid.UUID
    permanent: bool
    folder_id: uuid.UUID | None


class LocalChanges:
    """The local side of changes to messages of one account, within one transaction: row updates, folder count
    deltas and the pending actions.

    Actions are recorded flags first, then moves, then expunges (each in the order made): per message that is the
    order of its changes, and across the messages of a batch it puts equal changes next to each other, so that
    the write-back coalesces them into one command per folder.
    """

    def __init__(self, session: Session, account: EmailAccount) -> None:
        if account.protocol != "imap":
            raise Conflict("Only IMAP accounts can change mail on the server (POP3 has no flags or folders)")
        self.session = session
        self.account = account
        self.folders = {
            f.id: f for f in session.execute(select(EmailFolder).where(EmailFolder.account_id == account.id)).scalars()
        }
        self._actions: dict[str, list[NewAction]] = {"flags": [], "move": [], "expunge": []}
        self.counts: dict[uuid.UUID, list[int]] = defaultdict(lambda: [0, 0])
        self.expunged: list[uuid.UUID] = []

    @property
    def actions(self) -> list[NewAction]:
        """The actions to record, in write-back order."""
        return [*self._actions["flags"], *self._actions["move"], *self._actions["expunge"]]

    def target_folder(self, folder_id: uuid.UUID) -> EmailFolder:
        """A folder of this account that can hold messages.

        Raises:
            NotFound: no such folder in this account (also another account's or tenant's: the same answer,
                revealing nothing).
            InvalidInput: the folder cannot hold messages (``\\Noselect``).
        """
        folder = self.folders.get(folder_id)
        if folder is None:
            raise NotFound("Folder not found: folderId names no folder of this account")
        if not folder.is_selectable:
            raise InvalidInput("folderId: this folder cannot hold messages", details={"folderId": ["not selectable"]})
        return folder

    def trash(self) -> EmailFolder:
        """The account's Trash.  Raises :class:`Conflict` when it has none (delete permanently instead)."""
        found = sorted((f for f in self.folders.values() if f.type == "trash"), key=lambda f: f.name)
        if not found:
            raise Conflict("The account has no Trash folder; delete with permanent=true")
        return found[0]

    def apply(self, message: EmailMessage, change: MessageChange) -> None:
        """Flags first (where the message is now), then the move."""
        add, remove = change.flag_delta()
        if add or remove:
            self.set_flags(message, add, remove)
        if change.folder_id is not None and change.folder_id != message.folder_id:
            self.move(message, self.target_folder(change.folder_id), reason="move")

    def set_flags(self, message: EmailMessage, add: list[str], remove: list[str]) -> None:
        """Change the row's flags; record the requested ``+FLAGS``/``-FLAGS`` unless nothing changes."""
        flags = apply_flag_delta(message.flags or [], add, remove)
        if same_flags(flags, message.flags or []):
            return
        folder = self.folders[message.folder_id]
        details = {"add": add, "remove": remove}
        seen = max(folder.highestmodseq or 0, message.modseq or 0) or None  # the newest state the user has seen
        self._actions["flags"].append(self._action("flags", message, details, base_modseq=seen))
        was_read = message.is_read
        for column, value in flag_columns(flags).items():
            setattr(message, column, value)
        message.updated_at = now_ms()
        self.counts[folder.id][1] += int(was_read) - int(message.is_read)

    def move(self, message: EmailMessage, target: EmailFolder, *, reason: str) -> None:
        """Show the message in ``target`` now; its server UID is unknown until the move is applied."""
        self._actions["move"].append(self._action("move", message, {"reason": reason}, target=target))
        self._count(message.folder_id, message, -1)
        self._count(target.id, message, +1)
        message.folder_id, message.uid, message.uidvalidity = target.id, None, None
        message.updated_at = now_ms()

    def delete(self, message: EmailMessage, *, permanent: bool) -> uuid.UUID | None:
        """Move to Trash, or expunge when ``permanent`` or already in Trash.  Returns the Trash id, or ``None``."""
        folder = self.folders[message.folder_id]
        if not permanent and folder.type != "trash":
            trash = self.trash()
            self.move(message, trash, reason="trash")
            return trash.id
        self._actions["expunge"].append(self._action("expunge", message, {}))
        self._count(message.folder_id, message, -1)
        self.expunged.append(message.id)
        return None

    def _action(
        self,
        kind: str,
        message: EmailMessage,
        details: dict[str, Any],
        *,
        target: EmailFolder | None = None,
        base_modseq: int | None = None,
    ) -> NewAction:
        """An action on ``message`` where it is now (its server UID is ``None`` while an earlier move is pending)."""
        folder = self.folders[message.folder_id]
        return NewAction(
            kind,
            message_id=message.id,
            folder_id=folder.id,
            mailbox=folder.name,
            uidvalidity=message.uidvalidity,
            uid=message.uid,
            target_folder_id=target.id if target else None,
            target_mailbox=target.name if target else None,
            details=details,
            base_modseq=base_modseq,
        )

    def _count(self, folder_id: uuid.UUID, message: EmailMessage, sign: int) -> None:
        self.counts[folder_id][0] += sign
        self.counts[folder_id][1] += sign * int(not message.is_read)

    def flush(self, tenant_id: uuid.UUID) -> None:
        """Write the count deltas, remove expunged rows and record the actions (still in the transaction)."""
        self.session.flush()
        apply_folder_counts(self.session, self.counts)
        for start in range(0, len(self.expunged), IN_CHUNK):
            chunk = self.expunged[start : start + IN_CHUNK]
            self.session.execute(delete(EmailMessage).where(EmailMessage.id.in_(chunk)))
        actions = self.actions
        record_actions(self.session, tenant_id=tenant_id, account_id=self.account.id, actions=actions)
        gone = set(self.expunged)
        changed = [a.message_id for a in actions if a.message_id is not None and a.message_id not in gone]
        folders = [folder_id for folder_id, (total, unread) in self.counts.items() if total or unread]
        for kind, updated, destroyed in (("message", changed, self.expunged), ("folder", folders, [])):
            record_changes(
                self.session,
                tenant_id=tenant_id,
                account_id=self.account.id,
                kind=kind,
                updated=updated,
                destroyed=destroyed,
            )


def _locked_message(session: Session, principal: Principal, message_id: uuid.UUID) -> tuple[EmailMessage, EmailAccount]:
    message = load_message(session, principal, message_id)
    lock_account(session, message.account_id)
    session.refresh(message)  # re-read under the account lock: another change may have committed meanwhile
    account = session.get(EmailAccount, message.account_id)
    assert account is not None
    return message, account


def update_message(ctx: ServiceContext, *, principal: Principal, message_id: uuid.UUID, change: MessageChange) -> None:
    """Apply ``change`` to one message locally and record it for write-back (read it back with
    :func:`email_service.services.mailbox.get_message`).

    Raises:
        NotFound / Forbidden: the message (or its account) is not visible; ``folderId`` is not a folder of its
            account.
        InvalidInput: the ``folderId`` folder cannot hold messages.
        Conflict: a POP3 account.
    """
    with ctx.db.tenant_session(principal.tenant_id) as session:
        message, account = _locked_message(session, principal, message_id)
        changes = LocalChanges(session, account)
        changes.apply(message, change)
        changes.flush(principal.tenant_id)
    if changes.actions:
        request_syncback(ctx, principal.tenant_id, account.id)


def delete_message(
    ctx: ServiceContext, *, principal: Principal, message_id: uuid.UUID, permanent: bool
) -> DeleteResult:
    """Move one message to the account's Trash, or expunge it (``permanent``, or already in Trash).

    Raises:
        NotFound / Forbidden: the message is not visible.
        Conflict: no Trash folder (and not ``permanent``); a POP3 account.
    """
    with ctx.db.tenant_session(principal.tenant_id) as session:
        message, account = _locked_message(session, principal, message_id)
        changes = LocalChanges(session, account)
        trash_id = changes.delete(message, permanent=permanent)
        changes.flush(principal.tenant_id)
    request_syncback(ctx, principal.tenant_id, account.id)
    return DeleteResult(message_id, trash_id is None, trash_id)


def change_messages(
    ctx: ServiceContext,
    *,
    principal: Principal,
    account_id: uuid.UUID,
    message_ids: Sequence[uuid.UUID],
    change: MessageChange | None = None,
    delete: bool = False,
    permanent: bool = False,
) -> BatchResult:
    """Apply one ``change`` (or a delete) to up to :data:`MAX_BATCH` messages of one account.

    Ids that are not messages of this account are reported in ``failed`` (404 kind); the others are changed in
    one transaction, ordered by folder and UID so that the write-back sends one command per folder and change.

    Raises:
        NotFound / Forbidden: the account is not visible; ``folderId`` is not a folder of this account.
        InvalidInput: more than :data:`MAX_BATCH` ids; neither a change nor ``delete``.
        Conflict: delete without a Trash folder (and not ``permanent``); a POP3 account.
    """
    unique = list(dict.fromkeys(message_ids))
    if len(unique) > MAX_BATCH:
        raise InvalidInput(f"messageIds: at most {MAX_BATCH} messages per batch")
    if (change is None) == (not delete):
        raise InvalidInput("Give either changes or delete: true")
    with ctx.db.tenant_session(principal.tenant_id) as session:
        account = load_account(session, principal, account_id)
        lock_account(session, account_id)
        changes = LocalChanges(session, account)
        if change is not None and change.folder_id is not None:
            changes.target_folder(change.folder_id)
        found: dict[uuid.UUID, EmailMessage] = {}
        for start in range(0, len(unique), IN_CHUNK):
            rows = session.execute(
                select(EmailMessage)
                .options(load_only(*CHANGED_COLUMNS))
                .where(
                    EmailMessage.tenant_id == principal.tenant_id,
                    EmailMessage.account_id == account_id,
                    EmailMessage.id.in_(unique[start : start + IN_CHUNK]),
                )
            ).scalars()
            found.update((row.id, row) for row in rows)
        ordered = sorted(found.values(), key=lambda m: (changes.folders[m.folder_id].name, m.uid or 0, str(m.id)))
        for message in ordered:
            if change is not None:
                changes.apply(message, change)
            else:
                changes.delete(message, permanent=permanent)
        changes.flush(principal.tenant_id)
    if changes.actions:
        request_syncback(ctx, principal.tenant_id, account_id)
    failed = [BatchFailure(i, "Not found", "Message not found in this account") for i in unique if i not in found]
    return BatchResult(len(found), failed)
