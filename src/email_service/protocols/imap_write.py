"""IMAP commands that change the server: flags, move/copy, expunge of chosen UIDs, mailbox create/rename/delete.

Mixed into :class:`email_service.protocols.imap.ImapSession` (one connection, one account).  Every command takes a
whole UID set, so the write-back sends one command per mailbox and change, never one per message:

* ``UID STORE <set> [(UNCHANGEDSINCE n)] +FLAGS|-FLAGS (...)`` (RFC 3501 section 6.4.6, RFC 7162 section 3.1.3):
  not ``.SILENT``, so the server's FETCH answers say which messages it changed and their new FLAGS/MODSEQ;
  a UID that is no longer in the mailbox gets no answer (RFC 3501 section 6.4.8: not an error).
* ``UID MOVE`` (RFC 6851) and ``UID COPY``; the COPYUID response code (RFC 4315 section 3) maps each moved UID
  to its UID in the destination.
* ``UID EXPUNGE <set>`` (RFC 4315 section 2.1): removes only the chosen ``\\Deleted`` messages.  A bare EXPUNGE,
  which would also remove every other ``\\Deleted`` message of the mailbox, is never sent.
* CREATE / RENAME / DELETE / SUBSCRIBE with the name in modified UTF-7 (RFC 3501 section 5.1.3; imapclient
  encodes); CREATE ``(USE (\\Drafts))`` when the server offers CREATE-SPECIAL-USE (RFC 6154 section 3).
* ``APPEND <mailbox> (<flags>) {literal}`` (RFC 3501 section 6.3.11); the APPENDUID response code (RFC 4315
  section 3) names the new message's UIDVALIDITY and UID.  Without UIDPLUS the UID is found by ``UID SEARCH
  HEADER Message-ID`` in that mailbox (:meth:`ImapWriteCommands.uids_with_message_id`).

Refusals raise :class:`MailboxError` with the server's text, or :class:`TemporaryFailure` for the RFC 5530 codes
that mean "try again later" (UNAVAILABLE, INUSE, SERVERBUG); a broken connection raises :class:`ConnectionFailed`.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from imapclient.response_parser import parse_fetch_response

from email_service.protocols.errors import MailboxError, TemporaryFailure
from email_service.protocols.imap_syntax import (
    decode_atom,
    flag_strings,
    is_flag,
    is_transient_refusal,
    modseq_value,
    parse_copyuid,
    parse_sequence_set,
    sequence_set,
)

_APPENDUID = re.compile(rb"\[APPENDUID (\d+) (\d+)\]", re.IGNORECASE)

#: Untagged answers a write command leaves behind that nothing reads later (imaplib keeps them until popped).
_LEFTOVERS = ("FETCH", "EXPUNGE", "VANISHED", "EXISTS", "RECENT", "COPYUID", "MODIFIED")


@dataclass(frozen=True)
class StoreResult:
    """Answer to one ``UID STORE``.

    ``flags`` maps each UID the server changed (or matched) to ``(flags, modseq)`` as it now stands (``modseq``
    ``None`` without CONDSTORE); a requested UID missing here is no longer in the mailbox, unless it is in
    ``modified``: refused by ``UNCHANGEDSINCE`` because it changed on the server after that MODSEQ (RFC 7162
    section 3.1.3, the MODIFIED response code).
    """

    flags: dict[int, tuple[tuple[str, ...], int | None]]
    modified: frozenset[int]


@dataclass(frozen=True)
class CopyResult:
    """Answer to ``UID MOVE`` / ``UID COPY``: the destination's UIDVALIDITY and ``{source uid: new uid}`` from
    COPYUID (RFC 4315).  Both empty/``None`` when the server sent no COPYUID (no UIDPLUS, or no message moved)."""

    uidvalidity: int | None
    uids: dict[int, int]


class ImapWriteCommands:
    """The changing commands of :class:`~email_service.protocols.imap.ImapSession` (needs a selected mailbox,
    opened read-write with ``select(name, readonly=False)``, for the message commands)."""

    if TYPE_CHECKING:
        _capabilities: frozenset[str]
        _selected: str | None

        @property
        def condstore(self) -> bool: ...

        def _require(self) -> Any: ...

        def _require_selected(self) -> Any: ...

        def _errors(self, action: str, *, mailbox: str | None = None) -> contextlib.AbstractContextManager[None]: ...

    @property
    def can_move(self) -> bool:
        """True when the server offers MOVE (RFC 6851)."""
        return "MOVE" in self._capabilities

    @property
    def uidplus(self) -> bool:
        """True when the server offers UIDPLUS (RFC 4315): UID EXPUNGE and COPYUID."""
        return "UIDPLUS" in self._capabilities

    @contextlib.contextmanager
    def _refusals(self, action: str, mailbox: str | None) -> Iterator[None]:
        """:meth:`_errors`, with a NO that carries a "try again later" code raised as :class:`TemporaryFailure`."""
        try:
            with self._errors(action, mailbox=mailbox):
                yield
        except MailboxError as exc:
            if exc.server_text and is_transient_refusal(exc.server_text):
                raise TemporaryFailure(exc.message, server_text=exc.server_text) from exc
            raise

    @staticmethod
    def _drain(imap: Any) -> None:
        for name in _LEFTOVERS:
            imap.untagged_responses.pop(name, None)

    def store_flags(
        self, uids: Sequence[int], flags: Iterable[str], *, remove: bool = False, unchangedsince: int | None = None
    ) -> StoreResult:
        """``UID STORE <uids> [(UNCHANGEDSINCE n)] +FLAGS|-FLAGS (<flags>)`` in the selected mailbox.

        ``flags`` are system flags (``\\Seen``) or keywords (atoms); anything else raises ``ValueError`` before a
        byte is sent.  ``unchangedsince`` is only sent when CONDSTORE is enabled.  Returns what the server
        reported (see :class:`StoreResult`).
        """
        flags = list(flags)
        if not all(is_flag(flag) for flag in flags):
            raise ValueError(f"not IMAP flags: {flags!r}")
        client = self._require_selected()
        args = [sequence_set(uids)]
        if unchangedsince is not None and self.condstore:
            args.append(f"(UNCHANGEDSINCE {int(unchangedsince)})")
        args += ["-FLAGS" if remove else "+FLAGS", "(" + " ".join(flags) + ")"]
        wanted = set(uids)
        with self._refusals("storing flags", self._selected):
            imap = client._imap
            self._drain(imap)
            tag = imap._command("UID", "STORE", *args)
            typ, data = imap._command_complete("STORE", tag)
            client._checkok("store", typ, data)
            modified = {u for line in imap.untagged_responses.pop("MODIFIED", []) for u in _uids(line)}
            typ, data = imap._untagged_response(typ, data, "FETCH")
            response = parse_fetch_response([d for d in data if d is not None], False, True) if data else {}
            self._drain(imap)
        result = {
            uid: (flag_strings(item[b"FLAGS"]), modseq_value(item.get(b"MODSEQ")))
            for uid, item in response.items()
            if uid in wanted and b"FLAGS" in item
        }
        return StoreResult(result, frozenset(modified & wanted))

    def move(self, uids: Sequence[int], mailbox: str) -> CopyResult:
        """``UID MOVE <uids> <mailbox>`` (RFC 6851); needs :attr:`can_move`."""
        return self._transfer("MOVE", uids, mailbox)

    def copy(self, uids: Sequence[int], mailbox: str) -> CopyResult:
        """``UID COPY <uids> <mailbox>`` (RFC 3501 section 6.4.7)."""
        return self._transfer("COPY", uids, mailbox)

    def _transfer(self, command: str, uids: Sequence[int], mailbox: str) -> CopyResult:
        client = self._require_selected()
        with self._refusals(f"{command.lower()} to {mailbox!r}", self._selected):
            imap = client._imap
            self._drain(imap)
            typ, data = imap._simple_command("UID", command, sequence_set(uids), client._normalise_folder(mailbox))
            client._checkok(command.lower(), typ, data)
            answers = [decode_atom(line) for line in imap.untagged_responses.pop("COPYUID", [])]
            self._drain(imap)
        uidvalidity, mapping = None, {}
        for answer in answers:  # one COPYUID per command; a server may split a big MOVE into several
            parsed = parse_copyuid(answer)
            if parsed is not None:
                uidvalidity = parsed[0]
                mapping.update(parsed[1])
        return CopyResult(uidvalidity, mapping)

    def uid_expunge(self, uids: Sequence[int]) -> None:
        """``UID EXPUNGE <uids>`` (RFC 4315 section 2.1): only these UIDs, and only if marked ``\\Deleted``.

        Raises :class:`MailboxError` without UIDPLUS (a bare EXPUNGE is never sent instead).
        """
        client = self._require_selected()
        if not self.uidplus:
            raise MailboxError("The server has no UIDPLUS (RFC 4315): expunging only chosen messages is impossible.")
        with self._refusals("expunging messages", self._selected):
            imap = client._imap
            typ, data = imap._simple_command("UID", "EXPUNGE", sequence_set(uids))
            client._checkok("expunge", typ, data)
            self._drain(imap)

    def _mailbox_command(self, action: str, name: str, command: Callable[[], object], *, already: str) -> bool:
        """Run ``command`` on mailbox ``name``; ``False`` when the server refuses with the RFC 5530 code ``already``
        (the state the command would reach is there already), :class:`MailboxError` for any other refusal."""
        try:
            with self._refusals(action, name):
                command()
        except MailboxError as exc:
            if already not in (exc.server_text or "").upper():
                raise
            return False
        return True

    def _subscribe(self, name: str) -> None:
        """SUBSCRIBE, so that other clients list the mailbox too; a refusal is not an error."""
        with contextlib.suppress(MailboxError), self._errors(f"subscribing to {name!r}", mailbox=name):
            self._require().subscribe_folder(name)

    def create_mailbox(self, name: str, special_use: str | None = None) -> bool:
        """CREATE ``name`` and SUBSCRIBE it; ``False`` when it already existed (NO [ALREADYEXISTS], RFC 5530).

        ``special_use`` (e.g. ``\\Drafts``) is sent as ``(USE (...))`` when the server offers CREATE-SPECIAL-USE
        (RFC 6154 section 3); otherwise a plain CREATE.
        """
        client = self._require()

        def create() -> None:
            if special_use and "CREATE-SPECIAL-USE" in self._capabilities and is_flag(special_use):
                imap = client._imap
                typ, data = imap._simple_command("CREATE", client._normalise_folder(name), f"(USE ({special_use}))")
                client._checkok("create", typ, data)
            else:
                client.create_folder(name)

        created = self._mailbox_command(f"creating mailbox {name!r}", name, create, already="[ALREADYEXISTS]")
        self._subscribe(name)
        return created

    def rename_mailbox(self, old: str, new: str) -> None:
        """RENAME ``old`` ``new`` (RFC 3501 section 6.3.5: inferior names are renamed with it)."""
        client = self._require()
        with self._refusals(f"renaming mailbox {old!r}", old):
            client.rename_folder(old, new)
        self._subscribe(new)

    def delete_mailbox(self, name: str) -> bool:
        """DELETE ``name``; ``False`` when it did not exist (NO [NONEXISTENT], RFC 5530)."""
        client = self._require()
        return self._mailbox_command(
            f"deleting mailbox {name!r}", name, lambda: client.delete_folder(name), already="[NONEXISTENT]"
        )

    def append(self, mailbox: str, raw: bytes, flags: Sequence[str] = ()) -> tuple[int, int] | None:
        """``APPEND <mailbox> (<flags>) <raw>`` (RFC 3501 section 6.3.11).

        Returns ``(uidvalidity, uid)`` from the APPENDUID response code (RFC 4315 section 3), ``None`` when the
        server sent none (no UIDPLUS: see :meth:`uids_with_message_id`).  Raises :class:`MailboxError` (e.g. no
        such mailbox: ``[TRYCREATE]``) or :class:`TemporaryFailure`.
        """
        flags = list(flags)
        if not all(is_flag(flag) for flag in flags):
            raise ValueError(f"not IMAP flags: {flags!r}")
        client = self._require()
        with self._refusals(f"appending to {mailbox!r}", mailbox):
            answer = client.append(mailbox, raw, flags=flags)
        found = _APPENDUID.search(answer if isinstance(answer, bytes) else str(answer).encode())
        # APPENDUID is only defined with UIDPLUS (RFC 4315 section 3): without it the caller searches instead.
        return (int(found.group(1)), int(found.group(2))) if found and self.uidplus else None

    def uids_with_message_id(self, message_id: str) -> list[int]:
        """``UID SEARCH HEADER Message-ID <id>`` in the selected mailbox (RFC 3501 section 6.4.4): the UIDs of the
        messages carrying that Message-ID, ascending."""
        client = self._require_selected()
        with self._refusals("searching by Message-ID", self._selected):
            found = client.search(["HEADER", "Message-ID", message_id])
        return sorted(int(uid) for uid in found)


def _uids(line: Any) -> list[int]:
    return parse_sequence_set(decode_atom(line).strip())
