"""Write-back, the IMAP side: one group of coalesced pending actions becomes one command per mailbox and change.

A *group* is a run of consecutive pending actions (in ``seq`` order) that share a kind, a mailbox and UIDVALIDITY,
and the same change (flags added/removed, or target mailbox): :func:`group_key`.  Its UIDs go out as one UID set:

* flags: ``UID STORE <set> (UNCHANGEDSINCE m) -FLAGS (...)`` and/or ``+FLAGS (...)`` (RFC 3501 6.4.6, RFC 7162
  3.1.3).  ``m`` is the newest MODSEQ the user had seen of these messages when making the change (or that this
  run's own STOREs produced): one value per command, so it catches a change made elsewhere above it, not one below
  it on another message of the set.  Messages the server reports MODIFIED were changed elsewhere since; they are
  stored again without the condition, because a pending local change wins over server changes it has not seen --
  the same rule as the sync's (:mod:`email_service.sync.pending`) -- and only ``+FLAGS``/``-FLAGS`` of the flags
  the user named are sent, so other flags set elsewhere stay.  The server's FETCH answers give the flags as they
  now are, and the rows take them.
* move (and delete to Trash): ``UID MOVE`` (RFC 6851) when offered, else ``UID COPY`` + ``UID STORE +FLAGS
  (\\Deleted)`` + ``UID EXPUNGE`` of exactly the copied UIDs (RFC 4315).  COPYUID maps each old UID to its new UID
  so the message keeps its id.
* expunge: ``UID STORE +FLAGS (\\Deleted)`` + ``UID EXPUNGE`` of exactly those UIDs.

Without UIDPLUS (RFC 4315) there is no UID EXPUNGE and no COPYUID.  Then: a MOVE still works, but the new UIDs are
unknown, so the local row is dropped once the move is applied and the next sync (queued at once) shows the message
in its new folder under a new id; a move without MOVE and an expunge are refused (``failed``, with the reason):
removing only the chosen messages would need a bare EXPUNGE, which also removes every other message marked
``\\Deleted`` in that mailbox.

Permanent refusals (NO: mailbox gone, message gone, UIDVALIDITY changed) become failed outcomes with the server's
words; transient ones (:class:`ConnectionFailed`, :class:`TemporaryFailure`) propagate to the job, which retries.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from email_service.models import PendingAction
from email_service.protocols.errors import MailboxError
from email_service.protocols.imap import ImapSession, MailboxStatus

NO_UIDPLUS = (
    "The server has no UIDPLUS (RFC 4315): removing only these messages would need a bare EXPUNGE, which would also "
    "remove every other message marked \\Deleted in {mailbox}"
)
GONE = "The message is no longer in {mailbox} on the server (expunged or moved by another client)"
UNKNOWN_PLACE = "The message's place on the server is unknown (an earlier change of it failed or gave no new UID)"


@dataclass(frozen=True)
class Outcome:
    """What happened to one action.

    ``flags`` is the message's ``(flags, modseq)`` on the server now (when the server told us); ``moved_to`` its
    ``(uidvalidity, uid)`` in the target mailbox after a move (or of the new copy after an ``append``);
    ``unmapped`` a move or append applied without a new UID.
    """

    action_id: uuid.UUID
    ok: bool
    error: str | None = None
    error_kind: str | None = None
    flags: tuple[tuple[str, ...], int | None] | None = None
    moved_to: tuple[int, int] | None = None
    unmapped: bool = False


def group_key(action: PendingAction) -> tuple[object, ...]:
    """Actions with equal keys, next to each other in ``seq`` order, go out as one command."""
    if action.kind in ("flags", "move", "expunge") and action.uid is not None:
        details = action.details or {}
        change = (tuple(details.get("add", ())), tuple(details.get("remove", ())), action.target_mailbox)
        return (action.kind, action.mailbox, action.uidvalidity, *change)
    return ("single", action.id)


def _failed(group: Sequence[PendingAction], error: str, kind: str = "MailboxError") -> list[Outcome]:
    return [Outcome(a.id, False, error=error, error_kind=kind) for a in group]


class ActionApplier:
    """Applies groups of actions over one :class:`ImapSession` (mailbox kept selected between groups)."""

    def __init__(self, imap: ImapSession, read_raw: Callable[[str], bytes] | None = None) -> None:
        self.imap = imap
        self.read_raw = read_raw
        self._selected: tuple[str, MailboxStatus] | None = None
        self._own_modseq: dict[str, int] = {}

    def apply(self, group: Sequence[PendingAction]) -> list[Outcome]:
        """Apply one group (see :func:`group_key`); one :class:`Outcome` per action, in order.

        Raises:
            ConnectionFailed / TemporaryFailure: transient; nothing is recorded, the group is tried again.
        """
        first = group[0]
        try:
            if first.kind in ("flags", "move", "expunge") and first.uid is None:
                return _failed(group, UNKNOWN_PLACE, "UnknownLocation")
            if first.kind == "flags":
                return self._flags(group)
            if first.kind == "move":
                return self._move(group)
            if first.kind == "expunge":
                return self._expunge(group)
            if first.kind == "append":
                return [self._append(first)]
            return [self._folder(first)]
        except MailboxError as exc:  # a NO: the server will not do it (mailbox gone, refused)
            self._selected = None
            return _failed(group, exc.message)

    def _select(self, mailbox: str, uidvalidity: int | None) -> MailboxStatus:
        if self._selected is None or self._selected[0] != mailbox:
            self._selected = None
            self._selected = (mailbox, self.imap.select(mailbox, readonly=False))
        status = self._selected[1]
        if uidvalidity is not None and status.uidvalidity != uidvalidity:
            raise MailboxError(
                f"The UIDVALIDITY of {mailbox} changed ({uidvalidity} -> {status.uidvalidity}): its UIDs no longer "
                "name the same messages; the next sync refetches the folder"
            )
        return status

    def _flags(self, group: Sequence[PendingAction]) -> list[Outcome]:
        first = group[0]
        mailbox = str(first.mailbox)
        self._select(mailbox, first.uidvalidity)
        add, remove = list(first.details.get("add", [])), list(first.details.get("remove", []))
        uids = sorted({int(a.uid) for a in group if a.uid is not None})
        seen = [a.base_modseq for a in group if a.base_modseq]
        since = max(*seen, self._own_modseq.get(mailbox, 0)) if seen else None
        now: dict[int, tuple[tuple[str, ...], int | None]] = {}
        for flags, is_remove in ((remove, True), (add, False)):  # clear first, as the local change did
            if flags:
                now.update(self._store(mailbox, uids, flags, remove=is_remove, unchangedsince=since))
        keywords = [flag for flag in add if not flag.startswith("\\")]
        outcomes = []
        for action in group:
            state = now.get(int(action.uid or 0))
            if state is None:
                outcomes.append(Outcome(action.id, False, GONE.format(mailbox=mailbox), "MessageGone"))
                continue
            lost = [k for k in keywords if k.lower() not in {f.lower() for f in state[0]}]
            if lost:
                error = f"The server did not keep the keyword(s) {', '.join(lost)} (its PERMANENTFLAGS lack \\*)"
                outcomes.append(Outcome(action.id, False, error, "KeywordRefused", flags=state))
            else:
                outcomes.append(Outcome(action.id, True, flags=state))
        return outcomes

    def _store(
        self, mailbox: str, uids: list[int], flags: list[str], *, remove: bool, unchangedsince: int | None
    ) -> dict[int, tuple[tuple[str, ...], int | None]]:
        result = self.imap.store_flags(uids, flags, remove=remove, unchangedsince=unchangedsince)
        now = dict(result.flags)
        if result.modified:  # changed elsewhere since the user's view: the user's explicit change still wins
            now.update(self.imap.store_flags(sorted(result.modified), flags, remove=remove).flags)
        newest = max((modseq for _flags, modseq in now.values() if modseq), default=0)
        self._own_modseq[mailbox] = max(self._own_modseq.get(mailbox, 0), newest)
        return now

    def _move(self, group: Sequence[PendingAction]) -> list[Outcome]:
        first = group[0]
        mailbox, target = str(first.mailbox), str(first.target_mailbox)
        self._select(mailbox, first.uidvalidity)
        uids = sorted({int(a.uid) for a in group if a.uid is not None})
        if not self.imap.uidplus:
            return self._move_unmapped(group, uids, target)
        if self.imap.can_move:
            result = self.imap.move(uids, target)
        else:  # only the UIDs COPYUID names were copied: exactly those are marked and expunged
            result = self.imap.copy(uids, target)
            if result.uids:
                self.imap.store_flags(sorted(result.uids), ["\\Deleted"])
                self.imap.uid_expunge(sorted(result.uids))
        # With UIDPLUS every moved UID is in COPYUID (RFC 4315 section 3); one not named was not in the mailbox.
        return [
            Outcome(a.id, True, moved_to=(int(result.uidvalidity or 0), result.uids[int(a.uid or 0)]))
            if int(a.uid or 0) in result.uids
            else Outcome(a.id, False, GONE.format(mailbox=mailbox), "MessageGone")
            for a in group
        ]

    def _move_unmapped(self, group: Sequence[PendingAction], uids: list[int], target: str) -> list[Outcome]:
        """MOVE without UIDPLUS: no new UIDs; which messages existed and which left is read before and after."""
        mailbox = str(group[0].mailbox)
        if not self.imap.can_move:
            return _failed(group, NO_UIDPLUS.format(mailbox=mailbox), "UnsafeExpunge")
        existed = set(self.imap.fetch_flags(uids))
        if existed:
            self.imap.move(sorted(existed), target)
        still_there = set(self.imap.fetch_flags(sorted(existed))) if existed else set()
        outcomes = []
        for action in group:
            uid = int(action.uid or 0)
            if uid not in existed:
                outcomes.append(Outcome(action.id, False, GONE.format(mailbox=mailbox), "MessageGone"))
            elif uid in still_there:
                outcomes.append(Outcome(action.id, False, f"The server did not move it out of {mailbox}", "NotMoved"))
            else:
                outcomes.append(Outcome(action.id, True, unmapped=True))
        return outcomes

    def _expunge(self, group: Sequence[PendingAction]) -> list[Outcome]:
        first = group[0]
        mailbox = str(first.mailbox)
        self._select(mailbox, first.uidvalidity)
        if not self.imap.uidplus:
            return _failed(group, NO_UIDPLUS.format(mailbox=mailbox), "UnsafeExpunge")
        uids = sorted({int(a.uid) for a in group if a.uid is not None})
        self.imap.store_flags(uids, ["\\Deleted"])
        self.imap.uid_expunge(uids)
        return [Outcome(a.id, True) for a in group]  # gone either way: expunged now, or before by someone else

    def _append(self, action: PendingAction) -> Outcome:
        from email_service.sync.syncback_append import apply_append  # here: that module imports Outcome from this one

        self._selected = None  # the APPEND may select the mailbox itself
        if self.read_raw is None:
            return Outcome(action.id, False, "No blob store to read the message from", "InternalError")
        return apply_append(self.imap, action, self.read_raw)

    def _folder(self, action: PendingAction) -> Outcome:
        details = action.details or {}
        self._selected = None  # a renamed or deleted mailbox may be the selected one
        if action.kind == "folder_create":
            self.imap.create_mailbox(str(details["name"]), details.get("specialUse"))
        elif action.kind == "folder_rename":
            try:
                self.imap.rename_mailbox(str(details["from"]), str(details["to"]))
            except MailboxError:
                names = {m.name for m in self.imap.list_mailboxes()}
                if details["from"] in names or details["to"] not in names:
                    raise
                # already renamed (a run that died after RENAME and before recording it)
        elif action.kind == "folder_delete":
            self.imap.delete_mailbox(str(details["name"]))
        else:
            return Outcome(action.id, False, f"Unknown action kind {action.kind!r}", "InternalError")
        return Outcome(action.id, True)
