"""Conversations: JWZ threading (RFC 5256 section 3, REFERENCES), incremental, per account across folders.

Every Message-ID an account has seen -- a message's own, or one named in a References / In-Reply-To header -- has a
container row (:class:`ThreadContainer`) naming its thread; an id only referenced is a container for a missing
parent.  When messages are stored, :func:`assign_threads` links each message with the ids it references
(References, else the first In-Reply-To id: RFC 5256 REFERENCES step 1), and the message joins the thread of any
of them.  When those ids belong to several threads (a parent arriving after its children, or a References header
bridging two conversations), the threads merge: the one with the most messages (then the oldest) keeps its id and
the others' messages and containers are renamed to it, so a thread's existing messages keep their ``threadId``
where possible.

Grouping is by linked ids, never by following parent pointers, so a looping References chain (A names B, B names
A) or a message naming itself cannot loop: a self-reference is dropped, and a parent link that would close a
cycle is not recorded (``parent_msgid`` is informational).  Duplicate Message-IDs (one message in INBOX and in
Sent, a copy in two folders) share one container and so one thread.

A message without references joins by subject only (RFC 5256 step 5 grouping by base subject, section 2.1), and
only a thread holding another reference-less message with the same non-empty base subject received within
:data:`SUBJECT_WINDOW_MS` of it: two unrelated "Lunch?" a month apart stay apart, and a reply with References is
never pulled into another conversation by its subject.
"""

from __future__ import annotations

import itertools
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from email_service.models import EmailMessage, ThreadContainer, now_ms
from email_service.services.changes import record_changes

SUBJECT_WINDOW_MS = 7 * 24 * 3600 * 1000
MAX_MSGID = 500
_CHUNK = 500
_SUBJ_TRAILER = re.compile(r"(?:\s*\(fwd\))+\s*$", re.IGNORECASE)
_SUBJ_LEADER = re.compile(r"^\s*(?:(?:re|fwd?|aw|sv|wg)\s*(?:\[[^\]]*\])?\s*:\s*|\[[^\]]*\]\s*)", re.IGNORECASE)
_FWD_WRAP = re.compile(r"^\s*\[fwd:\s*(.*)\]\s*$", re.IGNORECASE | re.DOTALL)


@lru_cache(maxsize=4096)
def base_subject(subject: str | None) -> str:
    """The base subject of RFC 5256 section 2.1: whitespace runs folded, ``(fwd)`` trailers, ``Re:`` / ``Fwd:`` /
    ``[list]`` leaders and ``[fwd: ...]`` wrappers removed repeatedly, lower-cased; at most 200 characters.
    (Cached: threading a batch asks for each message's base subject several times.)"""
    text = " ".join((subject or "").split())
    while True:
        before = text
        text = _SUBJ_TRAILER.sub("", text)
        while True:
            stripped = _SUBJ_LEADER.sub("", text, count=1)
            if stripped == text or not stripped.strip():
                break
            text = stripped
        wrapped = _FWD_WRAP.match(text)
        if wrapped:
            text = wrapped.group(1)
        if text == before:
            return text.strip().lower()[:200]


def _clip(msgid: str) -> str:
    return msgid.strip()[:MAX_MSGID]


def message_links(message: Mapping[str, Any]) -> tuple[str, list[str]]:
    """``(own container key, referenced ids oldest first)`` of a message row: References, else In-Reply-To; its own
    id removed from them (a message naming itself), duplicates removed.  A message without a Message-ID gets a key
    of its own (``local:<row id>``), so it can still hold a thread."""
    own = _clip(message.get("message_id") or "") or f"local:{message['id']}"
    refs = list(message.get("references") or [])
    if not refs and message.get("in_reply_to"):
        refs = [message["in_reply_to"]]
    seen: set[str] = {own}
    ordered: list[str] = []
    for ref in refs:
        key = _clip(str(ref))
        if key and key not in seen:
            seen.add(key)
            ordered.append(key)
    return own, ordered


@dataclass
class _State:
    """Containers of the account known to this pass, and thread renames made by it."""

    containers: dict[str, dict[str, Any]] = field(default_factory=dict)
    new_keys: set[str] = field(default_factory=set)
    changed_keys: set[str] = field(default_factory=set)
    renamed: dict[uuid.UUID, uuid.UUID] = field(default_factory=dict)
    batch_counts: dict[uuid.UUID, int] = field(default_factory=dict)

    def thread(self, key: str) -> uuid.UUID | None:
        container = self.containers.get(key)
        return self.resolve(container["thread_id"]) if container else None

    def resolve(self, thread_id: uuid.UUID) -> uuid.UUID:
        while thread_id in self.renamed:
            thread_id = self.renamed[thread_id]
        return thread_id

    def creates_cycle(self, child: str, parent: str) -> bool:
        node: str | None = parent
        for _ in range(10_000):
            if node is None:
                return False
            if node == child:
                return True
            container = self.containers.get(node)
            node = container["parent_msgid"] if container else None
        return True


