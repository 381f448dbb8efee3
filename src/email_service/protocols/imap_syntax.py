"""IMAP helpers without I/O: mailbox roles (RFC 6154), sequence sets (RFC 3501 section 9), response values,
and the translation of transport failures into :mod:`email_service.protocols.errors`.

Split out of :mod:`email_service.protocols.imap` (which re-exports ``mailbox_role`` and ``sequence_set``).
"""

from __future__ import annotations

import ast
import contextlib
import imaplib
import re
import socket
import ssl
from collections.abc import Iterable
from datetime import datetime
from itertools import groupby
from typing import Any

from email_service.protocols.errors import ConnectionFailed
from email_service.protocols.tls import tls_error

ROLES = ("inbox", "sent", "drafts", "trash", "spam", "archive", "custom")

# RFC 6154 section 2 attributes -> role.  \All (a virtual "every message" view such as Gmail's All Mail) and
# \Flagged are views, not places, so they are deliberately not roles: mirroring them as "archive" would make
# every message appear twice and make "move to archive" ambiguous.
_SPECIAL_USE_ROLES = {f"\\{flag}": role for flag, role in (("sent", "sent"), ("drafts", "drafts"),
                      ("trash", "trash"), ("junk", "spam"), ("archive", "archive"))}  # fmt: skip
# Common names (last path component, compared case-insensitively) for servers without SPECIAL-USE.
_NAMES = {
    "sent": "sent|sent items|sent messages|sent mail|sent-mail|sent e-mail|sent email|gesendet|"
    "gesendete objekte|gesendete elemente|envoyés|éléments envoyés|enviados|elementos enviados|"
    "posta inviata|verzonden items",
    "drafts": "drafts|draft|entwürfe|brouillons|borradores|bozze|concepten",
    "trash": "trash|deleted items|deleted messages|deleted|bin|papierkorb|gelöschte elemente|corbeille|"
    "éléments supprimés|papelera|cestino|prullenbak",
    "spam": "junk|spam|junk e-mail|junk email|junk mail|bulk mail|spamverdacht|courrier indésirable|correo no deseado",
    "archive": "archive|archives|archiv|archivio|archivo|archief",
}
_NAME_ROLES = {name: role for role, names in _NAMES.items() for name in names.split("|")}
_SERVER_TEXT_LIMIT = 300


def mailbox_role(name: str, flags: Iterable[str], delimiter: str | None = None) -> str:
    """Role of a mailbox: ``inbox | sent | drafts | trash | spam | archive | custom``.

    RFC 6154 SPECIAL-USE attributes win (``\\Sent``, ``\\Drafts``, ``\\Trash``, ``\\Junk`` -> spam,
    ``\\Archive``; ``\\All`` and ``\\Flagged`` are ignored, see ``_SPECIAL_USE_ROLES``).  Without one,
    the name decides: ``INBOX`` (any case, the whole name, RFC 3501 section 5.1) is the inbox; otherwise the
    last path component (split at ``delimiter``, or at ``/`` and ``.`` when it is unknown) is matched
    case-insensitively against common names ("Sent Items", "[Gmail]/Sent Mail", "Junk E-mail", ...).
    """
    for flag in flags:
        role = _SPECIAL_USE_ROLES.get(flag.lower())
        if role is not None:
            return role
    if name.upper() == "INBOX":
        return "inbox"
    last = re.split("[/.]", name)[-1] if delimiter is None else name.rsplit(delimiter, 1)[-1]
    return _NAME_ROLES.get(last.strip().casefold(), "custom")


def sequence_set(uids: Iterable[int]) -> str:
    """RFC 3501 sequence-set for ``uids``, sorted and compressed into ranges: ``[1, 2, 3, 7] -> "1:3,7"``."""
    runs = [[u for _, u in run] for _, run in groupby(enumerate(sorted(set(uids))), lambda p: p[1] - p[0])]
    return ",".join(str(run[0]) if len(run) == 1 else f"{run[0]}:{run[-1]}" for run in runs)


def parse_sequence_set(text: str) -> list[int]:
    """UIDs of a sequence-set without ``*`` (``"41,43:45"`` -> ``[41, 43, 44, 45]``); junk parts skipped."""
    uids: list[int] = []
    for low, _, high in (part.partition(":") for part in text.split(",")):
        if low.isdigit() and (not high or high.isdigit()):
            uids.extend(range(min(int(low), int(high or low)), max(int(low), int(high or low)) + 1))
    return uids


def server_text(exc: BaseException) -> str:
    """The server's words from an imaplib/imapclient error (``b'[CODE] text'`` reprs unwrapped)."""
    arg: Any = exc.args[0] if exc.args else ""
    if isinstance(arg, bytes):
        text = arg.decode("utf-8", "replace")
    else:
        text = str(arg)
        if text[:2] in ("b'", 'b"'):
            with contextlib.suppress(ValueError, SyntaxError):
                text = ast.literal_eval(text).decode("utf-8", "replace")
    text = re.sub(r"^\w+ failed: ", "", text).strip()
    return text[:_SERVER_TEXT_LIMIT]


