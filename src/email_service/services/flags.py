"""IMAP flags of a message row (RFC 3501 section 2.3.2): the boolean columns they fill, and flag deltas.

Shared by the sync (server flags into rows), the local changes of the API and the write-back, so that all three
read a flag list the same way.  System flags and keywords compare case-insensitively; the stored list keeps the
spelling it was given.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

#: IMAP system flags (RFC 3501 section 2.3.2) mirrored into boolean columns.
FLAG_COLUMNS = {
    "\\Seen": "is_read",
    "\\Flagged": "is_flagged",
    "\\Answered": "is_answered",
    "\\Draft": "is_draft",
}


def flag_columns(flags: Iterable[str]) -> dict[str, Any]:
    """``{"flags": [...], "is_read": bool, ...}`` for a flag list (system flags matched case-insensitively)."""
    flag_list = sorted(set(flags))
    lowered = {flag.lower() for flag in flag_list}
    values: dict[str, Any] = {column: flag.lower() in lowered for flag, column in FLAG_COLUMNS.items()}
    values["flags"] = flag_list
    return values


def apply_flag_delta(flags: Iterable[str], add: Iterable[str], remove: Iterable[str]) -> list[str]:
    """``flags`` with ``remove`` taken out and ``add`` put in (case-insensitively, no duplicates), sorted.

    The same result as the server's ``-FLAGS`` then ``+FLAGS`` (RFC 3501 section 6.4.6) on that list.
    """
    removed = {flag.lower() for flag in remove}
    result = {flag.lower(): flag for flag in flags if flag.lower() not in removed}
    for flag in add:
        result.setdefault(flag.lower(), flag)
    return sorted(result.values())


def same_flags(left: Iterable[str], right: Iterable[str]) -> bool:
    """True when both lists hold the same flags, compared case-insensitively."""
    return {flag.lower() for flag in left} == {flag.lower() for flag in right}
