"""Server-Sent Events of the change log (issue 12): what ``GET /api/v1/events`` sends, and how it resumes.

A stream covers every live account of the caller (their own accounts, admins included: "the caller's accounts").
It reads the change log itself, from a cursor, after every wake-up of the change bus and on every heartbeat; a
wake-up only says "look now" (:mod:`email_service.services.change_bus`), so a lost Redis message costs at most one
heartbeat of latency, never an event.

Event ids: the cursor after the event, ``<account hex>:<modseq>`` per account joined by ``,`` (sorted), e.g.
``4f1c...e2:42,9a07...c1:7``.  Each account's modseq is given out in commit order under its row lock
(:mod:`email_service.services.changes`), so "every entry above the cursor" is exactly what the client has not
seen: ``Last-Event-ID`` resumes with nothing lost and nothing repeated, across all accounts at once.

Events (``event:`` field, ``data:`` one JSON object):

* ``state``: first event of every connection, ``{"accounts": {account id: state}}``; its id is the cursor to
  resume from even when nothing happens.
* ``message`` | ``folder`` | ``sync`` | ``outbox``: a run of consecutive log entries of one kind of one account,
  ``{"accountId", "type", "oldState", "newState", "created", "updated", "destroyed"}`` (ids, folded like
  ``/changes``); ``newState`` is that account's state after the event.
* ``reset``: ``{"accountId", "newState"}``: the cursor is older than the pruned log; the client reloads that
  account's lists (as after a 410 from ``/changes``).

A connection without ``Last-Event-ID`` starts at the accounts' current states.  With one, an account missing from
it (added since), and an account added while the stream is open, start from their oldest state still in the log
(a ``reset`` when that is not their first state).
"""

from __future__ import annotations

import functools
import json
import threading
import uuid
from collections.abc import Callable, Hashable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

from sqlalchemy import select

from email_service.errors import InvalidInput
from email_service.models import EmailAccount
from email_service.security.tokens import Principal
from email_service.services.changes import fold, read_entries
from email_service.services.context import ServiceContext

#: Most log entries one read of one account takes (the next read goes on from there).
READ_LIMIT = 500
_MAX_ID_LENGTH = 8192
T = TypeVar("T")


class Entry(NamedTuple):
    """A change-log row as the streams share it (plain values, safe to hand between threads)."""

    modseq: int
    kind: str
    change: str
    object_id: uuid.UUID


class SharedReads:
    """One database read per wake-up for all the streams of a process that need the same one: the first caller of
    a key computes, the others wait for its result.  Keys carry the change bus's generation
    (:meth:`ChangeBus.generation`), which moves BEFORE the streams are woken, so a woken stream never gets a read
    made before its wake-up.  200 streams of one user cost one read per change instead of 200."""

    def __init__(self, limit: int = 4096) -> None:
        self._lock = threading.Lock()
        self._results: dict[Hashable, Future[Any]] = {}
        self._limit = limit

    def get(self, key: Hashable, compute: Callable[[], T]) -> T:
        """``compute()`` once per ``key`` (its exception is raised to every waiter, and not kept)."""
        with self._lock:
            future = self._results.get(key)
            owner = future is None
            if future is None:
                if len(self._results) >= self._limit:
                    self._results.clear()  # old generations: nobody asks for them any more
                future = self._results[key] = Future()
        if owner:
            try:
                future.set_result(compute())
            except BaseException as exc:
                future.set_exception(exc)
                with self._lock:
                    self._results.pop(key, None)
        result: T = future.result()
        return result


def encode_cursor(cursor: dict[uuid.UUID, int]) -> str:
    """The event id of ``cursor`` (``{account id: modseq}``)."""
    return ",".join(f"{account.hex}:{seq}" for account, seq in sorted(cursor.items(), key=lambda item: item[0].hex))


def decode_cursor(text: str) -> dict[uuid.UUID, int]:
    """The cursor of an event id (``Last-Event-ID``).  Raises :class:`InvalidInput` for one this service never
    sent."""
    cursor: dict[uuid.UUID, int] = {}
    if len(text) > _MAX_ID_LENGTH:
        raise InvalidInput("Last-Event-ID: too long")
    for part in filter(None, text.strip().split(",")):
        account, _, seq = part.partition(":")
        try:
            cursor[uuid.UUID(hex=account)] = int(seq)
        except ValueError:
            raise InvalidInput("Last-Event-ID: not an event id of this service") from None
        if not seq.isdigit():
            raise InvalidInput("Last-Event-ID: not an event id of this service")
    return cursor


@dataclass(frozen=True)
class Event:
    """One Server-Sent Event: ``id`` (the cursor after it), ``type`` (the ``event:`` field) and ``data``."""

    id: str
    type: str
    data: dict[str, Any]

    def encode(self) -> bytes:
        """The event on the wire (text/event-stream, one ``data:`` line of JSON)."""
        return f"id: {self.id}\nevent: {self.type}\ndata: {json.dumps(self.data, separators=(',', ':'))}\n\n".encode()


