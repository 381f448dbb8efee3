"""Write-back of ``append`` actions (issue 9): a draft, a new version of a draft, or a Sent copy put on the server.

An ``append`` action (recorded by :mod:`email_service.services.drafts` and :mod:`email_service.sync.send`) names
the mailbox (``mailbox``), the local row (``message_id``), the raw bytes (``details["sha256"]`` in the tenant's blob
store), the flags (``details["flags"]``: ``\\Draft`` for a draft, ``\\Seen`` for a Sent copy) and the RFC
Message-ID.  ``uid``/``uidvalidity``, when set, are the draft's previous server copy, replaced by this one.

On the server (:func:`apply_append`):

1. ``APPEND <mailbox> (<flags>) {raw}`` (RFC 3501 section 6.3.11).  The new UID comes from the APPENDUID response
   code (RFC 4315 section 3); without UIDPLUS from ``UID SEARCH HEADER Message-ID <id>`` in the mailbox (the highest
   UID carrying it, other than the copy being replaced).
2. The previous copy, if any: ``UID STORE +FLAGS (\\Deleted)`` and ``UID EXPUNGE`` of that UID only (RFC 4315
   section 2.1).  Without UIDPLUS the old copy is only marked ``\\Deleted`` (a bare EXPUNGE would remove every
   other ``\\Deleted`` message of the mailbox); the next expunge by any client removes it.

In the database (:func:`record_append`): the row takes the new ``(uidvalidity, uid)``; the message's next pending
actions made before the server copy existed (a later edit, flags, the expunge after a send) learn that UID, up to
and including the next action that replaces or removes it; the draft's ``draft_changed_at`` is cleared when it
still holds the value this version was built from.

A run that dies after the APPEND and before recording it APPENDs again on its next run: the mailbox may then hold
one extra copy (APPEND has no idempotency key); the sync shows it, and the user can delete it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from email_service.errors import NotFound
from email_service.models import REMOVING_KINDS, EmailMessage, PendingAction
from email_service.protocols.imap import ImapSession
from email_service.sync.syncback_apply import Outcome

#: Reads raw bytes from the tenant's blob store by sha256 (raises :class:`NotFound` when they are gone).
ReadRaw = Callable[[str], bytes]


def apply_append(imap: ImapSession, action: PendingAction, read_raw: ReadRaw) -> Outcome:
    """APPEND the action's bytes, then remove the copy it replaces; see the module docstring.

    Returns the outcome with ``moved_to = (uidvalidity, uid)`` of the new copy (``None`` and ``unmapped`` when the
    server named no UID and the search found none).

    Raises:
        MailboxError: the server refused (turned into a failed outcome by the caller).
        ConnectionFailed / TemporaryFailure: transient; the action stays pending.
    """
    details = action.details or {}
    mailbox = str(action.mailbox)
    try:
        raw = read_raw(str(details["sha256"]))
    except NotFound:
        return Outcome(action.id, False, "The message's bytes are gone from the blob store", "BlobMissing")
    flags = [str(flag) for flag in details.get("flags", [])]
    appended = imap.append(mailbox, raw, flags)
    status = None
    if appended is None and details.get("messageId"):
        status = imap.select(mailbox, readonly=False)
        uids = [uid for uid in imap.uids_with_message_id(str(details["messageId"])) if uid != action.uid]
        appended = (status.uidvalidity, max(uids)) if uids else None
    if action.uid is not None:
        status = status or imap.select(mailbox, readonly=False)
        if action.uidvalidity is None or status.uidvalidity == action.uidvalidity:
            imap.store_flags([int(action.uid)], ["\\Deleted"])
            if imap.uidplus:
                imap.uid_expunge([int(action.uid)])
    return Outcome(action.id, True, moved_to=appended, unmapped=appended is None)


def _later_actions(session: Session, message_id: uuid.UUID, seq: int) -> list[PendingAction]:
    return list(
        session.execute(
            select(PendingAction)
            .where(PendingAction.message_id == message_id, PendingAction.state == "pending", PendingAction.seq > seq)
            .order_by(PendingAction.seq)
        ).scalars()
    )


def tell_later(later: Sequence[PendingAction], folder_id: uuid.UUID | None, uidvalidity: int, uid: int) -> None:
    """The next actions made in ``folder_id`` before the message's UID was known learn it, up to and including the
    next one that replaces (``append``) or removes (move, expunge) that copy."""
    for other in later:
        if other.uid is None and other.folder_id == folder_id:
            other.uidvalidity, other.uid = uidvalidity, uid
        if other.kind in REMOVING_KINDS or other.kind == "append":
            return


def record_append(session: Session, action: PendingAction, outcome: Outcome) -> bool:
    """Record one applied or failed ``append`` in ``session``.  Returns True when a sync should look again (the
    new copy's UID is unknown, or the APPEND failed)."""
    message = session.get(EmailMessage, action.message_id) if action.message_id else None
    if not outcome.ok or outcome.moved_to is None:
        if message is not None and not outcome.ok:
            message.last_error = outcome.error
        return True
    uidvalidity, uid = outcome.moved_to
    if action.message_id is not None:
        tell_later(_later_actions(session, action.message_id, action.seq), action.folder_id, uidvalidity, uid)
    if message is not None and message.folder_id == action.folder_id:
        message.uidvalidity, message.uid, message.last_error = uidvalidity, uid, None
        changed_at = (action.details or {}).get("changedAt")
        if changed_at is not None and message.draft_changed_at == changed_at:
            message.draft_changed_at = None
    return False
