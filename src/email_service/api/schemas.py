"""Request and response schemas (marshmallow): they validate input and generate the OpenAPI spec.

Field names are camelCase, times integer epoch milliseconds, ids UUID strings (DESIGN.md section 5).  Validation
messages follow seed 000 (e.g. "Port must be between 1 and 65535").
"""

from __future__ import annotations

import re
from typing import Any

from apiflask import Schema
from apiflask.fields import UUID, Dict, Integer, List, Nested, String
from apiflask.validators import Length, OneOf, Range
from marshmallow import ValidationError, post_load, validates_schema

from email_service.security.tokens import ROLES

from .fields import Boolean, EmailAddress, FullMatch, QuerySchema, Text, WholeNumber

PROTOCOLS = ("imap", "pop3")
ENCRYPTIONS = ("none", "tls", "starttls")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_TOP_LABEL = r"[A-Za-z](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"  # RFC 3696 section 2: the last label is not numeric
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
#: A DNS name (RFC 1123 labels) or a dotted IPv4 address; also the ``pattern`` of the field in the OpenAPI spec.
_HOSTNAME_PATTERN = re.compile(rf"^(?:{_LABEL}\.)*{_TOP_LABEL}$|^(?:{_OCTET}\.){{3}}{_OCTET}$")


_HOSTNAME = FullMatch(_HOSTNAME_PATTERN, error="Hostname must be a DNS name or an IPv4 address")


def _required(name: str) -> dict[str, str | list[Any] | dict[Any, Any]]:
    return {"required": f"{name} is required", "null": f"{name} must not be null"}


def _port(name: str, *, required: bool = False) -> Integer:
    return WholeNumber(
        required=required,
        validate=Range(1, 65535, error="Port must be between 1 and 65535"),
        error_messages=_required(name),
        metadata={"description": "TCP port, 1-65535"},
    )


class _AccountWritable(Schema):
    accountName = Text(validate=Length(1, 255), error_messages=_required("accountName"))
    emailAddress = EmailAddress(validate=Length(3, 254), error_messages=_required("emailAddress"))
    protocol = Text(
        validate=OneOf(PROTOCOLS, error="Protocol must be imap or pop3"), error_messages=_required("protocol")
    )
    hostname = Text(validate=[Length(1, 253), _HOSTNAME], error_messages=_required("hostname"))
    port = _port("port")
    encryption = Text(validate=OneOf(ENCRYPTIONS, error="Encryption must be none, tls or starttls"))
    username = Text(validate=Length(1, 255), error_messages=_required("username"))
    password = Text(validate=Length(1, 1024), load_only=True, error_messages=_required("password"))
    isSyncEnabled = Boolean()
    syncInterval = WholeNumber(
        validate=Range(60, 7 * 86400, error="syncInterval must be between 60 and 604800 seconds"),
        metadata={"description": "Seconds between scheduled syncs"},
    )
    smtpHostname = Text(validate=[Length(1, 253), _HOSTNAME], allow_none=True)
    smtpPort = WholeNumber(validate=Range(1, 65535, error="Port must be between 1 and 65535"), allow_none=True)
    smtpEncryption = Text(
        validate=OneOf(ENCRYPTIONS),
        allow_none=True,
        metadata={"description": "none | tls (implicit TLS) | starttls"},
    )
    smtpUsername = Text(
        validate=Length(1, 255),
        allow_none=True,
        metadata={"description": "Defaults to the IMAP/POP3 username"},
    )
    saveSentCopy = Boolean(
        metadata={"description": "APPEND sent mail to the Sent folder (default true); false when the server keeps one"}
    )


class AccountCreateIn(_AccountWritable):
    """POST /accounts body (seed 000 validation rules)."""

    accountName = Text(required=True, validate=Length(1, 255), error_messages=_required("accountName"))
    emailAddress = EmailAddress(required=True, validate=Length(3, 254), error_messages=_required("emailAddress"))
    protocol = Text(
        required=True,
        validate=OneOf(PROTOCOLS, error="Protocol must be imap or pop3"),
        error_messages=_required("protocol"),
    )
    hostname = Text(required=True, validate=[Length(1, 253), _HOSTNAME], error_messages=_required("hostname"))
    port = _port("port", required=True)
    encryption = Text(load_default="tls", validate=OneOf(ENCRYPTIONS, error="Encryption must be none, tls or starttls"))
    username = Text(required=True, validate=Length(1, 255), error_messages=_required("username"))
    password = Text(required=True, validate=Length(1, 1024), load_only=True, error_messages=_required("password"))
    isSyncEnabled = Boolean(load_default=True)
    syncInterval = WholeNumber(
        load_default=300,
        validate=Range(60, 7 * 86400, error="syncInterval must be between 60 and 604800 seconds"),
    )


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
    saveSentCopy = Boolean(attribute="save_sent_copy")
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


