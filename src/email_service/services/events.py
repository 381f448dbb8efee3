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
it (added since) starts from its oldest state still in the log (a ``reset`` when that is not its first state).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from email_service.errors import InvalidInput
from email_service.models import ChangeEntry, EmailAccount
from email_service.security.tokens import Principal
from email_service.services.changes import fold, read_entries
from email_service.services.context import ServiceContext

#: Most log entries one read of one account takes (the next read goes on from there).
READ_LIMIT = 500
_MAX_ID_LENGTH = 8192


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

    def __init__(self, ctx: ServiceContext, principal: Principal, resume: dict[uuid.UUID, int] | None) -> None:
        self.ctx, self.principal = ctx, principal
        self.resumed = resume is not None
        self.cursor: dict[uuid.UUID, int] = dict(resume or {})
        self._started = False

    def _accounts(self, session: Any) -> dict[uuid.UUID, tuple[int, int]]:
        rows = session.execute(
            select(EmailAccount.id, EmailAccount.change_seq, EmailAccount.change_floor).where(
                EmailAccount.tenant_id == self.principal.tenant_id,
                EmailAccount.user_id == self.principal.user_id,
                EmailAccount.deleted_at.is_(None),
            )
        )
        return {account_id: (int(seq), int(floor)) for account_id, seq, floor in rows}

    def poll(self) -> list[Event]:
        """The events of every entry above the cursor (at most :data:`READ_LIMIT` per account); advances it.
        The first call starts with the ``state`` event (the cursor before any entry it then reads)."""
        events: list[Event] = []
        with self.ctx.db.tenant_session(self.principal.tenant_id, read_only=True) as session:
            accounts = self._accounts(session)
            for gone in set(self.cursor) - set(accounts):
                del self.cursor[gone]  # deleted, or never the caller's
            readable = []
            for account_id, (current, floor) in sorted(accounts.items(), key=lambda item: item[0].hex):
                if account_id not in self.cursor:
                    self.cursor[account_id] = floor if self.resumed else current
                    if self.resumed and floor > 0:
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
                entries = read_entries(session, account_id, self.cursor[account_id], READ_LIMIT)
                events.extend(self._events(account_id, entries))
        return events

    def _reset(self, account_id: uuid.UUID, current: int) -> Event:
        self.cursor[account_id] = current
        return Event(encode_cursor(self.cursor), "reset", {"accountId": str(account_id), "newState": str(current)})

    def _events(self, account_id: uuid.UUID, entries: list[ChangeEntry]) -> Iterator[Event]:
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
