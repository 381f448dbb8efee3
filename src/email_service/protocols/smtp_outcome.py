"""Verdicts on one SMTP delivery attempt (seed 002 retry rules, RFC 5321 section 4.2).

Used by :class:`email_service.protocols.smtp.SMTPProtocolHandler`: an :class:`Outcome` says which
:class:`SMTPDeliveryStatus` an attempt earned and whether it is *transient* (421/450/451/452 or a connection
error: retried after ``RETRY_DELAYS``).  Other 4xx are ``TEMP_FAILED`` without an immediate retry; 5xx are
``REJECTED`` at MAIL/RCPT and ``FAILED`` elsewhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from email_service.protocols.errors import (
    AuthenticationFailed,
    ConnectionFailed,
    HostNotAllowed,
    PermanentFailure,
    ProtocolError,
    TemporaryFailure,
    TLSError,
)
from email_service.protocols.smtp_connect import reply_text
from email_service.protocols.smtp_types import SMTPDeliveryStatus

__all__ = [
    "MAX_RETRIES",
    "RETRYABLE_CODES",
    "RETRY_DELAYS",
    "Outcome",
    "error_outcome",
    "refused_outcome",
    "reply_outcome",
]

#: Seed 002: reply codes retried with :data:`RETRY_DELAYS` (RFC 5321 section 4.2.2 transient replies).
RETRYABLE_CODES = frozenset({421, 450, 451, 452})
#: Seed 002: seconds to wait before retry 1, 2, 3.
RETRY_DELAYS: tuple[float, ...] = (1, 5, 30)
#: Seed 002: retries after the first attempt.
MAX_RETRIES = len(RETRY_DELAYS)

_S = SMTPDeliveryStatus


@dataclass
class Outcome:
    """One attempt's verdict; ``transient`` means "in the retry set, try again after a delay"."""

    status: SMTPDeliveryStatus
    smtp_code: int | None = None
    smtp_error: str | None = None
    recipient_failures: dict[str, str] = field(default_factory=dict)
    transient: bool = False


def reply_outcome(code: int, text: str, permanent: SMTPDeliveryStatus) -> Outcome:
    """Verdict for reply ``code``/``text``; ``permanent`` is the status for 5xx (REJECTED or FAILED)."""
    error = f"{code} {text}".strip()
    if code in RETRYABLE_CODES:
        return Outcome(_S.TEMP_FAILED, code, error, transient=True)
    if 400 <= code < 500:
        return Outcome(_S.TEMP_FAILED, code, error)
    return Outcome(permanent if code >= 500 else _S.FAILED, code, error)


def refused_outcome(refused: Mapping[str, tuple[int, bytes]]) -> Outcome:
    """Verdict when every recipient was refused: ``{addr: (code, text)}`` as in ``SMTPRecipientsRefused``."""
    failures = {addr: f"{code} {reply_text(text)}".strip() for addr, (code, text) in refused.items()}
    codes = [code for code, _ in refused.values()]
    first = codes[0] if codes else None
    error = "All recipients were refused"
    if codes and all(code in RETRYABLE_CODES for code in codes):
        return Outcome(_S.TEMP_FAILED, first, error, failures, transient=True)
    if codes and all(400 <= code < 500 for code in codes):
        return Outcome(_S.TEMP_FAILED, first, error, failures)
    return Outcome(_S.REJECTED, first, error, failures)


def error_outcome(exc: ProtocolError) -> Outcome:
    """Verdict for a failure to get a ready connection."""
    message = exc.message
    if isinstance(exc, TLSError | AuthenticationFailed | PermanentFailure | HostNotAllowed):
        return Outcome(_S.FAILED, exc.code, message)
    if isinstance(exc, ConnectionFailed):
        return Outcome(_S.TEMP_FAILED, exc.code, message, transient=True)
    if isinstance(exc, TemporaryFailure) and exc.code is not None:
        return reply_outcome(exc.code, exc.server_text or "", _S.FAILED)
    return Outcome(_S.FAILED, exc.code, message)
