"""JWT access tokens (RFC 7519; seed 001): HS256 by default, ``exp`` required, tenant/user/role claims."""

from __future__ import annotations

import datetime as dt
import math
import uuid
from dataclasses import dataclass
from typing import Any

import jwt

from email_service.errors import InvalidInput, Unauthorized

ROLES = ("user", "admin")


@dataclass(frozen=True)
class TokenConfig:
    """Signing settings: secret (masked in repr), algorithm, lifetime in hours, optional iss/aud."""

    secret: str
    algorithm: str = "HS256"
    expiration_hours: int = 24
    issuer: str | None = None
    audience: str | None = None

    def __repr__(self) -> str:
        return f"TokenConfig(algorithm={self.algorithm!r}, expiration_hours={self.expiration_hours})"


@dataclass(frozen=True)
class Principal:
    """Who is calling: tenant, user and role (``user`` or ``admin``)."""

    tenant_id: uuid.UUID
    user_id: uuid.UUID
    role: str = "user"

    @property
    def is_admin(self) -> bool:
        """True for the ``admin`` role (sees every row of its own tenant, never another tenant's)."""
        return self.role == "admin"


def parse_uuid(value: Any, what: str) -> uuid.UUID:
    """Parse a UUID string.

    Raises:
        InvalidInput: not a UUID; message "<what> must be valid UUID" (seed 001 400 body).
    """
    try:
        return uuid.UUID(str(value))
    except (ValueError, TypeError, AttributeError):
        raise InvalidInput(f"{what} must be valid UUID") from None


def create_jwt_token(
    config: TokenConfig,
    *,
    tenant_id: str | uuid.UUID,
    user_id: str | uuid.UUID,
    role: str = "user",
    expires_in_hours: float | None = None,
) -> str:
    """Sign a token with ``tenant_id``, ``user_id``, ``role``, ``iat`` and ``exp`` (+ ``iss``/``aud``).

    Raises:
        InvalidInput: a malformed UUID or an unknown role.
    """
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)}")
    now = dt.datetime.now(dt.UTC)
    hours = config.expiration_hours if expires_in_hours is None else expires_in_hours
    claims: dict[str, Any] = {
        "tenant_id": str(parse_uuid(tenant_id, "Tenant ID")),
        "user_id": str(parse_uuid(user_id, "User ID")),
        "role": role,
        "iat": now,
        "exp": now + dt.timedelta(hours=hours),
    }
    if config.issuer:
        claims["iss"] = config.issuer
    if config.audience:
        claims["aud"] = config.audience
    return jwt.encode(claims, config.secret, algorithm=config.algorithm)


def decode_jwt_token(config: TokenConfig, token: str) -> Principal:
    """Verify signature, ``exp`` (required), ``iss``/``aud`` when configured, and the claims' types
    (:func:`principal_from_claims`).

    Raises:
        Unauthorized: expired, bad signature, malformed, or claims missing or of the wrong type.
    """
    try:
        claims = jwt.decode(
            token,
            config.secret,
            algorithms=[config.algorithm],
            issuer=config.issuer,
            audience=config.audience,
            options={"require": ["exp", "tenant_id", "user_id"]},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("Token has expired") from None
    except jwt.InvalidTokenError:
        raise Unauthorized("Invalid token") from None
    return principal_from_claims(claims)


def _numeric_date(value: Any) -> bool:
    """RFC 7519 section 2 NumericDate: a JSON number (not a string, not a boolean), finite."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def principal_from_claims(claims: dict[str, Any]) -> Principal:
    """The caller named by verified claims, after checking their types: ``exp``/``iat``/``nbf`` NumericDates
    (PyJWT takes ``"1796024380"`` for a number), ``tenant_id``/``user_id`` UUID strings, ``role`` ``user`` or
    ``admin`` (``user`` when absent, seed 001).

    Raises:
        Unauthorized: "Invalid token" for any claim of the wrong type or value.
    """
    dates_ok = all(_numeric_date(claims[name]) for name in ("exp", "iat", "nbf") if name in claims)
    role = claims.get("role", "user")
    ids = [claims["tenant_id"], claims["user_id"]]
    if not dates_ok or role not in ROLES or not all(isinstance(value, str) for value in ids):
        raise Unauthorized("Invalid token")
    try:
        tenant_id, user_id = (uuid.UUID(value) for value in ids)
    except ValueError:
        raise Unauthorized("Invalid token") from None
    return Principal(tenant_id, user_id, role)
