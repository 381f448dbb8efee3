"""The change log of an account: recording, state strings, ``/changes`` and pruning (issue 12; JMAP RFC 8620 5.2).

One log, at the mechanism (DESIGN.md section 5): the shared write paths call :func:`record_changes` in the SAME
transaction as the change itself -- the sync (:mod:`email_service.sync.store`, ``writer``, ``imap``, ``pop3``),
local changes (:mod:`~email_service.services.message_changes`, ``folders``, ``attachments``), write-back results
(:mod:`email_service.sync.syncback_record`) and sync runs -- so a change and its log entry commit together or not
at all.  ``/changes``, Server-Sent Events and webhooks all read this one log.

Modseq: ``email_accounts.change_seq`` is bumped with ``UPDATE ... RETURNING`` by the number of rows recorded, and
each row gets its own modseq (``first .. last``).  The UPDATE takes the account row's lock for the rest of the
transaction (PostgreSQL; SQLite serialises writers anyway), so an account's modseqs are given out in commit order:
a reader that has seen modseq ``n`` committed will never later see a row ``< n`` appear.  Writers that also touch
other rows take the account lock FIRST (:func:`email_service.services.actions.lock_account`), so the lock order is
always account, then folders/messages, and two writers never deadlock.  One modseq per row (not per transaction)
lets ``maxChanges`` cut the log anywhere.

State: the opaque string of the account's modseq (``"42"``).  A list answer reads the state BEFORE its rows, so the
state it shows is never newer than the rows: replaying ``/changes`` from it may repeat a change the list already
shows, which is harmless (a created or updated id is fetched again, a destroyed one dropped again).

What is logged (``kind`` / ``change`` / ``object_id``):

* ``message``: created (a sync stored it), updated (flags, keywords, a move -- JMAP: a change of ``mailboxIds`` is
  an update, so a move is an update of ``folderId``, never destroyed+created --, a write-back result such as the new
  UID or ``pendingChanges``/``lastError``, a draft's attachments), destroyed (expunged, deleted with its folder, a
  UIDVALIDITY change).
* ``folder``: created, updated (renamed, counts, role/attributes, sync error set or cleared), destroyed.  The
  folder's ``lastSyncedAt`` alone is sync bookkeeping and is not logged (it would make every poll of every folder a
  change); clients follow ``sync`` entries for it.
* ``sync``: a sync run created (queued), updated (started), updated again when it ends (succeeded or failed).
* ``outbox``: outbox status changes (issue 9 records them through :func:`record_changes`).

``/changes`` (JMAP 5.2): the entries after ``since`` in modseq order, at most ``maxChanges`` of them, folded per
id: created then destroyed in the window -> omitted; created then updated -> created; updated then destroyed ->
destroyed.  ``newState`` is the modseq of the last entry returned when ``hasMoreChanges``, else the current state.

Pruning (:func:`prune_change_log`, periodic): entries older than ``CHANGE_LOG_MAX_AGE_SECONDS`` and those beyond the
newest ``CHANGE_LOG_MAX_ENTRIES`` of an account are deleted and ``change_floor`` raised to the highest deleted
modseq; a state below the floor (or above the current one) answers 410 ``cannotCalculateChanges``.

Notification: :func:`record_changes` notes ``(tenant, user, account)`` in ``session.info``; after the COMMIT the
hook installed by :func:`install_commit_hook` hands them to the change bus (:mod:`email_service.services.change_bus`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import delete, event, func, insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from email_service.errors import CannotCalculateChanges, InvalidInput
from email_service.models import CHANGE_KINDS, ChangeEntry, EmailAccount, EmailMessage, Tenant, now_ms
from email_service.security.tokens import Principal
from email_service.services.accounts import load_account
from email_service.services.context import ServiceContext

#: ``session.info`` key of the accounts whose log grew in the open transaction: ``{(tenant, user, account)}``.
CHANGED_KEY = "email_service.changed_accounts"
#: ``maxChanges`` when the client gives none, and the most it may ask for.
DEFAULT_MAX_CHANGES = 500
MAX_MAX_CHANGES = 5000
#: Kinds ``/changes`` reports (the others go to SSE and webhooks only).
LISTED_KINDS = ("message", "folder")

Notify = Callable[[set[tuple[uuid.UUID, uuid.UUID, uuid.UUID]]], None]


def record_changes(
    session: Session,
    *,
    tenant_id: uuid.UUID,
    account_id: uuid.UUID,
    kind: str,
    created: Iterable[uuid.UUID] = (),
    updated: Iterable[uuid.UUID] = (),
    destroyed: Iterable[uuid.UUID] = (),
) -> int:
    """Append the changes of ``kind`` (message|folder|sync|outbox) objects to the account's log, in ``session``'s
    transaction (created, then updated, then destroyed; an id repeated within one list counts once).

    Returns the account's new modseq (its current one when nothing was given).  Takes the account row's lock.

    Raises:
        ValueError: an unknown ``kind``.
    """
    if kind not in CHANGE_KINDS:
        raise ValueError(f"unknown change kind {kind!r}")
    rows = [
        (change, object_id)
        for change, ids in (("created", created), ("updated", updated), ("destroyed", destroyed))
        for object_id in dict.fromkeys(ids)
    ]
    if not rows:
        return int(session.execute(select(EmailAccount.change_seq).where(EmailAccount.id == account_id)).scalar_one())
    last, user_id = session.execute(
        update(EmailAccount)
        .where(EmailAccount.id == account_id)
        .values(change_seq=EmailAccount.change_seq + len(rows), updated_at=EmailAccount.updated_at)  # not the account's
        .returning(EmailAccount.change_seq, EmailAccount.user_id)
    ).one()
    now = now_ms()
    first = int(last) - len(rows) + 1
    session.execute(
        insert(ChangeEntry),
        [
            {
                "id": uuid.uuid4(),
                "tenant_id": tenant_id,
                "account_id": account_id,
                "modseq": first + index,
                "kind": kind,
                "change": change,
                "object_id": object_id,
                "created_at": now,
                "updated_at": now,
            }
            for index, (change, object_id) in enumerate(rows)
        ],
    )
    session.info.setdefault(CHANGED_KEY, set()).add((tenant_id, user_id, account_id))
    return int(last)


def install_commit_hook(sessions: sessionmaker[Session], notify: Notify) -> None:
    """After each COMMIT of a session from ``sessions`` that recorded changes, call ``notify({(tenant, user,
    account)})`` (the change bus wakes the event streams and the webhook fan-out).  A rollback forgets them."""

    def _after_commit(session: Session) -> None:
        changed = session.info.pop(CHANGED_KEY, None)
        if changed:
            notify(changed)

    def _after_rollback(session: Session) -> None:
        session.info.pop(CHANGED_KEY, None)

    event.listen(sessions, "after_commit", _after_commit)
    event.listen(sessions, "after_soft_rollback", lambda session, _previous: _after_rollback(session))


def state_string(change_seq: int) -> str:
    """The state string of an account whose ``change_seq`` is ``change_seq`` (the opaque form of its modseq)."""
    return str(int(change_seq))


def current_state(session: Session, account_id: uuid.UUID) -> str:
    """The account's state string (:func:`state_string`), read in ``session``."""
    seq = session.execute(select(EmailAccount.change_seq).where(EmailAccount.id == account_id)).scalar_one()
    return state_string(seq)