def transport_error(exc: BaseException, where: str, action: str, timeout: float) -> ConnectionFailed:
    """The :class:`ConnectionFailed` (or :class:`TLSError`) for a socket, TLS or protocol-stream failure."""
    if isinstance(exc, ssl.SSLError):
        return tls_error(exc, where, action)
    if isinstance(exc, socket.gaierror):
        return ConnectionFailed(f"The host name of {where} could not be resolved ({exc.strerror}).")
    if isinstance(exc, TimeoutError):
        return ConnectionFailed(f"{where} did not answer within {timeout:g} s while {action}.")
    if isinstance(exc, ConnectionRefusedError):
        return ConnectionFailed(f"{where} refused the connection.")
    if isinstance(exc, imaplib.IMAP4.abort):
        text = server_text(exc)
        return ConnectionFailed(f"The connection to {where} broke while {action}: {text}", server_text=text)
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return ConnectionFailed(f"Network error with {where} while {action}: {reason}.")


def decode_atom(value: Any) -> str:
    """An IMAP atom/string from imapclient (bytes or str) as str."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def flag_strings(values: Iterable[Any]) -> tuple[str, ...]:
    """FLAGS as str, without the session-only ``\\Recent`` (RFC 3501 section 2.3.2)."""
    return tuple(flag for flag in (decode_atom(v) for v in values) if flag.lower() != "\\recent")


def modseq_value(value: Any) -> int | None:
    """A MODSEQ fetch item (``(12,)`` from imapclient) as int, or None (RFC 7162 section 3.1.4)."""
    if isinstance(value, tuple | list) and value:
        value = value[0]
    return int(value) if isinstance(value, int | bytes | str) and str(decode_atom(value)).isdigit() else None


def epoch_ms(value: Any) -> int | None:
    """An aware INTERNALDATE datetime as UTC epoch milliseconds, or None."""
    return round(value.timestamp() * 1000) if isinstance(value, datetime) else None


#: A flag keyword (RFC 3501 section 9: ``flag-keyword = atom``): ATOM-CHARs only, i.e. printable ASCII except
#: ``(`` ``)`` ``{`` SP ``%`` ``*`` ``"`` ``\`` ``]``.  Also usable as a JSON Schema ``pattern``.
KEYWORD_PATTERN = r"^[!#$&'+-\[^-z|}~]+$"
_KEYWORD = re.compile(KEYWORD_PATTERN)


_SYSTEM_FLAG = re.compile(r"\\[A-Za-z]+")


def is_flag(value: str) -> bool:
    """True for a system flag (``\\Seen``, RFC 3501 section 2.3.2) or a keyword: what may go into STORE."""
    return bool(_SYSTEM_FLAG.fullmatch(value)) or is_keyword(value)


def is_keyword(value: str) -> bool:
    """True when ``value`` is an IMAP flag keyword (an atom; system flags start with ``\\`` and are not)."""
    return bool(_KEYWORD.fullmatch(value))  # fullmatch: "$" alone would let a trailing line feed through


def parse_copyuid(text: str) -> tuple[int, dict[int, int]] | None:
    """``(destination UIDVALIDITY, {source uid: destination uid})`` of a COPYUID response code.

    ``text`` is the code's data, ``"<uidvalidity> <source set> <destination set>"`` (RFC 4315 section 3); both
    sets list the messages in the same order.  ``None`` when it is malformed or the two sets differ in size.
    """
    parts = text.split()
    if len(parts) != 3 or not parts[0].isdigit():
        return None
    sources, targets = _ordered_set(parts[1]), _ordered_set(parts[2])
    if not sources or len(sources) != len(targets):
        return None
    return int(parts[0]), dict(zip(sources, targets, strict=True))


def _ordered_set(text: str) -> list[int]:
    """UIDs of a uid-set in the order written (``"3,1:2"`` -> ``[3, 1, 2]``; ``"5:3"`` -> ``[3, 4, 5]``)."""
    uids: list[int] = []
    for part in text.split(","):
        low, _, high = part.partition(":")
        if not low.isdigit() or (high and not high.isdigit()):
            return []
        first, last = sorted((int(low), int(high or low)))
        uids.extend(range(first, last + 1))
    return uids


#: RFC 5530 response codes of a NO that may succeed later (the server is busy or briefly unable).
TRANSIENT_CODES = ("[UNAVAILABLE]", "[INUSE]", "[SERVERBUG]")


def is_transient_refusal(text: str) -> bool:
    """True when a NO answer's text carries an RFC 5530 code that says "try again later"."""
    upper = text.upper()
    return any(code in upper for code in TRANSIENT_CODES)
