"""SMTP transport (seed 002): :class:`SMTPProtocolHandler` and the seed's types, importable from here.

Sending follows RFC 5321: the message is built by :func:`email_service.protocols.mime.build.build_message`
(RFC 5322/2045/2047/2231), the envelope is ``MAIL FROM:<sender>`` and one ``RCPT TO`` per distinct To, Cc and
Bcc address (section 3.3), and the Bcc header is never transmitted (DESIGN.md section 8).

Reply handling (seed 002 retry rules, RFC 5321 section 4.2.1):

* 421, 450, 451, 452 and connection errors are transient: with ``retry=True`` the handler sleeps
  ``retry_delays[i]`` (default ``[1, 5, 30]`` s, injectable ``sleep``) and tries again on a fresh or pooled
  connection, at most ``len(retry_delays)`` times; if it still fails the result is ``TEMP_FAILED``; with
  ``retry=False`` it is ``RETRY`` (the caller should retry).
* other 4xx: ``TEMP_FAILED`` at once (``is_retryable``); 5xx: ``REJECTED`` for MAIL/RCPT refusals, ``FAILED``
  otherwise (after DATA, 535 authentication, TLS verification).
* recipients refused at RCPT while others were accepted: the message is sent; the result is ``SUCCESS`` with
  ``recipient_failures = {addr: "<code> <text>"}`` (a partial success, :attr:`DeliveryResult.is_partial`).
  Refused recipients are not retried.
* a retry after a connection lost during the final ``.`` may deliver twice (RFC 1047); SMTP cannot tell.

No retry sleeps while any pool lock is held; connections are given back to the pool before sleeping.
"""

from __future__ import annotations

import copy
import logging
import smtplib
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from email.message import EmailMessage, Message
from typing import Any

from email_service.protocols.errors import ProtocolError
from email_service.protocols.mime.build import AttachmentPart, build_message, coerce_attachments
from email_service.protocols.net import PUBLIC_ONLY, HostPolicy
from email_service.protocols.smtp_connect import (
    SMTPConnectionSettings,
    close_quietly,
    map_smtp_error,
    open_connection,
    reply_text,
)
from email_service.protocols.smtp_outcome import (
    MAX_RETRIES,
    RETRY_DELAYS,
    RETRYABLE_CODES,
    Outcome,
    error_outcome,
    refused_outcome,
    reply_outcome,
)
from email_service.protocols.smtp_pool import PoolExhausted, SMTPConnectionPool
from email_service.protocols.smtp_types import (
    DeliveryResult,
    EncryptionVocabulary,
    SMTPDeliveryStatus,
    SMTPEncryption,
)
from email_service.protocols.smtp_validate import SMTPMessageValidator, addr_spec_of, envelope_recipients

__all__ = [
    "MAX_RETRIES",
    "RETRYABLE_CODES",
    "RETRY_DELAYS",
    "DeliveryResult",
    "PoolExhausted",
    "SMTPConnectionPool",
    "SMTPConnectionSettings",
    "SMTPDeliveryStatus",
    "SMTPEncryption",
    "SMTPMessageValidator",
    "SMTPProtocolHandler",
]

log = logging.getLogger(__name__)

_S = SMTPDeliveryStatus


def _invalid(error: str | None) -> DeliveryResult:
    return DeliveryResult(status=_S.INVALID, smtp_error=error or "Invalid message")