class EventReader:
    """Reads the log of one caller's accounts from a cursor and turns it into :class:`Event` s.

    ``resume``: the decoded ``Last-Event-ID`` (``None``: start at the current states).
    """

    def __init__(
        self,
        ctx: ServiceContext,
        principal: Principal,
        resume: dict[uuid.UUID, int] | None,
        shared: SharedReads | None = None,
    ) -> None:
        self.ctx, self.principal = ctx, principal
        self.resumed = resume is not None
        self.cursor: dict[uuid.UUID, int] = dict(resume or {})
        self.shared = shared
        self._started = False

    def _read(self, key: Hashable, generation: Hashable | None, compute: Callable[[], T]) -> T:
        if self.shared is None or generation is None:
            return compute()
        return self.shared.get((key, generation), compute)

    def _accounts(self) -> dict[uuid.UUID, tuple[int, int]]:
        with self.ctx.db.tenant_session(self.principal.tenant_id, read_only=True) as session:
            rows = session.execute(
                select(EmailAccount.id, EmailAccount.change_seq, EmailAccount.change_floor).where(
                    EmailAccount.tenant_id == self.principal.tenant_id,
                    EmailAccount.user_id == self.principal.user_id,
                    EmailAccount.deleted_at.is_(None),
                )
            )
            return {account_id: (int(seq), int(floor)) for account_id, seq, floor in rows}

    def _entries(self, account_id: uuid.UUID, after: int) -> tuple[int, list[Entry]]:
        """``(floor, entries above after)`` read in one snapshot (pruning cannot cut the list unseen)."""
        with self.ctx.db.tenant_session(self.principal.tenant_id, read_only=True) as session:
            floor = session.execute(select(EmailAccount.change_floor).where(EmailAccount.id == account_id)).scalar()
            rows = read_entries(session, account_id, after, READ_LIMIT)
            return int(floor or 0), [Entry(e.modseq, e.kind, e.change, e.object_id) for e in rows]

    def poll(self, generation: Hashable | None = None) -> list[Event]:
        """The events of every entry above the cursor (at most :data:`READ_LIMIT` per account); advances it.
        The first call starts with the ``state`` event (the cursor before any entry it then reads).
        ``generation``: share the database reads with the other streams polling for the same wake-up
        (``None``: read alone, e.g. after a heartbeat's timeout)."""
        events: list[Event] = []
        user = (self.principal.tenant_id, self.principal.user_id)
        accounts = self._read(("accounts", user), generation, self._accounts)
        for gone in set(self.cursor) - set(accounts):
            del self.cursor[gone]  # deleted, or never the caller's
        readable = []
        for account_id, (current, floor) in sorted(accounts.items(), key=lambda item: item[0].hex):
            if account_id not in self.cursor:  # at the start: from now (or the resumed id); later: a new account
                from_start = self.resumed or self._started
                self.cursor[account_id] = floor if from_start else current
                if from_start and floor > 0:
                    events.append(self._reset(account_id, current))
                    continue
            if self.cursor[account_id] < floor:
                events.append(self._reset(account_id, current))
                continue
            readable.append(account_id)
        if not self._started:
            self._started = True
            states = {str(account): str(seq) for account, seq in self.cursor.items()}
            events.insert(0, Event(encode_cursor(self.cursor), "state", {"accounts": states}))
        for account_id in readable:
            after = self.cursor[account_id]
            floor, entries = self._read(
                ("entries", account_id, after), generation, functools.partial(self._entries, account_id, after)
            )
            if after < floor:
                events.append(self._reset(account_id, accounts[account_id][0]))
                continue
            events.extend(self._events(account_id, entries))
        return events

    def _reset(self, account_id: uuid.UUID, current: int) -> Event:
        self.cursor[account_id] = current
        return Event(encode_cursor(self.cursor), "reset", {"accountId": str(account_id), "newState": str(current)})

    def _events(self, account_id: uuid.UUID, entries: list[Entry]) -> Iterator[Event]:
        start = 0
        while start < len(entries):
            end = start
            while end + 1 < len(entries) and entries[end + 1].kind == entries[start].kind:
                end += 1
            run = entries[start : end + 1]
            old = self.cursor[account_id]
            self.cursor[account_id] = run[-1].modseq
            folded = fold((entry.change, entry.object_id) for entry in run)
            data = {
                "accountId": str(account_id),
                "type": run[0].kind,
                "oldState": str(old),
                "newState": str(run[-1].modseq),
                "created": [str(i) for i in folded.created],
                "updated": [str(i) for i in folded.updated],
                "destroyed": [str(i) for i in folded.destroyed],
            }
            yield Event(encode_cursor(self.cursor), run[0].kind, data)
            start = end + 1