def assign_threads(
    session: Session, *, tenant_id: uuid.UUID, account_id: uuid.UUID, messages: Sequence[dict[str, Any]]
) -> dict[uuid.UUID, uuid.UUID]:
    """Thread ``messages`` (``email_messages`` row dicts of one account: ``id``, ``message_id``, ``in_reply_to``,
    ``references``, ``subject``, ``received_at``), oldest first; set each dict's ``thread_id`` and return
    ``{row id: thread id}``.  Writes the containers and renames merged threads' existing messages in ``session``
    (the transaction that stores or already holds the rows)."""
    state = _State()
    ordered = sorted(messages, key=lambda m: m.get("received_at") or 0)
    links = {m["id"]: message_links(m) for m in ordered}
    _load(session, account_id, state, {k for own, refs in links.values() for k in (own, *refs)})
    subjects = _subject_candidates(session, account_id, ordered, links)
    for message in ordered:
        own, refs = links[message["id"]]
        thread_id = _thread_for(session, account_id, state, own, refs, message, subjects)
        subject = base_subject(message.get("subject"))
        if not refs and subject:
            subjects.setdefault(subject, []).append((message.get("received_at") or 0, thread_id))
        message["thread_id"] = thread_id
        state.batch_counts[thread_id] = state.batch_counts.get(thread_id, 0) + 1
        _link(state, tenant_id, account_id, own, refs, message, thread_id)
    for message in ordered:
        message["thread_id"] = state.resolve(message["thread_id"])
    _write(session, tenant_id, account_id, state)
    return {m["id"]: m["thread_id"] for m in ordered}


def _load(session: Session, account_id: uuid.UUID, state: _State, keys: Iterable[str]) -> None:
    ordered = sorted(keys)
    columns = (
        ThreadContainer.msgid,
        ThreadContainer.thread_id,
        ThreadContainer.parent_msgid,
        ThreadContainer.has_message,
    )
    for start in range(0, len(ordered), _CHUNK):
        rows = session.execute(
            select(*columns).where(
                ThreadContainer.account_id == account_id, ThreadContainer.msgid.in_(ordered[start : start + _CHUNK])
            )
        ).all()
        for msgid, thread_id, parent, has_message in rows:
            state.containers[msgid] = {
                "msgid": msgid, "thread_id": thread_id, "parent_msgid": parent, "has_message": has_message
            }  # fmt: skip


def _subject_candidates(
    session: Session,
    account_id: uuid.UUID,
    messages: Sequence[Mapping[str, Any]],
    links: Mapping[uuid.UUID, tuple[str, list[str]]],
) -> dict[str, list[tuple[int, uuid.UUID]]]:
    """``{base subject: [(received_at, thread id)]}`` of stored reference-less messages with the base subjects of
    this batch's reference-less messages."""
    wanted = sorted({base_subject(m.get("subject")) for m in messages if not links[m["id"]][1]} - {""})
    found: dict[str, list[tuple[int, uuid.UUID]]] = {}
    for start in range(0, len(wanted), _CHUNK):
        rows = session.execute(
            select(ThreadContainer.base_subject, ThreadContainer.received_at, ThreadContainer.thread_id).where(
                ThreadContainer.account_id == account_id,
                ThreadContainer.base_subject.in_(wanted[start : start + _CHUNK]),
            )
        ).all()
        for subject, received_at, thread_id in rows:
            if subject is not None:
                found.setdefault(subject, []).append((received_at or 0, thread_id))
    return found


def _thread_for(
    session: Session,
    account_id: uuid.UUID,
    state: _State,
    own: str,
    refs: list[str],
    message: Mapping[str, Any],
    subjects: dict[str, list[tuple[int, uuid.UUID]]],
) -> uuid.UUID:
    threads = {t for t in (state.thread(key) for key in (own, *refs)) if t is not None}
    if not threads and not refs:
        subject = base_subject(message.get("subject"))
        received = message.get("received_at") or 0
        near = [
            (abs(at - received), state.resolve(t))
            for at, t in subjects.get(subject, [])
            if subject and abs(at - received) <= SUBJECT_WINDOW_MS
        ]
        if near:
            threads = {min(near, key=lambda pair: pair[0])[1]}
    if not threads:
        return uuid.uuid4()
    if len(threads) == 1:
        return threads.pop()
    return _merge(session, account_id, state, threads)


