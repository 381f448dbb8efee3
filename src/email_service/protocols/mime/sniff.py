"""The type of a file from its bytes (libmagic through python-magic; Debian package ``libmagic1``), never from the
name or the type a client claims (seed 004 MIME checks)."""

from __future__ import annotations

import magic

#: Bytes libmagic is shown: enough for the container formats it looks inside (OOXML, ODF, MP4).
SNIFF_BYTES = 64 * 1024


def sniff_mime_type(head: bytes) -> str:
    """The MIME type (``type/subtype``, lowercase) libmagic finds in the first :data:`SNIFF_BYTES` of a file."""
    found = magic.from_buffer(head[:SNIFF_BYTES], mime=True)
    return str(found).strip().lower() or "application/octet-stream"


def type_allowed(mime_type: str, allowed: tuple[str, ...]) -> bool:
    """True if ``mime_type`` is in ``allowed`` (``ALLOWED_MIME_TYPES``), where ``type/*`` admits a whole type."""
    major = mime_type.split("/", 1)[0]
    return mime_type in allowed or f"{major}/*" in allowed
