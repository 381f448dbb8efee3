"""Request and response schemas (marshmallow): they validate input and generate the OpenAPI spec.

Field names are camelCase, times integer epoch milliseconds, ids UUID strings (DESIGN.md section 5).  Validation
messages follow seed 000 (e.g. "Port must be between 1 and 65535").
"""

from __future__ import annotations

import re
from typing import Any

from apiflask import Schema
from apiflask.fields import UUID, Boolean, Dict, Email, Integer, List, Nested, String
from apiflask.validators import Length, OneOf, Range, Regexp
from marshmallow import ValidationError, validates_schema

from .common import document_rules

PROTOCOLS = ("imap", "pop3")
ENCRYPTIONS = ("none", "tls", "starttls")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_TOP_LABEL = r"[A-Za-z](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"  # RFC 3696 section 2: the last label is not numeric
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
#: A DNS name (RFC 1123 labels) or a dotted IPv4 address; also the ``pattern`` of the field in the OpenAPI spec.
_HOSTNAME_PATTERN = re.compile(rf"^(?:{_LABEL}\.)*{_TOP_LABEL}$|^(?:{_OCTET}\.){{3}}{_OCTET}$")


class FullMatch(Regexp):
    """A :class:`Regexp` that must match the whole value (``re.fullmatch``): with ``match``, a ``$`` at the end
    of the pattern also accepts a value with a trailing line feed.  Documented as the field's ``pattern``."""

    def __call__(self, value: Any) -> Any:
        if self.regex.fullmatch(value) is None:
            raise ValidationError(self._format_error(value))
        return value


_HOSTNAME = FullMatch(_HOSTNAME_PATTERN, error="Hostname must be a DNS name or an IPv4 address")


#: PostgreSQL text cannot hold U+0000 (it was a 500 there, and stored on SQLite); as a validator it also becomes
#: the field's ``pattern`` in the OpenAPI document.
_NO_NUL = Regexp(re.compile(r"^[^\x00]*$"), error="must not contain NUL characters")


def _required(name: str) -> dict[str, str | list[Any] | dict[Any, Any]]:
    return {"required": f"{name} is required", "null": f"{name} must not be null"}