def _merge(session: Session, account_id: uuid.UUID, state: _State, threads: set[uuid.UUID]) -> uuid.UUID:
    """Merge ``threads``: the one with the most messages (stored and of this batch), then the oldest, survives."""
    rows = session.execute(
        select(EmailMessage.thread_id, func.count(), func.min(EmailMessage.received_at))
        .where(EmailMessage.account_id == account_id, EmailMessage.thread_id.in_(sorted(threads)))
        .group_by(EmailMessage.thread_id)
    ).all()
    stored = {thread_id: (count, oldest or 0) for thread_id, count, oldest in rows}

    def rank(thread_id: uuid.UUID) -> tuple[int, int, str]:
        count, oldest = stored.get(thread_id, (0, 2**62))
        return (-(count + state.batch_counts.get(thread_id, 0)), oldest, str(thread_id))

    survivor, *others = sorted(threads, key=rank)
    for other in others:
        state.renamed[other] = survivor
    return survivor


def _link(
    state: _State,
    tenant_id: uuid.UUID,
    account_id: uuid.UUID,
    own: str,
    refs: list[str],
    message: Mapping[str, Any],
    thread_id: uuid.UUID,
) -> None:
    """Record the containers of ``own`` and ``refs`` in ``thread_id`` with JWZ parent links (RFC 5256 step 1B:
    each reference the child of the one before it unless it already has a parent or the link would loop; step 1C:
    the message the child of its last reference)."""
    for key in (*refs, own):
        if key not in state.containers:
            state.containers[key] = {
                "id": uuid.uuid4(), "tenant_id": tenant_id, "account_id": account_id, "msgid": key,
                "thread_id": thread_id, "parent_msgid": None, "has_message": False, "base_subject": None,
                "received_at": None, "created_at": now_ms(), "updated_at": now_ms(),
            }  # fmt: skip
            state.new_keys.add(key)
        elif state.containers[key]["thread_id"] != thread_id:
            state.containers[key]["thread_id"] = thread_id
            state.changed_keys.add(key)
    for parent, child in itertools.pairwise(refs):
        if state.containers[child]["parent_msgid"] is None and not state.creates_cycle(child, parent):
            _set(state, child, parent_msgid=parent)
    mine = state.containers[own]
    if refs and mine["parent_msgid"] != refs[-1] and not state.creates_cycle(own, refs[-1]):
        _set(state, own, parent_msgid=refs[-1])
    if not mine["has_message"]:
        fields: dict[str, Any] = {"has_message": True}
        if not refs:
            fields.update(
                base_subject=base_subject(message.get("subject")) or None, received_at=message.get("received_at")
            )
        _set(state, own, **fields)


def _set(state: _State, key: str, **values: Any) -> None:
    state.containers[key].update(values)
    if key not in state.new_keys:
        state.changed_keys.add(key)


def _write(session: Session, tenant_id: uuid.UUID, account_id: uuid.UUID, state: _State) -> None:
    for old, _new in state.renamed.items():
        survivor = state.resolve(old)
        moved = session.execute(
            update(EmailMessage)
            .where(EmailMessage.account_id == account_id, EmailMessage.thread_id == old)
            .values(thread_id=survivor)
            .returning(EmailMessage.id)
        ).scalars()
        # A message whose threadId changes is an updated message for the clients (JMAP: Email/changes).
        record_changes(session, tenant_id=tenant_id, account_id=account_id, kind="message", updated=list(moved))
        session.execute(
            update(ThreadContainer)
            .where(ThreadContainer.account_id == account_id, ThreadContainer.thread_id == old)
            .values(thread_id=survivor, updated_at=now_ms())
        )
    rows = []
    for key in sorted(state.new_keys):
        row = dict(state.containers[key])
        row["thread_id"] = state.resolve(row["thread_id"])
        rows.append(row)
    if rows:
        dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
        for start in range(0, len(rows), _CHUNK):
            statement = dialect.insert(ThreadContainer).on_conflict_do_nothing()
            session.execute(statement, rows[start : start + _CHUNK])
    for key in sorted(state.changed_keys - state.new_keys):
        container = state.containers[key]
        names: tuple[str, ...] = ("parent_msgid", "has_message", "base_subject", "received_at")
        values: dict[str, Any] = {k: container[k] for k in names if k in container}
        values["thread_id"] = state.resolve(container["thread_id"])
        session.execute(
            update(ThreadContainer)
            .where(ThreadContainer.account_id == account_id, ThreadContainer.msgid == key)
            .values(**values, updated_at=now_ms())
        )
