"""Open one ready-to-send SMTP connection: TCP, TLS, EHLO, AUTH (RFC 5321, 3207, 4954, 8314).

Used by :class:`email_service.protocols.smtp_pool.SMTPConnectionPool` and
:class:`email_service.protocols.smtp.SMTPProtocolHandler`.  smtplib dials only through the guarded connector
(:mod:`email_service.protocols.net`: its ``_get_socket`` is overridden for SMTP and SMTP_SSL), under the
:class:`~email_service.protocols.net.HostPolicy` of the connection settings.  TLS always verifies the server
certificate and host *name* through :func:`email_service.protocols.tls.client_ssl_context`; STARTTLS that the
server does not offer is a :class:`TLSError`, never a silent fall back to plaintext.  Library exceptions are
mapped to :mod:`email_service.protocols.errors` by :func:`map_smtp_error`.
"""

from __future__ import annotations

import base64
import functools
import logging
import smtplib
import socket
import ssl
from dataclasses import dataclass
from typing import cast

from email_service.protocols.errors import (
    AuthenticationFailed,
    ConnectionFailed,
    PermanentFailure,
    ProtocolError,
    TemporaryFailure,
    TLSError,
)
from email_service.protocols.net import PUBLIC_ONLY, HostPolicy, open_tcp, open_tls
from email_service.protocols.smtp_types import SMTPEncryption
from email_service.protocols.tls import client_ssl_context, tls_error

__all__ = [
    "SMTPConnectionSettings",
    "XOAuth2",
    "close_quietly",
    "map_smtp_error",
    "open_connection",
    "reply_text",
]

_WIRE_ERRORS = (smtplib.SMTPException, OSError)

log = logging.getLogger(__name__)

_MASK = "***"


@dataclass(frozen=True, repr=False)
class SMTPConnectionSettings:
    """Everything needed to open one authenticated connection.

    Attributes:
        host, port: the submission server (RFC 6409 / RFC 8314).
        encryption: see :class:`SMTPEncryption`.
        username: AUTH identity, or ``None`` for no AUTH.
        password: AUTH PLAIN/LOGIN secret (masked in ``repr``).
        oauth2_token: OAuth 2.0 bearer token for ``AUTH XOAUTH2``; used instead of the password when set
            (masked).
        account_id: the mail account this connection belongs to (part of the pool identity).
        ca_bundle: PEM file of extra trusted CAs, or ``None`` for the system store.
        timeout: socket timeout in seconds for connect and every command.
        local_hostname: EHLO name; ``None`` means this host's FQDN (looked up once per process).
        host_policy: which non-public hosts may be dialled (default: none; DESIGN.md section 2).
    """

    host: str
    port: int
    encryption: SMTPEncryption
    username: str | None = None
    password: str | None = None
    oauth2_token: str | None = None
    account_id: str | None = None
    ca_bundle: str | None = None
    timeout: float = 30.0
    local_hostname: str | None = None
    host_policy: HostPolicy = PUBLIC_ONLY

    def __repr__(self) -> str:
        return (
            f"SMTPConnectionSettings(host={self.host!r}, port={self.port}, "
            f"encryption={self.encryption.value!r}, "
            f"username={self.username!r}, password={_MASK if self.password is not None else None!r}, "
            f"oauth2_token={_MASK if self.oauth2_token is not None else None!r}, "
            f"account_id={self.account_id!r}, ca_bundle={self.ca_bundle!r}, timeout={self.timeout})"
        )

    __str__ = __repr__

    @property
    def endpoint(self) -> str:
        """``host:port`` for messages and logs."""
        return f"{self.host}:{self.port}"


class XOAuth2:
    """``authobject`` for :meth:`smtplib.SMTP.auth` implementing Google/Microsoft ``XOAUTH2``.

    The initial client response is ``"user=<user>\\x01auth=Bearer <token>\\x01\\x01"`` (smtplib base64-encodes
    it). When the server answers 334 with a base64 JSON error, the client sends an empty response and the
    server then replies 535 (https://developers.google.com/gmail/imap/xoauth2-protocol).  Secrets are not in
    ``repr``.
    """

    def __init__(self, user: str, token: str) -> None:
        self._user = user
        self._token = token

    def __call__(self, challenge: bytes | None = None) -> str:
        if challenge is None:
            return f"user={self._user}\x01auth=Bearer {self._token}\x01\x01"
        return ""

    def __repr__(self) -> str:
        return f"XOAuth2(user={self._user!r}, token={_MASK!r})"