def account_state(ctx: ServiceContext, *, principal: Principal, account_id: uuid.UUID) -> str:
    """The state of an account visible to ``principal`` (list answers read it before their rows).

    Raises :class:`NotFound` / :class:`Forbidden` like every account lookup.
    """
    with ctx.db.tenant_session(principal.tenant_id) as session:
        load_account(session, principal, account_id)
        return current_state(session, account_id)


def parse_state(state: str, field_name: str = "since") -> int:
    """The modseq of a state string.  Raises :class:`CannotCalculateChanges` for one this service never gave."""
    if not state.isascii() or not state.isdigit() or len(state) > 18:
        raise CannotCalculateChanges(f"{field_name}: not a state of this account; reload")
    return int(state)


@dataclass
class ChangeSet:
    """Created/updated/destroyed ids of one kind, folded by the rules of RFC 8620 section 5.2."""

    created: list[uuid.UUID] = field(default_factory=list)
    updated: list[uuid.UUID] = field(default_factory=list)
    destroyed: list[uuid.UUID] = field(default_factory=list)


def fold(entries: Iterable[tuple[str, uuid.UUID]]) -> ChangeSet:
    """Fold ``(change, id)`` entries (in modseq order) into one :class:`ChangeSet`: an id created and destroyed in
    the window is left out, created+updated is created, updated+destroyed is destroyed."""
    first: dict[uuid.UUID, str] = {}
    last: dict[uuid.UUID, str] = {}
    for change, object_id in entries:
        first.setdefault(object_id, change)
        last[object_id] = change
    result = ChangeSet()
    for object_id, began in first.items():
        ended = last[object_id]
        if began == "created":
            if ended != "destroyed":
                result.created.append(object_id)
        elif ended == "destroyed":
            result.destroyed.append(object_id)
        else:
            result.updated.append(object_id)
    return result


