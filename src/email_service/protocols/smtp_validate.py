"""Pre-send validation of an outgoing message and its envelope (seed 002 ``SMTPMessageValidator``).

Limits (seed 002 table; sizes in MiB, ``1 MB = 1024 * 1024`` bytes):

=====================  ===========  ==============================================
what                   limit        source
=====================  ===========  ==============================================
address (addr-spec)    254 chars    RFC 5321 section 4.5.3.1.3 (path) / errata 1690
local part             64 chars     RFC 5321 section 4.5.3.1.1
subject                998 chars    RFC 5322 section 2.1.1 (line length)
body, per type         100 MB       seed 002 (UTF-8 bytes of text and of HTML)
one attachment         25 MB        seed 002 (decoded bytes)
all attachments        100 MB       seed 002 (decoded bytes)
recipients             100          seed 002, To + Cc + Bcc entries as given
=====================  ===========  ==============================================

Re-exported by :mod:`email_service.protocols.smtp`.  Every ``validate_*`` method returns
``(is_valid: bool, error: str | None)`` and never raises for bad input.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from email_service.protocols.mime.build import (
    AttachmentPart,
    check_custom_headers,
    coerce_attachments,
    has_line_break,
    split_mailbox,
)

__all__ = ["SMTPMessageValidator", "ValidationOutcome", "addr_spec_of", "envelope_recipients"]

ValidationOutcome = tuple[bool, str | None]

MB = 1024 * 1024
_OK: ValidationOutcome = (True, None)

# RFC 5322 section 3.2.3 atext; local part as dot-atom (quoted-string local parts are not accepted).
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_LOCAL_PART = re.compile(rf"^{_ATEXT}+(?:\.{_ATEXT}+)*$")
# RFC 1035 section 2.3.1 labels (RFC 1123 allows a leading digit); the top label is alphabetic or an A-label.
_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_TOP_LABEL = re.compile(r"^(?:[A-Za-z]{2,63}|xn--[A-Za-z0-9-]{1,59})$")


def addr_spec_of(address: str) -> str:
    """The addr-spec of ``"Name <addr>"`` or ``addr`` (RFC 5322 section 3.4), stripped; no validation."""
    return split_mailbox(address)[1]


def envelope_recipients(*groups: Iterable[str] | None) -> list[str]:
    """RFC 5321 ``RCPT TO`` list for To, Cc and Bcc: addr-specs, in order, without duplicates.

    Two addresses are the same when their local parts are equal (case-sensitive, RFC 5321 section 2.4) and
    their domains are equal ignoring case.
    """
    seen: set[str] = set()
    result: list[str] = []
    for group in groups:
        for address in group or ():
            spec = addr_spec_of(address)
            local, _, domain = spec.rpartition("@")
            key = f"{local}@{domain.lower()}"
            if key not in seen:
                seen.add(key)
                result.append(spec)
    return result


def _labelled(label: str, outcome: ValidationOutcome) -> ValidationOutcome:
    return outcome if outcome[0] else (False, f"{label}: {outcome[1]}")


def _text_size(value: str) -> int:
    """UTF-8 size of ``value`` in bytes, without encoding it when that is not needed."""
    return len(value) if value.isascii() else len(value.encode("utf-8", "surrogatepass"))


class SMTPMessageValidator:
    """Checks a message before it is sent (seed 002).  All methods are static; limits are class attributes."""

    MAX_EMAIL_LENGTH = 254
    MAX_LOCAL_PART_LENGTH = 64
    MAX_SUBJECT_LENGTH = 998
    MAX_BODY_SIZE = 100 * MB
    MAX_ATTACHMENT_SIZE = 25 * MB
    MAX_TOTAL_ATTACHMENT_SIZE = 100 * MB
    MAX_RECIPIENTS = 100

    @staticmethod
    def validate_email_address(email: str) -> ValidationOutcome:
        """Validate one address: ``local@domain`` or ``Display Name <local@domain>`` (RFC 5321 section 4.1.2).

        Rules: no CR/LF/NUL anywhere (header injection); addr-spec at most 254 characters, exactly one ``@``;
        local part a dot-atom (RFC 5322 section 3.2.3) of at most 64 characters; domain of at least two
        LDH labels of at most 63 characters whose last label is alphabetic (2+ letters) or an IDNA A-label.
        Quoted local parts, address literals and non-ASCII (SMTPUTF8) addresses are refused.
        """
        if not isinstance(email, str) or not email.strip():
            return False, "Email address is required"
        if has_line_break(email):
            return False, "Email address must not contain line breaks or NUL characters"
        name, spec = split_mailbox(email)
        if "<" in name or ">" in name:
            return False, f"Invalid email address {email!r}"
        if len(spec) > SMTPMessageValidator.MAX_EMAIL_LENGTH:
            return False, f"Email address exceeds {SMTPMessageValidator.MAX_EMAIL_LENGTH} characters"
        if spec.count("@") != 1:
            return False, f"Invalid email address {spec!r}"
        local, domain = spec.split("@")
        if len(local) > SMTPMessageValidator.MAX_LOCAL_PART_LENGTH:
            return (
                False,
                f"Local part of {spec!r} exceeds {SMTPMessageValidator.MAX_LOCAL_PART_LENGTH} characters",
            )
        if not _LOCAL_PART.match(local):
            return False, f"Invalid local part in email address {spec!r}"
        labels = domain.split(".")
        if len(labels) < 2 or not all(_LABEL.match(label) for label in labels) or not _TOP_LABEL.match(labels[-1]):
            return False, f"Invalid domain in email address {spec!r}"
        return _OK

    @staticmethod
    def validate_recipients(
        to: Sequence[str] | None,
        cc: Sequence[str] | None = None,
        bcc: Sequence[str] | None = None,
    ) -> ValidationOutcome:
        """At least one, at most 100 recipients in To + Cc + Bcc (entries as given, seed 002), each valid."""
        groups = {"To": to, "Cc": cc, "Bcc": bcc}
        total = 0
        for label, group in groups.items():
            if group is None:
                continue
            if isinstance(group, str | bytes) or not isinstance(group, Sequence):
                return False, f"{label} recipients must be a list of addresses"
            total += len(group)
        if total == 0:
            return False, "At least one recipient is required"
        if total > SMTPMessageValidator.MAX_RECIPIENTS:
            return False, (
                f"Too many recipients: {total} (maximum {SMTPMessageValidator.MAX_RECIPIENTS} across To, Cc and Bcc)"
            )
        for label, group in groups.items():
            for address in group or ():
                ok, error = SMTPMessageValidator.validate_email_address(address)
                if not ok:
                    return False, f"{label}: {error}"
        return _OK

    @staticmethod
    def validate_subject(subject: str | None) -> ValidationOutcome:
        """Subject: a string (may be empty), at most 998 characters, no CR/LF/NUL (RFC 5322 section 2.1.1)."""
        if subject is None:
            return _OK
        if not isinstance(subject, str):
            return False, "Subject must be a string"
        if has_line_break(subject):
            return False, "Subject must not contain line breaks or NUL characters"
        if len(subject) > SMTPMessageValidator.MAX_SUBJECT_LENGTH:
            return False, f"Subject exceeds {SMTPMessageValidator.MAX_SUBJECT_LENGTH} characters"
        return _OK

    @staticmethod
    def validate_body(text_body: str | None, html_body: str | None) -> ValidationOutcome:
        """At least one body; each a string of at most 100 MB in UTF-8 (seed 002), no NUL (RFC 5322 2.3)."""
        if text_body is None and html_body is None:
            return False, "A text or HTML body is required"
        for label, body in (("Text body", text_body), ("HTML body", html_body)):
            if body is None:
                continue
            if not isinstance(body, str):
                return False, f"{label} must be a string"
            if len(body) > SMTPMessageValidator.MAX_BODY_SIZE or (
                len(body) * 4 > SMTPMessageValidator.MAX_BODY_SIZE
                and _text_size(body) > SMTPMessageValidator.MAX_BODY_SIZE
            ):
                return False, f"{label} exceeds {SMTPMessageValidator.MAX_BODY_SIZE // MB} MB"
            if "\x00" in body:
                return False, f"{label} must not contain NUL characters"
        return _OK

    @staticmethod
    def validate_attachments(
        attachments: Iterable[Mapping[str, Any] | AttachmentPart] | None,
    ) -> ValidationOutcome:
        """Each attachment well formed (see :func:`~email_service.protocols.mime.build.attachment_from_dict`),
        at most 25 MB decoded, and at most 100 MB together (seed 002)."""
        try:
            parts = coerce_attachments(attachments)
        except ValueError as exc:
            return False, str(exc)
        total = 0
        for part in parts:
            if part.size > SMTPMessageValidator.MAX_ATTACHMENT_SIZE:
                return False, (
                    f"Attachment {part.filename!r} exceeds {SMTPMessageValidator.MAX_ATTACHMENT_SIZE // MB} MB"
                )
            total += part.size
        if total > SMTPMessageValidator.MAX_TOTAL_ATTACHMENT_SIZE:
            return (
                False,
                f"Attachments exceed {SMTPMessageValidator.MAX_TOTAL_ATTACHMENT_SIZE // MB} MB in total",
            )
        return _OK

    @staticmethod
    def validate_headers(custom_headers: Mapping[str, str] | None) -> ValidationOutcome:
        """Custom headers: RFC 5322 field names, no CR/LF/NUL in values, none of the protected names
        (see :data:`~email_service.protocols.mime.build.PROTECTED_HEADERS`)."""
        try:
            check_custom_headers(custom_headers)
        except ValueError as exc:
            return False, str(exc)
        return _OK

    @staticmethod
    def validate_message(
        to_addresses: Sequence[str] | None,
        subject: str | None,
        text_body: str | None = None,
        html_body: str | None = None,
        cc_addresses: Sequence[str] | None = None,
        bcc_addresses: Sequence[str] | None = None,
        attachments: Iterable[Mapping[str, Any] | AttachmentPart] | None = None,
        from_address: str | None = None,
        reply_to: str | Sequence[str] | None = None,
        custom_headers: Mapping[str, str] | None = None,
    ) -> ValidationOutcome:
        """All checks of a whole message, first failure wins: sender (when given), recipients, Reply-To,
        subject, bodies, attachments, custom headers (seed 002 plus header-injection checks)."""
        validator = SMTPMessageValidator

        def outcomes() -> Iterator[ValidationOutcome]:  # lazily: stop at the first failure
            if from_address is not None:
                yield _labelled("From", validator.validate_email_address(from_address))
            yield validator.validate_recipients(to_addresses, cc_addresses, bcc_addresses)
            for address in [reply_to] if isinstance(reply_to, str) else list(reply_to or ()):
                yield _labelled("Reply-To", validator.validate_email_address(address))
            yield validator.validate_subject(subject)
            yield validator.validate_body(text_body, html_body)
            yield validator.validate_attachments(attachments)
            yield validator.validate_headers(custom_headers)

        for outcome in outcomes():
            if not outcome[0]:
                return outcome
        return _OK
