"""SMTP transport value types: encryption modes, delivery status and :class:`DeliveryResult` (seed 002).

Re-exported by :mod:`email_service.protocols.smtp`, which is where callers import them from.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

EncryptionVocabulary = Literal["seed", "account"]


class SMTPEncryption(enum.Enum):
    """How the SMTP connection is secured (seed 002 names and values).

    Values (seed 002 vocabulary):
        ``NONE = "none"``: plaintext, RFC 5321 (typically port 25).
        ``STARTTLS = "tls"``: plaintext greeting upgraded with STARTTLS, RFC 3207 (typically port 587).
        ``IMPLICIT_SSL = "ssl"``: TLS from the first byte, RFC 8314 section 3.3 (typically port 465).

    The word ``"tls"`` is ambiguous in this project: in seed 002 (and these enum values) it means STARTTLS, in
    the accounts API (seed 000, ``smtpEncryption``) it means *implicit* TLS and STARTTLS is ``"starttls"``
    (DESIGN.md section 2).  Never guess: use :meth:`parse` with an explicit vocabulary, or
    :meth:`from_account_value` for values that come from the API or the database.
    """

    NONE = "none"
    STARTTLS = "tls"
    IMPLICIT_SSL = "ssl"

    @classmethod
    def from_account_value(cls, value: str) -> SMTPEncryption:
        """Map the accounts API vocabulary (``none | tls | starttls``, seed 000) to a member.

        ``"tls"`` -> :attr:`IMPLICIT_SSL`, ``"starttls"`` -> :attr:`STARTTLS`, ``"none"`` -> :attr:`NONE`
        (case-insensitive, surrounding blanks ignored).

        Raises:
            ValueError: any other value.
        """
        normalised = value.strip().lower() if isinstance(value, str) else value
        mapping = {"none": cls.NONE, "tls": cls.IMPLICIT_SSL, "starttls": cls.STARTTLS}
        try:
            return mapping[normalised]
        except (KeyError, TypeError):
            raise ValueError(f"Unknown account encryption value {value!r} (expected none, tls or starttls)") from None

    @classmethod
    def parse(cls, value: SMTPEncryption | str, vocabulary: EncryptionVocabulary = "seed") -> SMTPEncryption:
        """Return the member for ``value`` read in ``vocabulary``.

        Args:
            value: a member (returned as is) or a string.
            vocabulary: ``"seed"`` (seed 002: ``none | tls = STARTTLS | ssl``; the unambiguous ``"starttls"``
                is accepted too) or ``"account"`` (seed 000: ``none | tls = implicit TLS | starttls``).

        Raises:
            ValueError: unknown value or vocabulary.
        """
        if isinstance(value, SMTPEncryption):
            return value
        if vocabulary == "account":
            return cls.from_account_value(value)
        if vocabulary != "seed":
            raise ValueError(f"Unknown encryption vocabulary {vocabulary!r} (expected 'seed' or 'account')")
        normalised = value.strip().lower() if isinstance(value, str) else value
        if normalised == "starttls":
            return cls.STARTTLS
        try:
            return cls(normalised)
        except ValueError:
            raise ValueError(f"Unknown SMTP encryption value {value!r} (expected none, tls or ssl)") from None

    def to_account_value(self) -> str:
        """The accounts API word for this mode (``none | tls | starttls``, seed 000)."""
        return {"none": "none", "tls": "starttls", "ssl": "tls"}[self.value]


class SMTPDeliveryStatus(enum.Enum):
    """Outcome of one :meth:`SMTPProtocolHandler.send_message` call (seed 002 values).

    ``SUCCESS``: the server accepted the message for at least one recipient (see
    :attr:`DeliveryResult.recipient_failures` for recipients it refused: a partial success is ``SUCCESS`` with
    a non-empty ``recipient_failures``).
    ``FAILED``: permanent failure (5xx after DATA, authentication or TLS failure); do not retry.
    ``RETRY``: a transient failure (421/450/451/452 or a connection error) and ``retry=False`` was passed, so
    the handler did not retry; the caller should.
    ``INVALID``: the message failed validation; nothing was sent, the network was not touched.
    ``REJECTED``: the server refused the sender or all recipients permanently (5xx at MAIL/RCPT).
    ``TEMP_FAILED``: a temporary failure remained after the retries (or a 4xx outside the retry set); retry
    later.
    """

    SUCCESS = "success"
    FAILED = "failed"
    RETRY = "retry"
    INVALID = "invalid"
    REJECTED = "rejected"
    TEMP_FAILED = "temp_failed"


def _epoch_ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


@dataclass
class DeliveryResult:
    """Result of one send (seed 002 fields).

    Attributes:
        status: the outcome.
        message_id: RFC 5322 section 3.6.4 Message-ID of the built message (``<...@domain>``), ``None`` if
            invalid.
        smtp_code: the deciding SMTP reply code (RFC 5321 section 4.2), ``None`` when no reply decided.
        smtp_error: one human sentence with the server's text, ``None`` on success.
        recipient_failures: ``{addr_spec: "<code> <text>"}`` for each recipient the server refused.
        sent_at: when the server accepted the message (aware UTC datetime), ``None`` unless ``SUCCESS``.
        retry_count: retries done by the handler (0 when the first attempt decided).
        is_retryable: whether trying the same message later may succeed.
    """

    status: SMTPDeliveryStatus
    message_id: str | None = None
    smtp_code: int | None = None
    smtp_error: str | None = None
    recipient_failures: dict[str, str] = field(default_factory=dict)
    sent_at: datetime | None = None
    retry_count: int = 0
    is_retryable: bool = False

    @property
    def is_partial(self) -> bool:
        """True for a ``SUCCESS`` where some recipients were refused."""
        return self.status is SMTPDeliveryStatus.SUCCESS and bool(self.recipient_failures)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict in the API conventions (DESIGN.md section 5): camelCase keys, enum as its value,
        ``sentAt`` as integer epoch milliseconds UTC (or ``None``).

        Shape: ``{"status": str, "messageId": str|None, "smtpCode": int|None, "smtpError": str|None,
        "recipientFailures": {addr: str}, "sentAt": int|None, "retryCount": int, "isRetryable": bool}``.
        """
        return {
            "status": self.status.value,
            "messageId": self.message_id,
            "smtpCode": self.smtp_code,
            "smtpError": self.smtp_error,
            "recipientFailures": dict(self.recipient_failures),
            "sentAt": _epoch_ms(self.sent_at) if self.sent_at is not None else None,
            "retryCount": self.retry_count,
            "isRetryable": self.is_retryable,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DeliveryResult:
        """Inverse of :meth:`to_dict` (for results stored in the outbox).

        Raises:
            ValueError / KeyError: a missing ``status`` or an unknown status value.
        """
        sent_at_ms = data.get("sentAt")
        return cls(
            status=SMTPDeliveryStatus(data["status"]),
            message_id=data.get("messageId"),
            smtp_code=data.get("smtpCode"),
            smtp_error=data.get("smtpError"),
            recipient_failures=dict(data.get("recipientFailures") or {}),
            sent_at=datetime.fromtimestamp(sent_at_ms / 1000, tz=UTC) if sent_at_ms is not None else None,
            retry_count=int(data.get("retryCount", 0)),
            is_retryable=bool(data.get("isRetryable", False)),
        )