def reply_text(raw: bytes | str | None) -> str:
    """A server reply as text (UTF-8, undecodable bytes replaced)."""
    if raw is None:
        return ""
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw


def map_smtp_error(exc: BaseException, what: str) -> ProtocolError:
    """Map a library exception raised while ``what`` (a short phrase with the endpoint) to a protocol error.

    ssl errors -> :class:`TLSError`; ``SMTPAuthenticationError`` -> :class:`AuthenticationFailed`;
    ``SMTPServerDisconnected``, ``SMTPConnectError``, ``OSError`` -> :class:`ConnectionFailed`; other replies
    -> :class:`TemporaryFailure` (4xx) or :class:`PermanentFailure` (5xx); anything else ->
    :class:`ProtocolError`. Reply code and text are kept as ``code`` / ``server_text``.
    """
    if isinstance(exc, ProtocolError):
        return exc
    if isinstance(exc, ssl.SSLError):
        return tls_error(exc, "the SMTP server", what)
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        text = reply_text(exc.smtp_error)
        return AuthenticationFailed(
            f"Authentication refused while {what}: {exc.smtp_code} {text}",
            code=exc.smtp_code,
            server_text=text,
        )
    if isinstance(exc, smtplib.SMTPResponseException):
        code, text = exc.smtp_code, reply_text(exc.smtp_error)
        message = f"Server replied {code} {text} while {what}"
        if isinstance(exc, smtplib.SMTPConnectError) or code == 421:
            return ConnectionFailed(message, code=code, server_text=text)
        kind = TemporaryFailure if 400 <= code < 500 else PermanentFailure if code >= 500 else ProtocolError
        return kind(message, code=code, server_text=text)
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return ConnectionFailed(f"Server disconnected while {what}")
    if isinstance(exc, OSError):
        return ConnectionFailed(f"Connection failed while {what}: {exc.strerror or exc.__class__.__name__}")
    return ProtocolError(f"SMTP error while {what}: {exc}")


@functools.lru_cache(maxsize=1)
def _default_local_hostname() -> str:
    return socket.getfqdn() or "localhost"


class _GuardedSMTP(smtplib.SMTP):
    """``smtplib.SMTP`` whose socket comes from the guarded connector."""

    def __init__(self, settings: SMTPConnectionSettings, local_hostname: str) -> None:
        self._host_policy = settings.host_policy
        super().__init__(settings.host, settings.port, local_hostname=local_hostname, timeout=settings.timeout)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        source = cast(tuple[str, int] | None, self.source_address)
        return open_tcp(host, port, policy=self._host_policy, timeout=timeout, source_address=source)


class _GuardedSMTPSSL(smtplib.SMTP_SSL):
    """``smtplib.SMTP_SSL`` (implicit TLS, RFC 8314 section 3.3) on a socket from the guarded connector."""

    def __init__(self, settings: SMTPConnectionSettings, local_hostname: str) -> None:
        self._host_policy = settings.host_policy
        context = client_ssl_context(settings.ca_bundle)
        super().__init__(
            settings.host, settings.port, local_hostname=local_hostname, timeout=settings.timeout, context=context
        )

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        return open_tls(host, port, policy=self._host_policy, timeout=timeout, context=self.context)


def _connect(settings: SMTPConnectionSettings) -> smtplib.SMTP:
    local_hostname = settings.local_hostname or _default_local_hostname()
    if settings.encryption is SMTPEncryption.IMPLICIT_SSL:
        return _GuardedSMTPSSL(settings, local_hostname)
    return _GuardedSMTP(settings, local_hostname)


