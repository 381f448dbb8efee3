"""POP3 wire adapter (RFC 1939, RFC 2595 STLS, RFC 8314 implicit TLS) over the stdlib ``poplib``.

Only what the service needs so far: log in and report the mailbox size.  ``poplib`` dials only through the
guarded connector (:mod:`email_service.protocols.net`, its ``_create_socket`` overridden for POP3 and POP3_SSL)
under the endpoint's host policy; certificates are always verified against the host name.
"""

from __future__ import annotations

import contextlib
import poplib
import socket
import ssl
from dataclasses import dataclass, field

from email_service.protocols.errors import AuthenticationFailed, ConnectionFailed, TLSError
from email_service.protocols.net import PUBLIC_ONLY, HostPolicy, open_tcp, open_tls
from email_service.protocols.tls import client_ssl_context, tls_error


@dataclass(frozen=True)
class Pop3Endpoint:
    """Where and how to log in: ``encryption`` is ``none`` | ``tls`` (implicit, port 995) | ``starttls`` (STLS).

    ``host_policy`` says which non-public hosts may be dialled (default none, the production rule).
    """

    host: str
    port: int
    encryption: str
    username: str
    password: str = field(repr=False)
    ca_bundle: str | None = None
    timeout: float = 30.0
    host_policy: HostPolicy = PUBLIC_ONLY


class _GuardedPOP3(poplib.POP3):
    """``poplib.POP3`` on a checked socket (STLS may upgrade it, verified against the name)."""

    def __init__(self, endpoint: Pop3Endpoint) -> None:
        self._host_policy = endpoint.host_policy
        super().__init__(endpoint.host, endpoint.port, timeout=endpoint.timeout)

    def _create_socket(self, timeout: float) -> socket.socket:
        return open_tcp(self.host, self.port, policy=self._host_policy, timeout=timeout)


class _GuardedPOP3SSL(poplib.POP3_SSL):
    """``poplib.POP3_SSL`` (implicit TLS) on a checked socket."""

    def __init__(self, endpoint: Pop3Endpoint, context: ssl.SSLContext) -> None:
        self._host_policy = endpoint.host_policy
        self._tls_context = context
        super().__init__(endpoint.host, endpoint.port, timeout=endpoint.timeout, context=context)

    def _create_socket(self, timeout: float) -> socket.socket:
        return open_tls(self.host, self.port, policy=self._host_policy, timeout=timeout, context=self._tls_context)


def _connect(endpoint: Pop3Endpoint) -> poplib.POP3:
    if endpoint.encryption == "tls":
        return _GuardedPOP3SSL(endpoint, client_ssl_context(endpoint.ca_bundle))
    client = _GuardedPOP3(endpoint)
    if endpoint.encryption == "starttls":
        try:
            client.stls(context=client_ssl_context(endpoint.ca_bundle))
        except BaseException as exc:
            with contextlib.suppress(OSError):  # a failed handshake leaves a detached socket: EBADF on close
                client.close()
            if isinstance(exc, poplib.error_proto):
                raise TLSError(f"POP3 server refused STLS: {exc}") from None
            raise
    return client


def pop3_check_login(endpoint: Pop3Endpoint) -> int:
    """Log in and return the number of messages in the maildrop (STAT).

    Raises:
        HostNotAllowed: the host is refused by ``endpoint.host_policy``; nothing was dialled.
        TLSError: certificate or handshake failure, STLS refused, CA bundle unreadable.
        AuthenticationFailed: USER/PASS refused (the server's text is kept).
        ConnectionFailed: DNS, refused, timeout, dropped connection.
    """
    try:
        client = _connect(endpoint)
    except ssl.SSLError as exc:
        raise tls_error(exc, f"POP3 server {endpoint.host}:{endpoint.port}") from None
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
