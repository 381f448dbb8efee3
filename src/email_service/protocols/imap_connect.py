"""``imapclient`` dialling only through the guarded connector (:mod:`email_service.protocols.net`).

:class:`GuardedIMAPClient` overrides imapclient's IMAP4 factory (``_create_IMAP4``; imapclient is pinned) so that
the socket of plain IMAP and of implicit TLS (RFC 8314) comes from :func:`~email_service.protocols.net.open_tcp`
/ :func:`~email_service.protocols.net.open_tls`; STARTTLS (RFC 3501 section 6.2.1) wraps that same socket with
``server_hostname`` = the host name (imaplib's ``starttls``), so TLS is always verified against the name.
"""

from __future__ import annotations

import imaplib
import socket
import ssl

from imapclient import IMAPClient

from email_service.protocols.net import HostPolicy, open_tcp, open_tls

__all__ = ["GuardedIMAPClient"]


class _GuardedIMAP4(imaplib.IMAP4):
    """Plain IMAP4 whose socket is a checked one (STARTTLS may upgrade it later)."""

    def __init__(self, host: str, port: int, timeout: float | None, policy: HostPolicy) -> None:
        self._host_policy = policy
        super().__init__(host, port, timeout=timeout)

    def _create_socket(self, timeout: float | None = None) -> socket.socket:
        return open_tcp(self.host, self.port, policy=self._host_policy, timeout=timeout)


class _GuardedIMAP4TLS(imaplib.IMAP4):
    """IMAP4 over implicit TLS on a checked socket (as imapclient's ``IMAP4_TLS``)."""

    def __init__(
        self, host: str, port: int, timeout: float | None, policy: HostPolicy, context: ssl.SSLContext
    ) -> None:
        self._host_policy = policy
        self.ssl_context = context
        super().__init__(host, port, timeout=timeout)

    def _create_socket(self, timeout: float | None = None) -> socket.socket:
        return open_tls(self.host, self.port, policy=self._host_policy, timeout=timeout, context=self.ssl_context)


class GuardedIMAPClient(IMAPClient):  # type: ignore[misc]  # imapclient is untyped
    """:class:`imapclient.IMAPClient` that dials through the guarded connector under ``policy``.

    Args as ``IMAPClient`` (``ssl`` = implicit TLS, which then needs ``ssl_context``), plus ``policy``.

    Raises:
        HostNotAllowed: the host is refused by ``policy``; nothing was dialled.
        OSError / ssl.SSLError / imaplib errors: as ``IMAPClient``.
    """

    def __init__(
        self,
        host: str,
        *,
        port: int,
        ssl: bool,
        ssl_context: ssl.SSLContext | None,
        timeout: float | None,
        policy: HostPolicy,
    ) -> None:
        if ssl and ssl_context is None:
            raise ValueError("implicit TLS needs a verifying ssl_context")
        self._host_policy = policy
        super().__init__(host, port=port, ssl=ssl, ssl_context=ssl_context, timeout=timeout)

    def _create_IMAP4(self) -> imaplib.IMAP4:
        connect_timeout = self._timeout.connect
        if self.ssl:
            assert self.ssl_context is not None
            return _GuardedIMAP4TLS(self.host, self.port, connect_timeout, self._host_policy, self.ssl_context)
        return _GuardedIMAP4(self.host, self.port, connect_timeout, self._host_policy)