class WholeNumber(Integer):
    """A JSON body integer: ``993`` or ``993.0`` (the same JSON number, and an ``integer`` to JSON Schema and so
    to the OpenAPI document), never ``1.5``, ``"993"`` or ``true``."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(strict=True, **kwargs)

    def _validated(self, value: Any) -> int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return super()._validated(value)


def _port(name: str, *, required: bool = False) -> Integer:
    return WholeNumber(
        required=required,
        validate=Range(1, 65535, error="Port must be between 1 and 65535"),
        error_messages=_required(name),
        metadata={"description": "TCP port, 1-65535"},
    )


class _AccountWritable(Schema):
    accountName = String(validate=[Length(1, 255), _NO_NUL], error_messages=_required("accountName"))
    emailAddress = Email(validate=Length(3, 254), error_messages=_required("emailAddress"))
    protocol = String(
        validate=OneOf(PROTOCOLS, error="Protocol must be imap or pop3"), error_messages=_required("protocol")
    )
    hostname = String(validate=[Length(1, 253), _HOSTNAME], error_messages=_required("hostname"))
    port = _port("port")
    encryption = String(validate=OneOf(ENCRYPTIONS, error="Encryption must be none, tls or starttls"))
    username = String(validate=[Length(1, 255), _NO_NUL], error_messages=_required("username"))
    password = String(validate=Length(1, 1024), load_only=True, error_messages=_required("password"))
    isSyncEnabled = Boolean()
    syncInterval = WholeNumber(
        validate=Range(60, 7 * 86400, error="syncInterval must be between 60 and 604800 seconds"),
        metadata={"description": "Seconds between scheduled syncs"},
    )
    smtpHostname = String(validate=[Length(1, 253), _HOSTNAME], allow_none=True)
    smtpPort = WholeNumber(validate=Range(1, 65535, error="Port must be between 1 and 65535"), allow_none=True)
    smtpEncryption = String(
        validate=OneOf(ENCRYPTIONS),
        allow_none=True,
        metadata={"description": "none | tls (implicit TLS) | starttls"},
    )
    smtpUsername = String(
        validate=[Length(1, 255), _NO_NUL],
        allow_none=True,
        metadata={"description": "Defaults to the IMAP/POP3 username"},
    )


class AccountCreateIn(_AccountWritable):
    """POST /accounts body (seed 000 validation rules)."""

    accountName = String(required=True, validate=[Length(1, 255), _NO_NUL], error_messages=_required("accountName"))
    emailAddress = Email(required=True, validate=Length(3, 254), error_messages=_required("emailAddress"))
    protocol = String(
        required=True,
        validate=OneOf(PROTOCOLS, error="Protocol must be imap or pop3"),
        error_messages=_required("protocol"),
    )
    hostname = String(required=True, validate=[Length(1, 253), _HOSTNAME], error_messages=_required("hostname"))
    port = _port("port", required=True)
    encryption = String(
        load_default="tls", validate=OneOf(ENCRYPTIONS, error="Encryption must be none, tls or starttls")
    )
    username = String(required=True, validate=[Length(1, 255), _NO_NUL], error_messages=_required("username"))
    password = String(required=True, validate=Length(1, 1024), load_only=True, error_messages=_required("password"))
    isSyncEnabled = Boolean(load_default=True)
    syncInterval = WholeNumber(
        load_default=300,
        validate=Range(60, 7 * 86400, error="syncInterval must be between 60 and 604800 seconds"),
    )


@document_rules(minProperties=1)
class AccountUpdateIn(_AccountWritable):
    """PUT /accounts/{id} body: any subset of the writable fields, at least one."""

    isEnabled = Boolean()

    @validates_schema
    def _not_empty(self, data: dict[str, Any], **_: Any) -> None:
        if not data:
            raise ValidationError("At least one field must be given")


class AccountOut(Schema):
    """An account as the API returns it (never the password)."""

    id = UUID()
    tenantId = UUID(attribute="tenant_id")
    userId = UUID(attribute="user_id")
    accountName = String(attribute="account_name")
    emailAddress = String(attribute="email_address")
    protocol = String()
    hostname = String()
    port = Integer()
    encryption = String()
    username = String()
    smtpHostname = String(attribute="smtp_hostname", allow_none=True)
    smtpPort = Integer(attribute="smtp_port", allow_none=True)
    smtpEncryption = String(attribute="smtp_encryption", allow_none=True)
    smtpUsername = String(attribute="smtp_username", allow_none=True)
    isSyncEnabled = Boolean(attribute="is_sync_enabled")
    syncInterval = Integer(attribute="sync_interval")
    lastSyncAt = Integer(attribute="last_sync_at", allow_none=True)
    isSyncing = Boolean(attribute="is_syncing")
    isEnabled = Boolean(attribute="is_enabled")
    createdAt = Integer(attribute="created_at")
    updatedAt = Integer(attribute="updated_at")


#: Largest ``offset`` accepted: a 32-bit bound, so that the database never sees an integer it cannot hold.
MAX_OFFSET = 2**31 - 1


def offset_field() -> Integer:
    """``offset`` query parameter: 0 to :data:`MAX_OFFSET`, default 0."""
    message = f"offset must be between 0 and {MAX_OFFSET}"
    return Integer(load_default=0, validate=Range(0, MAX_OFFSET, error=message))


class PaginationQuery(Schema):
    """``limit`` (1-100, default 100) and ``offset`` (0 to 2**31-1, default 0)."""

    limit = Integer(load_default=100, validate=Range(1, 100, error="limit must be between 1 and 100"))
    offset = offset_field()


class PaginationOut(Schema):
    """Page bounds of a list response."""

    total = Integer()
    limit = Integer()
    offset = Integer()


class AccountListItemOut(AccountOut):
    """An account in a list (same fields as :class:`AccountOut`; its own component for client generators)."""


class AccountListOut(Schema):
    """``{"accounts": [...], "pagination": {...}}`` (seed 000)."""

    accounts = List(Nested(AccountListItemOut))
    pagination = Nested(PaginationOut)


class DeletedOut(Schema):
    """``{"message": "Account deleted successfully", "id": ...}`` (seed 000)."""

    message = String()
    id = UUID()


class ErrorOut(Schema):
    """Error body of every 4xx/5xx: ``error`` kind, ``message`` sentence, optional field ``details``."""

    error = String(required=True)
    message = String(required=True)
    details = Dict(required=False)


class HealthOut(Schema):
    """``GET /health`` (seed 000) plus the database check."""

    status = String()
    service = String()
    version = String()
    database = String()


class TokenIn(Schema):
    """``POST /test/generate-token`` body (seed 001; development only)."""

    tenant_id = UUID(required=True, error_messages=_required("tenant_id"))
    user_id = UUID(required=True, error_messages=_required("user_id"))
    role = String(load_default="user", validate=OneOf(("user", "admin")))
    expires_in_hours = WholeNumber(load_default=None, allow_none=True, validate=Range(1, 24 * 30))


class TokenOut(Schema):
    """A signed token and its lifetime in seconds."""

    token = String()
    token_type = String()
    expires_in = Integer()
