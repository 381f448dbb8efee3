"""What a sync must not undo: local changes still waiting to be written back (DESIGN.md section 7, issue 8).

The server is the source of truth, but a change the user made is not on the server until the write-back job has
applied it; a sync that runs in between must not put the stale server value back.  The mirror
(:class:`email_service.sync.imap.ImapMirror`) calls:

* :func:`folder_guard` in its folder-list step: a folder created or renamed locally is kept although the server does
  not list it yet, and the server's names a pending rename or delete will remove are not mirrored;
* :func:`pending_count_offsets` with the folder list: how many messages pending moves and expunges take out of
  (or bring into) each folder locally before the server sees it, so that a folder with such changes still counts as
  unchanged when the server's EXISTS is what it was, and the expunge check compares like with like;
* :func:`with_pending_flags` in its flag merge: the server's flags with every still-pending local flag change of
  that message applied on top (pending local changes win until applied; once applied, the server's flags are
  the truth again);
* :func:`uids_leaving` in its new-UID step: a UID with a pending move or expunge out of that mailbox is not added
  back to it.

The expunge step needs no guard: while a move is pending the message's row has no UID, and an expunged message has
no row, so no folder's stored UIDs include either.

Sync and write-back of one account never run at the same time (both take the account's sync lock).  The API
changes rows at any moment, always under the account row's lock (:func:`email_service.services.actions.lock_account`);
the flag merge takes that lock too before it reads the rows and the pending changes, so on PostgreSQL a change being
committed is either merged or made after the merge, on top of it.  (SQLite serialises writers but not a read
followed by a write: there a change committed in between may be overwritten until its write-back sets the row from
the server.)
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from email_service.models import REMOVING_KINDS, PendingAction
from email_service.services.actions import pending_flag_deltas
from email_service.services.context import ServiceContext
from email_service.services.flags import apply_flag_delta

FlagChanges = Mapping[int, tuple[tuple[str, ...], int | None]]


def with_pending_flags(
    session: Session, account_id: uuid.UUID, stored: Mapping[int, uuid.UUID], changes: FlagChanges
) -> dict[int, tuple[tuple[str, ...], int | None]]:
    """``changes`` (``{uid: (server flags, modseq)}``) with the pending flag changes of the stored messages
    ``stored`` (``{uid: message id}``) applied on top of the server's flags, in ``seq`` order.

    Call it in the merge's transaction, after :func:`~email_service.services.actions.lock_account`.  One query
    when the account has no pending flag change (the usual case).
    """
    merged = dict(changes)
    any_pending = session.execute(
        select(PendingAction.id)
        .where(PendingAction.account_id == account_id, PendingAction.state == "pending", PendingAction.kind == "flags")
        .limit(1)
    ).first()
    if any_pending is None:
        return merged
    deltas = pending_flag_deltas(session, stored.values())
    for uid, message_id in stored.items():
        if uid not in merged or message_id not in deltas:
            continue
        flags, modseq = merged[uid]
        for add, remove in deltas[message_id]:
            flags = tuple(apply_flag_delta(flags, add, remove))
        merged[uid] = (flags, modseq)
    return merged


def pending_count_offsets(session: Session, account_id: uuid.UUID) -> dict[uuid.UUID, int]:
    """``{folder id: local count minus server count}`` that the account's pending moves and expunges explain.

    A pending move shows its message in the target folder and no longer in the source (locally only); a pending
    expunge has removed its row.  So a folder holds ``moves in - moves out - expunges`` messages more locally than
    on the server until those actions are applied (a chain of moves nets out: A->B then B->C is -1 for A, +1 for C).
    """
    offsets: dict[uuid.UUID, int] = {}
    rows = session.execute(
        select(PendingAction.kind, PendingAction.folder_id, PendingAction.target_folder_id).where(
            PendingAction.account_id == account_id,
            PendingAction.state == "pending",
            PendingAction.kind.in_(REMOVING_KINDS),
        )
    ).all()
    for kind, folder_id, target_folder_id in rows:
        if folder_id is not None:
            offsets[folder_id] = offsets.get(folder_id, 0) - 1
        if kind == "move" and target_folder_id is not None:
            offsets[target_folder_id] = offsets.get(target_folder_id, 0) + 1
    return offsets


def uids_leaving(ctx: ServiceContext, tenant_id: uuid.UUID, folder_id: uuid.UUID, uidvalidity: int) -> set[int]:
    """UIDs of this mailbox (``folder_id`` at ``uidvalidity``) with a pending move or expunge: not to be re-added."""
    with ctx.db.tenant_session(tenant_id) as session:
        rows = session.execute(
            select(PendingAction.uid).where(
                PendingAction.folder_id == folder_id,
                PendingAction.state == "pending",
                PendingAction.kind.in_(REMOVING_KINDS),
                PendingAction.uidvalidity == uidvalidity,
                PendingAction.uid.is_not(None),
            )
        ).scalars()
        return {int(uid) for uid in rows if uid is not None}


@dataclass(frozen=True)
class FolderGuard:
    """Folder names the folder-list step must leave alone while folder actions are pending.

    ``keep`` are local names the server does not list yet (created or renamed locally); ``skip`` are server names
    about to go (renamed away or deleted).  A name in ``keep_trees``/``skip_trees`` covers its subfolders too.
    """

    keep: frozenset[str] = frozenset()
    skip: frozenset[str] = frozenset()
    keep_trees: tuple[tuple[str, str], ...] = ()
    skip_trees: tuple[tuple[str, str], ...] = ()

    def keeps(self, local_name: str) -> bool:
        """True when the local folder ``local_name`` must not be deleted although the server does not list it."""
        return local_name in self.keep or _in_trees(local_name, self.keep_trees)

    def skips(self, server_name: str) -> bool:
        """True when the server's mailbox ``server_name`` must not be mirrored (a pending action removes it)."""
        return server_name in self.skip or _in_trees(server_name, self.skip_trees)


def _in_trees(name: str, trees: Iterable[tuple[str, str]]) -> bool:
    return any(name == root or name.startswith(root + delimiter) for root, delimiter in trees)


def folder_guard(session: Session, account_id: uuid.UUID) -> FolderGuard:
    """The :class:`FolderGuard` of the account's pending folder actions."""
    rows = session.execute(
        select(PendingAction.kind, PendingAction.details).where(
            PendingAction.account_id == account_id,
            PendingAction.state == "pending",
            PendingAction.kind.in_(("folder_create", "folder_rename", "folder_delete")),
        )
    ).all()
    keep, skip = set(), set()
    keep_trees, skip_trees = [], []
    for kind, details in rows:
        if kind == "folder_create":
            keep.add(str(details["name"]))
        elif kind == "folder_delete":
            skip.add(str(details["name"]))
        elif details.get("delimiter"):
            keep_trees.append((str(details["to"]), str(details["delimiter"])))
            skip_trees.append((str(details["from"]), str(details["delimiter"])))
        else:
            keep.add(str(details["to"]))
            skip.add(str(details["from"]))
    return FolderGuard(frozenset(keep), frozenset(skip), tuple(keep_trees), tuple(skip_trees))
