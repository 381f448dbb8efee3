"""What the IMAP adapter returns: plain frozen dataclasses (re-exported by :mod:`email_service.protocols.imap`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MailboxInfo:
    """One LIST entry (RFC 3501 section 7.2.2): decoded ``name``, ``delimiter``, attribute ``flags``."""

    name: str
    delimiter: str | None
    flags: tuple[str, ...]
    role: str
    selectable: bool


@dataclass(frozen=True)
class MailboxStatus:
    """SELECT/EXAMINE result (RFC 3501 section 6.3.1, RFC 7162 section 3.1.2.1).

    ``highestmodseq`` is ``None`` without CONDSTORE or for a NOMODSEQ mailbox.
    """

    uidvalidity: int
    uidnext: int
    exists: int
    highestmodseq: int | None


@dataclass(frozen=True)
class FetchedMessage:
    """One message from UID FETCH: ``raw`` is BODY[] (exact RFC 5322 bytes), ``size`` is RFC822.SIZE (octets).

    ``internaldate_ms`` is INTERNALDATE as UTC epoch milliseconds; ``modseq`` is ``None`` without CONDSTORE.
    ``\\Recent`` is never among ``flags`` (it belongs to the session, not the message).
    """

    uid: int
    flags: tuple[str, ...]
    internaldate_ms: int | None
    size: int
    modseq: int | None
    raw: bytes
