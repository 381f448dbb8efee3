"""POP3 wire adapter (RFC 1939, RFC 2595 STLS, RFC 8314 implicit TLS) over the stdlib ``poplib``.

Only what the service needs so far: log in and report the mailbox size.  Certificates are always verified.
"""

from __future__ import annotations

import poplib
import ssl
from dataclasses import dataclass, field

from email_service.protocols.errors import AuthenticationFailed, ConnectionFailed, TLSError
from email_service.protocols.tls import client_ssl_context


@dataclass(frozen=True)
class Pop3Endpoint:
    """Where and how to log in: ``encryption`` is ``none`` | ``tls`` (implicit, port 995) | ``starttls`` (STLS)."""

    host: str
    port: int
    encryption: str
    username: str
    password: str = field(repr=False)
    ca_bundle: str | None = None
    timeout: float = 30.0


def _connect(endpoint: Pop3Endpoint) -> poplib.POP3:
    context = client_ssl_context(endpoint.ca_bundle)
    if endpoint.encryption == "tls":
        return poplib.POP3_SSL(endpoint.host, endpoint.port, timeout=endpoint.timeout, context=context)
    client = poplib.POP3(endpoint.host, endpoint.port, timeout=endpoint.timeout)
    if endpoint.encryption == "starttls":
        try:
            client.stls(context=context)
        except poplib.error_proto as exc:
            client.close()
            raise TLSError(f"POP3 server refused STLS: {exc}") from None
    return client


def pop3_check_login(endpoint: Pop3Endpoint) -> int:
    """Log in and return the number of messages in the maildrop (STAT).

    Raises:
        TLSError: certificate or handshake failure, STLS refused.
        AuthenticationFailed: USER/PASS refused (the server's text is kept).
        ConnectionFailed: DNS, refused, timeout, dropped connection.
    """
    try:
        client = _connect(endpoint)
    except ssl.SSLError as exc:
        raise TLSError(f"TLS failure talking to {endpoint.host}:{endpoint.port}: {exc.reason or exc}") from None
    except (TimeoutError, OSError) as exc:
        raise ConnectionFailed(f"Cannot connect to {endpoint.host}:{endpoint.port}: {exc}") from None
    try:
        try:
            client.user(endpoint.username)
            client.pass_(endpoint.password)
        except poplib.error_proto as exc:
            text = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
            raise AuthenticationFailed(f"POP3 login failed: {text}", server_text=text) from None
        count, _size = client.stat()
        return int(count)
    except (OSError, poplib.error_proto) as exc:
        raise ConnectionFailed(f"POP3 session with {endpoint.host} failed: {exc}") from None
    finally:
        try:
            client.quit()
        except (OSError, poplib.error_proto):
            client.close()