@dataclass(frozen=True)
class Changes:
    """Answer of ``/changes``: ``{oldState, newState, hasMoreChanges, messages, folders}``."""

    old_state: str
    new_state: str
    has_more_changes: bool
    sets: dict[str, ChangeSet]


def read_entries(
    session: Session, account_id: uuid.UUID, after: int, limit: int, kinds: Sequence[str] = CHANGE_KINDS
) -> list[ChangeEntry]:
    """Up to ``limit`` log entries of the account with modseq above ``after`` and a kind in ``kinds``, oldest
    first."""
    query = (
        select(ChangeEntry)
        .where(ChangeEntry.account_id == account_id, ChangeEntry.modseq > after)
        .order_by(ChangeEntry.modseq)
        .limit(limit)
    )
    if tuple(kinds) != CHANGE_KINDS:
        query = query.where(ChangeEntry.kind.in_(kinds))
    return list(session.execute(query).scalars())


def check_state(session: Session, account_id: uuid.UUID, since: int) -> int:
    """The account's current modseq, after checking that the log can answer from ``since``.

    Raises:
        CannotCalculateChanges: ``since`` is below the pruned log's floor or above the current modseq.
    """
    current, floor = session.execute(
        select(EmailAccount.change_seq, EmailAccount.change_floor).where(EmailAccount.id == account_id)
    ).one()
    if since < floor or since > current:
        raise CannotCalculateChanges("The state is too old (the change log was pruned) or unknown; reload the lists")
    return int(current)


def changes_since(
    ctx: ServiceContext,
    *,
    principal: Principal,
    account_id: uuid.UUID,
    since: str,
    max_changes: int | None = None,
) -> Changes:
    """``GET /accounts/{id}/changes``: message and folder ids changed since the state ``since`` (RFC 8620 5.2).

    Raises:
        NotFound / Forbidden: the account is not visible.
        InvalidInput: ``max_changes`` outside 1..:data:`MAX_MAX_CHANGES`.
        CannotCalculateChanges: ``since`` is older than the pruned log, or not a state of this account (410).
    """
    limit = DEFAULT_MAX_CHANGES if max_changes is None else max_changes
    if not 1 <= limit <= MAX_MAX_CHANGES:
        raise InvalidInput(f"maxChanges: between 1 and {MAX_MAX_CHANGES}", details={"maxChanges": ["out of range"]})
    after = parse_state(since)
    with ctx.db.tenant_session(principal.tenant_id, read_only=True) as session:
        load_account(session, principal, account_id)
        current = check_state(session, account_id, after)
        entries = read_entries(session, account_id, after, limit + 1, LISTED_KINDS)
    more = len(entries) > limit
    entries = entries[:limit]
    new_state = entries[-1].modseq if more else current
    sets = {kind: fold((e.change, e.object_id) for e in entries if e.kind == kind) for kind in LISTED_KINDS}
    return Changes(str(after), str(new_state), more, sets)


