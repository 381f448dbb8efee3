"""IMAP syntax helpers without I/O: mailbox roles (RFC 6154), sequence sets (RFC 3501 section 9), server text.

Split out of :mod:`email_service.protocols.imap` (which re-exports ``mailbox_role`` and ``sequence_set``).
"""

from __future__ import annotations

import ast
import contextlib
import re
from collections.abc import Iterable
from itertools import groupby
from typing import Any

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