class SMTPProtocolHandler:
    """Send mail through one SMTP account (seed 002 names and ``send_message`` signature).

    Args:
        hostname, port: the submission server.
        username, password: AUTH credentials (``None`` for an open relay); the password is masked in ``repr``.
        encryption: a :class:`SMTPEncryption` or a string read in ``encryption_vocabulary``.  In the default
            ``"seed"`` vocabulary ``"tls"`` means STARTTLS and ``"ssl"`` implicit TLS; the accounts API says
            ``"tls"`` for implicit TLS, so pass ``encryption_vocabulary="account"`` for API/database values
            (or convert with :meth:`SMTPEncryption.from_account_value`).
        from_address: default sender (``"Name <addr>"`` or ``addr``); falls back to ``username``.
        pool_size: ``max_connections`` of the private pool made when ``pool`` is not given.
        encryption_vocabulary: ``"seed"`` or ``"account"``, see ``encryption``.
        ca_bundle: PEM file of extra trusted CAs (certificates are always verified).
        timeout: socket timeout in seconds.
        account_id: the account this handler sends for; part of the pool identity.
        retry_delays: seconds before each retry; ``len(retry_delays)`` is the retry limit (seed 002: 1, 5,
            30).
        sleep: called with each delay (injectable so tests do not sleep).
        pool: a shared :class:`SMTPConnectionPool`; :meth:`close` then only releases this handler's
            connection.
        oauth2_token: OAuth 2.0 access token for AUTH XOAUTH2 (instead of the password; masked in ``repr``).
        local_hostname: EHLO name (default: this host's FQDN).
        host_policy: which non-public hosts may be dialled (:class:`~email_service.protocols.net.HostPolicy`;
            default none, the production rule).  A refused host fails every send with ``FAILED`` and
            :class:`~email_service.protocols.errors.HostNotAllowed` as ``last_error``; nothing is dialled.

    Raises:
        ValueError: bad port, timeout, delays or encryption value.

    Thread safety: :meth:`send_message` may be called from many threads; each send takes its own pooled
    connection.  After :meth:`connect` the handler pins one connection and sends on it one at a time.
    """

    def __init__(
        self,
        hostname: str,
        port: int = 587,
        username: str | None = None,
        password: str | None = None,
        encryption: SMTPEncryption | str = SMTPEncryption.STARTTLS,
        from_address: str | None = None,
        pool_size: int = 10,
        *,
        encryption_vocabulary: EncryptionVocabulary = "seed",
        ca_bundle: str | None = None,
        timeout: float = 30.0,
        account_id: str | None = None,
        retry_delays: Sequence[float] = RETRY_DELAYS,
        sleep: Callable[[float], None] = time.sleep,
        pool: SMTPConnectionPool | None = None,
        oauth2_token: str | None = None,
        local_hostname: str | None = None,
        host_policy: HostPolicy = PUBLIC_ONLY,
    ) -> None:
        if not isinstance(hostname, str) or not hostname.strip():
            raise ValueError("hostname is required")
        if not 0 < port < 65536:
            raise ValueError(f"port {port} is out of range")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        delays = tuple(float(delay) for delay in retry_delays)
        if any(delay < 0 for delay in delays):
            raise ValueError("retry delays must not be negative")
        self._settings = SMTPConnectionSettings(
            host=hostname.strip(),
            port=port,
            encryption=SMTPEncryption.parse(encryption, encryption_vocabulary),
            username=username,
            password=password,
            oauth2_token=oauth2_token,
            account_id=account_id,
            ca_bundle=ca_bundle,
            timeout=float(timeout),
            local_hostname=local_hostname,
            host_policy=host_policy,
        )
        self.from_address = from_address or username
        self.retry_delays = delays
        self._sleep = sleep
        self._owns_pool = pool is None
        self._pool = pool if pool is not None else SMTPConnectionPool(max_connections=pool_size)
        self._lock = threading.RLock()
        self._pinned: smtplib.SMTP | None = None
        self.last_error: ProtocolError | None = None

    def __repr__(self) -> str:
        settings = self._settings
        return (
            f"SMTPProtocolHandler(hostname={settings.host!r}, port={settings.port}, "
            f"username={settings.username!r}, password={'***' if settings.password is not None else None!r}, "
            f"encryption={settings.encryption.value!r}, account_id={settings.account_id!r})"
        )

    __str__ = __repr__

    def __enter__(self) -> SMTPProtocolHandler:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def hostname(self) -> str:
        """The server host name."""
        return self._settings.host

    @property
    def port(self) -> int:
        """The server port."""
        return self._settings.port

    @property
    def username(self) -> str | None:
        """The AUTH identity."""
        return self._settings.username

    @property
    def encryption(self) -> SMTPEncryption:
        """The connection security mode."""
        return self._settings.encryption

    @property
    def account_id(self) -> str | None:
        """The account id (pool identity)."""
        return self._settings.account_id

    @property
    def pool(self) -> SMTPConnectionPool:
        """The pool connections come from."""
        return self._pool

    def connect(self) -> bool:
        """Take a ready (secured, authenticated) connection from the pool and pin it until :meth:`close`.

        Returns ``True`` (idempotent).  Optional: :meth:`send_message` connects on demand.

        Raises:
            TLSError, AuthenticationFailed, ConnectionFailed (incl. PoolExhausted), ProtocolError.
        """
        with self._lock:
            if self._pinned is None:
                self._pinned = self._pool.acquire(self._settings)
            return True

    def authenticate(self) -> bool:
        """Make sure a connection authenticated with the configured credentials exists (RFC 4954).

        Returns ``True`` once the server accepted the credentials, ``False`` when none are configured.

        Raises:
            AuthenticationFailed: 535 or no usable mechanism; and the errors of :meth:`connect`.
        """
        settings = self._settings
        if settings.username is None or (settings.password is None and settings.oauth2_token is None):
            return False
        return self.connect()

    def test_connection(self) -> bool:
        """Open a fresh, unpooled connection (TLS + AUTH), send NOOP, QUIT.

        Returns ``True`` when everything succeeded; otherwise ``False`` with the reason in :attr:`last_error`
        (a :class:`ProtocolError`).  Never raises for network or server failures.
        """
        try:
            conn = open_connection(self._settings)
        except ProtocolError as exc:
            self.last_error = exc
            return False
        try:
            code, text = conn.noop()
            if code != 250:
                self.last_error = map_smtp_error(smtplib.SMTPResponseException(code, text), "testing NOOP")
                return False
        except (smtplib.SMTPException, OSError) as exc:
            self.last_error = map_smtp_error(exc, f"testing {self._settings.endpoint}")
            return False
        finally:
            close_quietly(conn)
        self.last_error = None
        return True

    def close(self) -> None:
        """Give the pinned connection back; with a private pool, close all its connections."""
        with self._lock:
            pinned, self._pinned = self._pinned, None
        if pinned is not None:
            self._pool.release_connection(self._settings.host, self._settings.port, pinned)
        if self._owns_pool:
            self._pool.close_all()

    def send_message(
        self,
        to_addresses: list[str],
        subject: str,
        text_body: str | None = None,
        html_body: str | None = None,
        cc_addresses: list[str] | None = None,
        bcc_addresses: list[str] | None = None,
        reply_to: str | None = None,
        attachments: list[dict[str, Any]] | None = None,
        custom_headers: dict[str, str] | None = None,
        from_address: str | None = None,
        retry: bool = True,
    ) -> DeliveryResult:
        """Validate, build and send one message (seed 002 signature).

        Args:
            to_addresses, cc_addresses, bcc_addresses: ``"Name <addr>"`` or ``addr``; Bcc only in the
                envelope.
            subject, text_body, html_body, reply_to, custom_headers: see
                :func:`~email_service.protocols.mime.build.build_message`.
            attachments: seed-002 dicts ``{"filename", "contentType", "data": base64}`` (or
                ``"content": bytes``; ``"contentId"``/``"inline"`` for inline images).
            from_address: sender; defaults to the handler's ``from_address``.
            retry: retry transient failures (see module docstring).

        Returns:
            A :class:`DeliveryResult`; ``INVALID`` (network untouched) when validation fails.  Network and
            server failures are reported in the result, never raised.
        """
        sender = from_address or self.from_address
        if not sender:
            return _invalid("A sender address is required (from_address)")
        try:
            parts: list[AttachmentPart] = coerce_attachments(attachments)
        except ValueError as exc:
            return _invalid(str(exc))
        ok, error = SMTPMessageValidator.validate_message(
            to_addresses,
            subject,
            text_body,
            html_body,
            cc_addresses,
            bcc_addresses,
            parts,
            from_address=sender,
            reply_to=reply_to,
            custom_headers=custom_headers,
        )
        if not ok:
            return _invalid(error)
        try:
            message = build_message(
                from_address=sender,
                to=to_addresses,
                cc=cc_addresses,
                subject=subject or "",
                text_body=text_body,
                html_body=html_body,
                reply_to=reply_to,
                attachments=parts,
                custom_headers=custom_headers,
            )
        except ValueError as exc:
            return _invalid(str(exc))
        rcpt_tos = envelope_recipients(to_addresses, cc_addresses, bcc_addresses)
        return self._deliver(message, addr_spec_of(sender), rcpt_tos, retry)

    def send_built_message(
        self,
        message: EmailMessage | Message,
        *,
        rcpt_tos: Iterable[str],
        mail_from: str | None = None,
        retry: bool = True,
    ) -> DeliveryResult:
        """Send an already built message (e.g. from :func:`build_message`, kept for the Sent folder).

        Args:
            message: the message; a Bcc header, if any, is removed from the transmitted copy.
            rcpt_tos: envelope recipients (``"Name <addr>"`` or ``addr``), deduplicated (RFC 5321 section
                3.3).
            mail_from: envelope sender; defaults to the handler's ``from_address``.
            retry: as in :meth:`send_message`.

        Returns:
            A :class:`DeliveryResult`, ``INVALID`` when a recipient or the sender is not a valid address.
        """
        sender = mail_from or self.from_address or ""
        addresses = list(rcpt_tos)
        ok, error = SMTPMessageValidator.validate_email_address(sender)
        if ok:
            ok, error = SMTPMessageValidator.validate_recipients(addresses)
        if not ok:
            return _invalid(error)
        if "Bcc" in message:
            message = copy.copy(message)  # shallow: deleting rebinds the copy's header list only
            del message["Bcc"]
        return self._deliver(message, addr_spec_of(sender), envelope_recipients(addresses), retry)

    # -- delivery ---------------------------------------------------------------------------------------

    def send_raw_message(
        self, raw: bytes, *, rcpt_tos: Iterable[str], mail_from: str, message_id: str | None = None, retry: bool = True
    ) -> DeliveryResult:
        """Send RFC 5322 bytes exactly as given (an outbox item built once, issue 9): no re-serialisation.

        The caller built ``raw`` without a Bcc header.  ``message_id`` is reported in the result.  Returns a
        :class:`DeliveryResult` (``INVALID`` for a bad sender or recipient), as :meth:`send_built_message`.
        """
        addresses = list(rcpt_tos)
        ok, error = SMTPMessageValidator.validate_email_address(mail_from)
        if ok:
            ok, error = SMTPMessageValidator.validate_recipients(addresses)
        if not ok:
            return _invalid(error)
        return self._deliver_raw(raw, message_id, addr_spec_of(mail_from), envelope_recipients(addresses), retry)

    def _deliver(self, message: Message, mail_from: str, rcpt_tos: list[str], retry: bool) -> DeliveryResult:
        raw = message.as_bytes(policy=message.policy.clone(linesep="\r\n"))
        message_id = message.get("Message-ID")
        return self._deliver_raw(raw, str(message_id) if message_id else None, mail_from, rcpt_tos, retry)

    def _deliver_raw(
        self, raw: bytes, message_id: str | None, mail_from: str, rcpt_tos: list[str], retry: bool
    ) -> DeliveryResult:
        retries = 0
        while True:
            outcome = self._attempt(raw, mail_from, rcpt_tos)
            if not (outcome.transient and retry and retries < len(self.retry_delays)):
                break
            delay = self.retry_delays[retries]
            retries += 1
            log.info(
                "SMTP %s via %s: %s; retry %d in %g s",
                message_id,
                self._settings.endpoint,
                outcome.smtp_error,
                retries,
                delay,
            )
            self._sleep(delay)  # no connection or lock is held here
        status = _S.RETRY if outcome.transient and not retry else outcome.status
        result = DeliveryResult(
            status=status,
            message_id=message_id,
            smtp_code=outcome.smtp_code,
            smtp_error=outcome.smtp_error,
            recipient_failures=outcome.recipient_failures,
            sent_at=datetime.now(UTC) if status is _S.SUCCESS else None,
            retry_count=retries,
            is_retryable=status in (_S.TEMP_FAILED, _S.RETRY),
        )
        log.info(
            "SMTP %s via %s to %d recipient(s): %s %s (%d retries)",
            result.message_id,
            self._settings.endpoint,
            len(rcpt_tos),
            status.value,
            result.smtp_code,
            retries,
        )
        return result

    def _attempt(self, raw: bytes, mail_from: str, rcpt_tos: list[str]) -> Outcome:
        with self._lock:
            if self._pinned is not None:
                return self._send_on(self._pinned, raw, mail_from, rcpt_tos, pinned=True)
        try:
            conn = self._pool.acquire(self._settings)
        except ProtocolError as exc:
            self.last_error = exc
            return error_outcome(exc)
        return self._send_on(conn, raw, mail_from, rcpt_tos, pinned=False)

    def _send_on(self, conn: smtplib.SMTP, raw: bytes, mail_from: str, rcpt_tos: list[str], *, pinned: bool) -> Outcome:
        healthy = True
        try:
            refused = conn.sendmail(mail_from, rcpt_tos, raw)
        except smtplib.SMTPRecipientsRefused as exc:
            outcome = refused_outcome(exc.recipients)
        except smtplib.SMTPSenderRefused as exc:
            healthy = exc.smtp_code != 421
            outcome = reply_outcome(exc.smtp_code, reply_text(exc.smtp_error), _S.REJECTED)
        except smtplib.SMTPResponseException as exc:
            healthy = exc.smtp_code != 421
            outcome = reply_outcome(exc.smtp_code, reply_text(exc.smtp_error), _S.FAILED)
        except (smtplib.SMTPException, OSError) as exc:
            healthy = False
            error = map_smtp_error(exc, f"sending to {self._settings.endpoint}")
            outcome = Outcome(_S.TEMP_FAILED, None, error.message, transient=True)
        else:
            failures = {addr: f"{code} {reply_text(text)}".strip() for addr, (code, text) in refused.items()}
            outcome = Outcome(_S.SUCCESS, 250, None, failures)
        self._check_in(conn, healthy=healthy, pinned=pinned)
        return outcome

    def _check_in(self, conn: smtplib.SMTP, *, healthy: bool, pinned: bool) -> None:
        if pinned:
            if healthy:
                return
            with self._lock:
                if self._pinned is conn:
                    self._pinned = None
        self._pool.release_connection(self._settings.host, self._settings.port, conn, discard=not healthy)
