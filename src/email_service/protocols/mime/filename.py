"""File names of attachments: made safe to store and to hand to a browser (RFC 6266, RFC 8187).

* :func:`safe_filename` -- what an uploaded file is called, and what a download offers: no folder parts, no
  control, bidirectional-override or line-separator characters (a name like ``invoice\\u202egpj.exe`` shows as
  ``invoiceexe.jpg``), no NUL, no leading dots or trailing dots/spaces, NFC-normalised, at most
  :data:`MAX_FILENAME_BYTES` bytes of UTF-8 with the extension kept when it is cut.
* :func:`content_disposition` -- the ``Content-Disposition`` header of a download: an ASCII ``filename``
  fallback and the exact name as ``filename*=UTF-8''...`` (RFC 6266 section 4.3, RFC 8187 section 3.2).
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import quote

#: Longest name in bytes of UTF-8: what common file systems store (ext4, APFS, NTFS in UTF-16 units).
MAX_FILENAME_BYTES = 255
#: Name used when nothing is left of the given one.
FALLBACK_NAME = "attachment"
_BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_DROP = re.compile(f"[\\x00-\\x1f\\x7f-\\x9f{_BIDI}\u2028\u2029\ufeff\ufff9-\ufffb\ud800-\udfff]")
_WINDOWS_RESERVED = re.compile(r"^(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?$", re.IGNORECASE)
_NOT_ASCII_SAFE = re.compile(r"[^A-Za-z0-9 !#$&+,\-.;=@\[\]^_`{}~()\']")
_MAX_EXTENSION = 16


def _cut(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` bytes of UTF-8, never inside a character."""
    data = text.encode("utf-8")
    return text if len(data) <= limit else data[:limit].decode("utf-8", "ignore")


def safe_filename(name: str | None, *, default_extension: str = "") -> str:
    """A file name safe to store and to offer for download (see the module docstring).

    Args:
        name: the name as given (by a client, or decoded from a mail's parameters); ``None`` or nothing usable
            gives :data:`FALLBACK_NAME` plus ``default_extension`` (e.g. ``".pdf"``).
    """
    text = unicodedata.normalize("NFC", name or "")
    text = text.replace("\\", "/").rsplit("/", 1)[-1]  # folder parts of either kind of path
    text = _DROP.sub("", re.sub(r"[\t\n\v\f\r\u2028\u2029]", " ", text))  # line breaks and tabs: spaces
    text = " ".join(text.split())
    text = text.lstrip(". ").rstrip(". ")
    if _WINDOWS_RESERVED.match(text):
        text = f"_{text}"
    if not text:
        text = FALLBACK_NAME + default_extension
    stem, dot, extension = text.rpartition(".")
    if not dot or not stem or len(extension) > _MAX_EXTENSION:
        stem, extension = text, ""
    suffix = f".{extension}" if extension else ""
    if len(text.encode("utf-8")) > MAX_FILENAME_BYTES:
        text = _cut(stem, MAX_FILENAME_BYTES - len(suffix.encode("utf-8"))).rstrip(". ") + suffix
    return text


def ascii_fallback(name: str) -> str:
    """The ``filename`` parameter for clients without RFC 8187 support: accents stripped (NFKD), every other
    non-ASCII or quoting character replaced by ``_``."""
    decomposed = unicodedata.normalize("NFKD", name)
    ascii_only = "".join(c for c in decomposed if not unicodedata.combining(c))
    return _NOT_ASCII_SAFE.sub("_", ascii_only) or FALLBACK_NAME


def content_disposition(name: str, *, inline: bool = False) -> str:
    """``inline`` or ``attachment`` with ``filename="<ASCII fallback>"; filename*=UTF-8''<percent-encoded>``
    (RFC 6266 section 4.3: a recipient that understands ``filename*`` prefers it).  ``name`` must already be
    :func:`safe_filename`."""
    kind = "inline" if inline else "attachment"
    fallback = ascii_fallback(name)
    if fallback == name:
        return f'{kind}; filename="{name}"'
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"