def _start_tls(conn: smtplib.SMTP, settings: SMTPConnectionSettings) -> None:
    conn.ehlo()
    if not conn.has_extn("starttls"):
        raise TLSError(f"{settings.endpoint} does not offer STARTTLS; refusing to continue in plaintext")
    code, text = conn.starttls(context=client_ssl_context(settings.ca_bundle))
    if code != 220:
        raise TLSError(
            f"{settings.endpoint} refused STARTTLS: {code} {reply_text(text)}",
            code=code,
            server_text=reply_text(text),
        )
    conn.ehlo()  # RFC 3207 section 4.2: forget what was learnt before TLS


def _auth_plain(conn: smtplib.SMTP, username: str, password: str) -> None:
    # RFC 4616: authzid NUL authcid NUL passwd, UTF-8 (smtplib's own PLAIN only handles ASCII).
    token = base64.b64encode(f"\0{username}\0{password}".encode()).decode("ascii")
    code, text = conn.docmd("AUTH", f"PLAIN {token}")
    if code not in (235, 503):
        raise smtplib.SMTPAuthenticationError(code, text)


def _authenticate(conn: smtplib.SMTP, settings: SMTPConnectionSettings) -> None:
    username = settings.username
    if username is None or (settings.password is None and settings.oauth2_token is None):
        return
    if not conn.has_extn("auth"):
        raise AuthenticationFailed(f"{settings.endpoint} does not offer AUTH (RFC 4954)")
    mechanisms = conn.esmtp_features.get("auth", "").upper().split()
    if settings.oauth2_token is not None:
        if "XOAUTH2" not in mechanisms:
            raise AuthenticationFailed(f"{settings.endpoint} does not offer AUTH XOAUTH2")
        conn.auth("XOAUTH2", XOAuth2(username, settings.oauth2_token), initial_response_ok=True)
    elif "PLAIN" in mechanisms:
        assert settings.password is not None
        _auth_plain(conn, username, settings.password)
    else:
        assert settings.password is not None
        try:
            conn.login(username, settings.password)
        except UnicodeEncodeError:
            raise AuthenticationFailed(
                f"{settings.endpoint} offers no AUTH PLAIN, and LOGIN cannot carry non-ASCII credentials"
            ) from None


def open_connection(settings: SMTPConnectionSettings) -> smtplib.SMTP:
    """Connect, secure and authenticate; return an :class:`smtplib.SMTP` ready for ``MAIL FROM``.

    Steps: TCP connect (implicit TLS for ``IMPLICIT_SSL``, RFC 8314 section 3.3) and greeting; EHLO; STARTTLS
    and EHLO again for ``STARTTLS`` (RFC 3207); AUTH when a username and a password or token are configured:
    XOAUTH2 with ``oauth2_token``, else PLAIN (RFC 4616, UTF-8) when offered, else smtplib's LOGIN/CRAM-MD5.

    Raises:
        HostNotAllowed: the host is refused by ``settings.host_policy``; nothing was dialled.
        TLSError: certificate/host name verification failed, STARTTLS not offered or refused, CA bundle
            unreadable.
        AuthenticationFailed: 535 and other AUTH refusals, or no usable mechanism.
        ConnectionFailed: TCP failure, timeout, disconnect, 421 or a bad greeting.
        ProtocolError: any other unexpected reply.
    """
    what = f"connecting to {settings.endpoint}"
    peer = f"SMTP server {settings.endpoint}"
    try:
        conn = _connect(settings)
    except ssl.SSLError as exc:
        raise tls_error(exc, peer) from exc
    except _WIRE_ERRORS as exc:
        raise map_smtp_error(exc, what) from exc
    try:
        if settings.encryption is SMTPEncryption.STARTTLS:
            _start_tls(conn, settings)
        else:
            conn.ehlo_or_helo_if_needed()
        _authenticate(conn, settings)
    except ProtocolError:
        conn.close()
        raise
    except ssl.SSLError as exc:
        conn.close()
        raise tls_error(exc, peer, "starting TLS") from exc
    except _WIRE_ERRORS as exc:
        conn.close()
        raise map_smtp_error(exc, what) from exc
    log.debug("SMTP connection opened to %s (%s)", settings.endpoint, settings.encryption.value)
    return conn


def close_quietly(conn: smtplib.SMTP) -> None:
    """Send QUIT and close; ignore every error (the peer may already be gone)."""
    try:
        conn.quit()
    except (smtplib.SMTPException, OSError):
        pass
    finally:
        conn.close()
