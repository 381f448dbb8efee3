"""Errors of the wire adapters (IMAP, POP3, SMTP), grouped by what the caller should do.

Each carries the server's evidence: reply code and text where the protocol has them.  They derive from
:class:`email_service.errors.EmailServiceError` through :class:`ProtocolError` so that the API can map them.
"""

from __future__ import annotations

from email_service.errors import EmailServiceError


class ProtocolError(EmailServiceError):
    """Root of wire-adapter errors (502 at the API: the peer, not the caller, failed)."""

    status = 502
    kind = "Mail server error"

    def __init__(self, message: str, *, code: int | None = None, server_text: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.server_text = server_text


class ConnectionFailed(ProtocolError):
    """TCP/TLS connection could not be made or was dropped; retry later or reconnect."""


class TLSError(ConnectionFailed):
    """TLS handshake or certificate verification failed, or STARTTLS is not offered; fix the server/CA."""


class AuthenticationFailed(ProtocolError):
    """The server refused the credentials; fix the credentials, do not retry."""


class TemporaryFailure(ProtocolError):
    """The server answered with a transient failure (e.g. SMTP 4xx); retry later."""


class PermanentFailure(ProtocolError):
    """The server answered with a permanent failure (e.g. SMTP 5xx); do not retry."""


class MailboxError(ProtocolError):
    """A mailbox operation failed (no such folder, SELECT refused, UIDVALIDITY problem)."""


class HostNotAllowed(ProtocolError):
    """The host resolves to an address the host policy refuses (loopback, private, link-local ...); nothing was
    dialled.  Fix the host or the allow-list; do not retry (DESIGN.md sections 2 and 10).

    Attributes:
        host: the host as the caller gave it.
        address: the refused address (text), one of those the host resolved to.
        reason: why the address is refused, e.g. ``"private (RFC 1918)"``.
    """

    status = 400
    kind = "Invalid request"

    def __init__(self, message: str, *, host: str, address: str, reason: str) -> None:
        super().__init__(message)
        self.host = host
        self.address = address
        self.reason = reason
