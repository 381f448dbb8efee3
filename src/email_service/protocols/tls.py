"""TLS client contexts for mail peers (IMAP, POP3, SMTP) and the one way their TLS failures are told.

Every TLS connection verifies the server certificate and host name (DESIGN.md section 2); extra trusted CAs come
from a PEM bundle (setting ``MAIL_CA_BUNDLE``) added to the system store, never replacing verification.
"""

from __future__ import annotations

import functools
import ssl

from email_service.protocols.errors import TLSError

#: OpenSSL verify results meaning "the chain does not end at a CA this process trusts" (X509_V_ERR_*
#: UNABLE_TO_GET_ISSUER_CERT, DEPTH_ZERO_SELF_SIGNED_CERT, SELF_SIGNED_CERT_IN_CHAIN,
#: UNABLE_TO_GET_ISSUER_CERT_LOCALLY, UNABLE_TO_VERIFY_LEAF_SIGNATURE).
UNKNOWN_CA_VERIFY_CODES = frozenset({2, 18, 19, 20, 21})


def client_ssl_context(ca_bundle: str | None = None) -> ssl.SSLContext:
    """Return a verifying client context (TLS >= 1.2, certificate and host name checked).

    Args:
        ca_bundle: path of a PEM file of extra trusted CA certificates, or ``None`` for the system store only.

    Raises:
        TLSError: the bundle cannot be read or holds no certificate.
    """
    try:
        return _client_ssl_context(ca_bundle)
    except (OSError, ssl.SSLError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise TLSError(f"The CA bundle {ca_bundle!r} (MAIL_CA_BUNDLE) cannot be read: {reason}") from None


@functools.lru_cache(maxsize=16)
def _client_ssl_context(ca_bundle: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca_bundle:
        context.load_verify_locations(cafile=ca_bundle)
    return context


def tls_error(exc: ssl.SSLError, peer: str, action: str = "connecting") -> TLSError:
    """The :class:`TLSError` for a failed TLS handshake or certificate check with ``peer``.

    Args:
        exc: what ``ssl`` raised.
        peer: who, e.g. ``"IMAP server imap.example.com:993"``.
        action: what was being done, e.g. ``"starting TLS"``.

    A certificate from a CA this process does not trust says that ``MAIL_CA_BUNDLE`` (a PEM file of extra trusted
    CAs) makes the service trust it; a host name mismatch and other verification failures give OpenSSL's reason.
    """
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = (exc.verify_message or exc.reason or "verification failed").rstrip(".")
        message = f"The TLS certificate of {peer} could not be verified ({reason})"
        if exc.verify_code in UNKNOWN_CA_VERIFY_CODES:
            return TLSError(
                f"{message}: it is issued by a certificate authority this service does not trust.  If you trust "
                "that CA, add its certificate to the PEM file named by the MAIL_CA_BUNDLE setting."
            )
        return TLSError(f"{message}.")
    return TLSError(f"The TLS handshake with {peer} failed while {action} ({exc.reason or exc}).")