class PaginationQuery(QuerySchema):
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


class ReadyOut(Schema):
    """``GET /ready``: ``checks`` maps each part (database, migrations, redis, broker) to ``ok`` or a reason;
    a 503 adds ``error`` and ``message`` naming the failing parts."""

    status = String(required=True)
    checks = Dict(keys=String(), values=String(), required=True)
    error = String()
    message = String()


#: Seed 001's names of the token request -> the API's camelCase names; either is accepted, one per value.
TOKEN_SEED_NAMES = {"tenant_id": "tenantId", "user_id": "userId", "expires_in_hours": "expiresInHours"}
_SEED_NAME = "Seed 001 name of {}; give one of the two"


class TokenIn(Schema):
    """``POST /test/generate-token`` body (development only): ``tenantId``, ``userId`` (required), ``role``
    (``user``), ``expiresInHours`` (1-720); seed 001's ``tenant_id``, ``user_id``, ``expires_in_hours`` name the same
    values.  Loads to the camelCase names."""

    tenantId = UUID()
    userId = UUID()
    role = Text(load_default="user", validate=OneOf(ROLES, error="role must be user or admin"))
    expiresInHours = WholeNumber(allow_none=True, validate=Range(1, 24 * 30))
    tenant_id = UUID(metadata={"description": _SEED_NAME.format("tenantId")})
    user_id = UUID(metadata={"description": _SEED_NAME.format("userId")})
    expires_in_hours = WholeNumber(
        allow_none=True, validate=Range(1, 24 * 30), metadata={"description": _SEED_NAME.format("expiresInHours")}
    )

    @validates_schema
    def _one_name_each(self, data: dict[str, Any], **_: Any) -> None:
        errors: dict[str, list[str]] = {}
        for seed, camel in TOKEN_SEED_NAMES.items():
            if seed in data and camel in data:
                errors[camel] = [f"give {camel} or {seed}, not both"]
            elif camel != "expiresInHours" and seed not in data and camel not in data:
                errors[camel] = [f"{camel} is required"]
        if errors:
            raise ValidationError(errors)

    @post_load
    def _camel_names(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        return {TOKEN_SEED_NAMES.get(key, key): value for key, value in data.items()}


class TokenOut(Schema):
    """A signed token, its type (``Bearer``) and its lifetime in seconds."""

    token = String()
    tokenType = String()
    expiresIn = Integer()


def _exactly_one_of(*names: str) -> dict[str, Any]:
    return {"oneOf": [{"required": [name]} for name in names]}


#: JSON Schema rules of request bodies that marshmallow fields cannot state, by component name; the OpenAPI
#: document adds them (:func:`email_service.api.openapi.finish_document`).
_MESSAGE_CHANGES = ("isRead", "isFlagged", "isAnswered", "keywords", "folderId")
_ANY_MESSAGE_CHANGE = {"anyOf": [{"required": [name]} for name in _MESSAGE_CHANGES]}
_DRAFT_FIELDS = ("to", "cc", "bcc", "subject", "textBody", "htmlBody", "attachments")
_ANY_DRAFT_FIELD = {"anyOf": [{"required": [name]} for name in _DRAFT_FIELDS]}
SCHEMA_RULES: dict[str, dict[str, Any]] = {
    # PUT /messages/{id}: draft fields (a draft) or the changes of PATCH, not both (issue 9).
    "MessageReplaceIn": {
        "oneOf": [
            {**_ANY_DRAFT_FIELD, "not": _ANY_MESSAGE_CHANGE},
            {**_ANY_MESSAGE_CHANGE, "not": _ANY_DRAFT_FIELD},
        ]
    },
    "AccountUpdateIn": {"minProperties": 1},
    "MessageUpdateIn": {"minProperties": 1},
    "FolderUpdateIn": {"minProperties": 1},
    # A batch carries changes, or delete: true (with permanent, optionally) -- never both, never neither.
    "BatchIn": {
        "oneOf": [
            {"required": ["delete"], "properties": {"delete": {"const": True}}, "not": _ANY_MESSAGE_CHANGE},
            {**_ANY_MESSAGE_CHANGE, "not": {"required": ["permanent"]}, "properties": {"delete": {"const": False}}},
        ]
    },
    "TokenIn": {
        "allOf": [
            _exactly_one_of("tenantId", "tenant_id"),
            _exactly_one_of("userId", "user_id"),
            {"not": {"required": ["expiresInHours", "expires_in_hours"]}},
        ]
    },
}
