"""TLS client contexts for mail peers (IMAP, POP3, SMTP).

Every TLS connection verifies the server certificate and host name (DESIGN.md section 2); extra trusted CAs come
from a PEM bundle (setting ``MAIL_CA_BUNDLE``) added to the system store, never replacing verification.
"""

from __future__ import annotations

import functools
import ssl


@functools.lru_cache(maxsize=16)
def client_ssl_context(ca_bundle: str | None = None) -> ssl.SSLContext:
    """Return a verifying client context (TLS >= 1.2, hostname check on).

    Args:
        ca_bundle: path of a PEM file of extra trusted CA certificates, or ``None`` for the system store only.

    Raises:
        FileNotFoundError / ssl.SSLError: the bundle cannot be read.
    """
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca_bundle:
        context.load_verify_locations(cafile=ca_bundle)
    return context