def _prune_tenant(session: Session, tenant_id: uuid.UUID, *, older_than: int, max_entries: int) -> int:
    """Prune one tenant's log in ``session``: two grouped reads find the accounts with anything to prune, then one
    DELETE and one floor UPDATE per such account (none for the others)."""
    aged = dict(
        session.execute(
            select(ChangeEntry.account_id, func.max(ChangeEntry.modseq))
            .where(ChangeEntry.tenant_id == tenant_id, ChangeEntry.created_at < older_than)
            .group_by(ChangeEntry.account_id)
        ).all()
    )
    accounts = session.execute(
        select(EmailAccount.id, EmailAccount.change_seq, EmailAccount.change_floor).where(
            EmailAccount.tenant_id == tenant_id,
            (EmailAccount.change_seq - max_entries > EmailAccount.change_floor) | EmailAccount.id.in_(list(aged)),
        )
    ).all()
    removed = 0
    for account_id, current, floor in accounts:
        new_floor = max(int(aged.get(account_id) or 0), int(current) - max_entries)
        if new_floor <= int(floor):
            continue
        result = session.execute(
            delete(ChangeEntry).where(ChangeEntry.account_id == account_id, ChangeEntry.modseq <= new_floor)
        )
        session.execute(
            update(EmailAccount)
            .where(EmailAccount.id == account_id, EmailAccount.change_floor < new_floor)
            .values(change_floor=new_floor, updated_at=EmailAccount.updated_at)
        )
        removed += int(result.rowcount or 0)  # type: ignore[attr-defined]
    return removed


def prune_change_log(ctx: ServiceContext) -> int:
    """Delete entries older than ``CHANGE_LOG_MAX_AGE_SECONDS`` and beyond the newest ``CHANGE_LOG_MAX_ENTRIES``
    of each account, one short transaction per tenant (RLS stays on), raising the accounts' ``change_floor``.
    Idempotent; returns how many entries were deleted."""
    settings = ctx.settings
    older_than = now_ms() - settings.change_log_max_age_seconds * 1000
    with ctx.db.system_session() as session:
        tenant_ids = list(session.execute(select(Tenant.tenant_id)).scalars())
    removed = 0
    for tenant_id in tenant_ids:
        with ctx.db.tenant_session(tenant_id) as session:
            removed += _prune_tenant(
                session, tenant_id, older_than=older_than, max_entries=settings.change_log_max_entries
            )
    return removed


def folder_message_ids(session: Session, folder_ids: Sequence[uuid.UUID]) -> list[uuid.UUID]:
    """Ids of the messages of these folders (to log them destroyed before the folders or their rows go)."""
    found: list[uuid.UUID] = []
    for start in range(0, len(folder_ids), 500):
        chunk = list(folder_ids[start : start + 500])
        found.extend(session.execute(select(EmailMessage.id).where(EmailMessage.folder_id.in_(chunk))).scalars())
    return found


def record_folders_destroyed(
    session: Session, *, tenant_id: uuid.UUID, account_id: uuid.UUID, folder_ids: Sequence[uuid.UUID]
) -> None:
    """Log folders about to be deleted as destroyed, and their messages (which go with them by the foreign key).
    Call it before the DELETE, in its transaction."""
    if folder_ids:
        messages = folder_message_ids(session, folder_ids)
        record_changes(session, tenant_id=tenant_id, account_id=account_id, kind="message", destroyed=messages)
        record_changes(session, tenant_id=tenant_id, account_id=account_id, kind="folder", destroyed=folder_ids)
