"""POP3 wire adapter (RFC 1939, RFC 2595 STLS, RFC 8314 implicit TLS) over the stdlib ``poplib``.


:class:`Pop3Session` is one authenticated connection of one account: it lists the maildrop by unique-id
(``UIDL``) and retrieves messages (``RETR``).  It never deletes (no ``DELE``): mirroring leaves the mail on the
server.  ``poplib`` dials only through the guarded connector (:mod:`email_service.protocols.net`, its
``_create_socket`` overridden for POP3 and POP3_SSL) under the endpoint's host policy; certificates are always
verified against the host name.  Every failure is one of :mod:`email_service.protocols.errors` with the server's
text as evidence and never the password.
"""

from __future__ import annotations

import contextlib
import poplib
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from email_service.protocols.errors import (
    AuthenticationFailed,
    CapabilityMissing,
    ConnectionFailed,
    ProtocolError,
    TLSError,
)
from email_service.protocols.net import PUBLIC_ONLY, HostPolicy, open_tcp, open_tls
from email_service.protocols.tls import client_ssl_context, tls_error

#: Longest response line accepted (octets).  poplib's own limit is 2,048, but mail in the wild breaks RFC 5322's
#: 998 (long HTML lines), and one such message must not make a maildrop unreadable.
MAX_LINE = 1 << 20


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


class _LongLines:
    """``poplib`` line reading with :data:`MAX_LINE` instead of 2,048 octets (same CRLF/LF handling)."""

    file: Any

    def _getline(self) -> tuple[bytes, int]:
        line: bytes = self.file.readline(MAX_LINE + 1)
        if len(line) > MAX_LINE:
            raise poplib.error_proto("line too long")
        if not line:
            raise poplib.error_proto("-ERR EOF")
        return line.rstrip(b"\r\n"), len(line)


class _GuardedPOP3(_LongLines, poplib.POP3):
    """``poplib.POP3`` on a checked socket (STLS may upgrade it, verified against the name), long lines allowed."""

    def __init__(self, endpoint: Pop3Endpoint) -> None:
        self._host_policy = endpoint.host_policy
        super().__init__(endpoint.host, endpoint.port, timeout=endpoint.timeout)

    def _create_socket(self, timeout: float) -> socket.socket:
        return open_tcp(self.host, self.port, policy=self._host_policy, timeout=timeout)


class _GuardedPOP3SSL(_LongLines, poplib.POP3_SSL):
    """``poplib.POP3_SSL`` (implicit TLS) on a checked socket, long lines allowed."""

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


def _reply_text(exc: poplib.error_proto) -> str:
    arg = exc.args[0] if exc.args else ""
    return arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(arg)


class Pop3Session:
    """One POP3 connection for one :class:`Pop3Endpoint`; use as a context manager (connects and logs in, then
    QUIT).  Not thread-safe.  Message numbers are those of this session's maildrop (RFC 1939 section 5)."""

    def __init__(self, endpoint: Pop3Endpoint) -> None:
        self.endpoint = endpoint
        self._client: poplib.POP3 | None = None

    def __enter__(self) -> Self:
        self.connect()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @contextlib.contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """Transport failures (and a broken reply stream) drop the connection as :class:`ConnectionFailed` or
        :class:`TLSError`; a ``-ERR`` answer becomes :class:`ProtocolError` with the server's text."""
        where = f"POP3 server {self.endpoint.host}:{self.endpoint.port}"
        try:
            yield
        except ProtocolError:
            raise
        except ssl.SSLError as exc:
            self._drop()
            raise tls_error(exc, where, action) from None
        except OSError as exc:
            self._drop()
            raise ConnectionFailed(f"Network error with {where} while {action}: {exc}") from None
        except poplib.error_proto as exc:
            text = _reply_text(exc)
            if isinstance(exc.args[0] if exc.args else None, str):  # poplib's own: EOF, overlong line
                self._drop()
                raise ConnectionFailed(f"The connection to {where} broke while {action}: {text}") from None
            raise ProtocolError(f"{where} refused {action}: {text}", server_text=text) from None

    def _require(self) -> poplib.POP3:
        if self._client is None:
            raise ConnectionFailed("The POP3 session is not connected; call connect() first.")
        return self._client

    def connect(self) -> None:
        """Connect, secure (implicit TLS or STLS) and log in with USER/PASS.  Idempotent.

        Raises:
            HostNotAllowed: the host is refused by ``endpoint.host_policy``; nothing was dialled.
            TLSError: certificate or handshake failure, STLS refused, CA bundle unreadable.
            AuthenticationFailed: USER/PASS refused (the server's text is kept).
            ConnectionFailed: DNS, refused, timeout, dropped connection.
        """
        if self._client is not None:
            return
        endpoint = self.endpoint
        with self._errors("connecting"):
            client = _connect(endpoint)
        self._client = client
        try:
            client.user(endpoint.username)
            client.pass_(endpoint.password)
        except poplib.error_proto as exc:
            self._drop()
            text = _reply_text(exc)
            raise AuthenticationFailed(f"POP3 login failed: {text}", server_text=text) from None
        except BaseException:
            self._drop()
            raise

    def stat(self) -> int:
        """Number of messages in the maildrop (STAT)."""
        client = self._require()
        with self._errors("reading the maildrop size"):
            count, _size = client.stat()
        return int(count)

    def uidl(self) -> dict[int, str]:
        """``{message number: unique-id}`` of the whole maildrop (UIDL, RFC 1939 section 7).

        Raises:
            CapabilityMissing: the server answers ``-ERR`` to UIDL (it is optional in RFC 1939).
            ConnectionFailed: the connection broke.
        """
        client = self._require()
        try:
            with self._errors("listing unique-ids"):
                _response, lines, _octets = client.uidl()
        except ProtocolError as exc:
            raise CapabilityMissing(
                f"POP3 server {self.endpoint.host} does not support UIDL (RFC 1939 section 7), which mirroring "
                f"needs to tell messages apart: {exc.server_text}",
                server_text=exc.server_text,
            ) from None
        listing: dict[int, str] = {}
        for line in lines:
            number, _, unique_id = line.decode("ascii", "replace").strip().partition(" ")
            if number.isdigit() and unique_id.strip():
                listing[int(number)] = unique_id.strip()
        return listing

    def retr(self, number: int) -> bytes | None:
        """The message ``number`` as RFC 5322 bytes (CRLF line ends, dot-stuffing undone), or ``None`` when the
        server answers ``-ERR`` (e.g. it was deleted by another session).  Raises :class:`ConnectionFailed`."""
        client = self._require()
        try:
            with self._errors(f"retrieving message {number}"):
                _response, lines, _octets = client.retr(number)
        except ConnectionFailed:
            raise
        except ProtocolError:
            return None
        return b"\r\n".join(lines) + b"\r\n"

    def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()

    def close(self) -> None:
        """QUIT (nothing is marked deleted, so nothing is removed) and close; never raises, idempotent."""
        client, self._client = self._client, None
        if client is None:
            return
        try:
            client.quit()
        except (OSError, poplib.error_proto):
            with contextlib.suppress(Exception):
                client.close()


def pop3_check_login(endpoint: Pop3Endpoint) -> int:
    """Log in and return the number of messages in the maildrop (STAT).

    Raises:
        HostNotAllowed: the host is refused by ``endpoint.host_policy``; nothing was dialled.
        TLSError: certificate or handshake failure, STLS refused, CA bundle unreadable.
        AuthenticationFailed: USER/PASS refused (the server's text is kept).
        ConnectionFailed: DNS, refused, timeout, dropped connection.
    """
    with Pop3Session(endpoint) as session:
        return session.stat()
