"""Account use cases (seed 000): create, list, get, update, soft delete, credentials (key rotation:
:mod:`email_service.services.key_rotation`).

Inputs arrive validated in shape by the API schemas; this module applies the business rules: one live account per
address and user (409), host rules, encryption of the password (never returned, never logged), audit entries.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from email_service.db import insert_ignoring_conflicts
from email_service.errors import Conflict, NotFound
from email_service.models import AuditLog, EmailAccount, EmailCredential, Tenant, now_ms
from email_service.security.tokens import Principal
from email_service.services.access import owner_filter_user, verify_resource_access
from email_service.services.context import ServiceContext
from email_service.services.hosts import check_mail_host


class _AccountLike(Protocol):
    """What the visibility rule reads of an account: an entity or a row of these columns."""

    @property
    def tenant_id(self) -> uuid.UUID: ...
    @property
    def user_id(self) -> uuid.UUID: ...
    @property
    def deleted_at(self) -> int | None: ...


_AccountT = TypeVar("_AccountT", bound=_AccountLike)

#: Account attributes that may be set on create and changed on update (API camelCase is mapped by the API).
ACCOUNT_FIELDS = (
    "account_name",
    "email_address",
    "protocol",
    "hostname",
    "port",
    "encryption",
    "username",
    "is_sync_enabled",
    "sync_interval",
    "is_enabled",
    "smtp_hostname",
    "smtp_port",
    "smtp_encryption",
    "smtp_username",
    "save_sent_copy",
)


@dataclass(frozen=True)
class Page:
    """One page of a list: ``items`` plus ``total`` rows matching, and the ``limit``/``offset`` used."""

    items: list[Any]
    total: int
    limit: int
    offset: int


def audit(
    session: Session,
    principal: Principal | None,
    *,
    tenant_id: uuid.UUID,
    action: str,
    resource_type: str,
    resource_id: uuid.UUID | None,
    details: dict[str, Any] | None = None,
) -> None:
    """Append an audit entry in the current transaction (never include secrets in ``details``)."""
    session.add(
        AuditLog(
            tenant_id=tenant_id,
            user_id=principal.user_id if principal else None,
            action=action,
            resource_type=resource_type,
            resource_id=str(resource_id) if resource_id else None,
            details=details or {},
        )
    )


def _register_tenant(ctx: ServiceContext, tenant_id: uuid.UUID) -> None:
    """Add the tenant to the registry; idempotent, also when a tenant's first requests race each other
    (``INSERT ... ON CONFLICT DO NOTHING`` on the primary key, never read-then-write)."""
    with ctx.db.system_session() as session:
        insert_ignoring_conflicts(session, Tenant, [{"tenant_id": tenant_id, "created_at": now_ms()}])


def _live_duplicate(session: Session, account: EmailAccount, address: str) -> bool:
    stmt = select(EmailAccount.id).where(
        EmailAccount.tenant_id == account.tenant_id,
        EmailAccount.user_id == account.user_id,
        func.lower(EmailAccount.email_address) == address.lower(),
        EmailAccount.deleted_at.is_(None),
        EmailAccount.id != account.id,
    )
    return session.execute(stmt).first() is not None


def _set_password(ctx: ServiceContext, session: Session, account: EmailAccount, password: str) -> None:
    ciphertext, key_id = ctx.cipher.encrypt(password, tenant_id=account.tenant_id, account_id=account.id)
    credential = session.get(EmailCredential, account.credential_id) if account.credential_id else None
    if credential is None:
        credential = EmailCredential(tenant_id=account.tenant_id, account_id=account.id, ciphertext="", key_id="")
        session.add(credential)
        session.flush()
        account.credential_id = credential.id
    credential.ciphertext = ciphertext
    credential.key_id = key_id


def _check_hosts(ctx: ServiceContext, fields: dict[str, Any]) -> None:
    """Refuse given hosts the guarded connector would refuse (DESIGN.md section 2); errors name the API field."""
    for name, api_field in (("hostname", "hostname"), ("smtp_hostname", "smtpHostname")):
        if fields.get(name):
            check_mail_host(fields[name], ctx.host_policy, field=api_field)


def create_account(ctx: ServiceContext, *, principal: Principal, fields: dict[str, Any], password: str) -> EmailAccount:
    """Create an account of the caller with its encrypted password.

    Args:
        fields: validated attributes named as in :data:`ACCOUNT_FIELDS` (missing optional ones take defaults).
        password: plaintext mail password; encrypted before it touches the database.

    Raises:
        Conflict: the caller already has a live account with this address (409, seed 000).
        InvalidInput: a host resolves to a forbidden address (DESIGN.md section 2).
    """
    _check_hosts(ctx, fields)
    _register_tenant(ctx, principal.tenant_id)
    try:
        with ctx.db.tenant_session(principal.tenant_id) as session:
            account = EmailAccount(id=uuid.uuid4(), tenant_id=principal.tenant_id, user_id=principal.user_id)
            for name in ACCOUNT_FIELDS:
                if name in fields:
                    setattr(account, name, fields[name])
            if _live_duplicate(session, account, account.email_address):
                raise Conflict("Email already registered")
            session.add(account)
            session.flush()
            _set_password(ctx, session, account, password)
            audit(
                session,
                principal,
                tenant_id=account.tenant_id,
                action="account.create",
                resource_type="email_account",
                resource_id=account.id,
                details={"emailAddress": account.email_address},
            )
    except IntegrityError:
        raise Conflict("Email already registered") from None
    return account


def load_account(session: Session, principal: Principal, account_id: uuid.UUID) -> EmailAccount:
    """A live account visible to ``principal`` in the open ``session``.

    Raises:
        NotFound: no such live account in the caller's tenant.
        Forbidden: another user's account and the caller is not an admin.
    """
    return require_visible_account(principal, session.get(EmailAccount, account_id))


#: What :func:`require_visible_account` reads of an account: the columns a statement of plain columns selects for it.
VISIBILITY_COLUMNS = (EmailAccount.tenant_id, EmailAccount.user_id, EmailAccount.deleted_at)


def require_visible_account(principal: Principal, account: _AccountT | None) -> _AccountT:
    """``account`` after the rule of :func:`load_account`, for an account read any way (an entity, or a row with
    :data:`VISIBILITY_COLUMNS`; ``None`` when there is no such row).

    Raises:
        NotFound: no such row, or the account is deleted.
        Forbidden: another user's account and the caller is not an admin.
    """
    if account is None or account.deleted_at is not None:
        raise NotFound("Account not found")
    verify_resource_access(principal, account.tenant_id, account.user_id, what="Account")
    return account


def get_account(ctx: ServiceContext, *, principal: Principal, account_id: uuid.UUID) -> EmailAccount:
    """One live account the caller may see.

    Raises:
        NotFound: no such live account in the caller's tenant.
        Forbidden: another user's account and the caller is not an admin.
    """
    with ctx.db.tenant_session(principal.tenant_id) as session:
        return load_account(session, principal, account_id)


def list_accounts(
    ctx: ServiceContext, *, principal: Principal, limit: int, offset: int, whole_tenant: bool = False
) -> Page:
    """Live accounts of the caller, or of the whole tenant when ``whole_tenant`` (admins), oldest first."""
    user_id = owner_filter_user(principal) if whole_tenant else principal.user_id
    with ctx.db.tenant_session(principal.tenant_id) as session:
        conditions = [EmailAccount.tenant_id == principal.tenant_id, EmailAccount.deleted_at.is_(None)]
        if user_id is not None:
            conditions.append(EmailAccount.user_id == user_id)
        total = session.execute(select(func.count()).select_from(EmailAccount).where(*conditions)).scalar_one()
        rows = session.execute(
            select(EmailAccount)
            .where(*conditions)
            .order_by(EmailAccount.created_at, EmailAccount.id)
            .limit(limit)
            .offset(offset)
        ).scalars()
        return Page(items=list(rows), total=int(total), limit=limit, offset=offset)


def update_account(
    ctx: ServiceContext,
    *,
    principal: Principal,
    account_id: uuid.UUID,
    fields: dict[str, Any],
    password: str | None = None,
) -> EmailAccount:
    """Change the given attributes (and the password when given).

    Raises:
        NotFound / Forbidden: as :func:`get_account`.
        Conflict: the new address is taken by another live account of the same user.
        InvalidInput: a new host resolves to a forbidden address.
    """
    _check_hosts(ctx, fields)
    try:
        with ctx.db.tenant_session(principal.tenant_id) as session:
            account = load_account(session, principal, account_id)
            if "email_address" in fields and _live_duplicate(session, account, fields["email_address"]):
                raise Conflict("Email already registered")
            for name in ACCOUNT_FIELDS:
                if name in fields:
                    setattr(account, name, fields[name])
            if password is not None:
                _set_password(ctx, session, account, password)
            account.updated_at = now_ms()
            changed = sorted(fields) + (["password"] if password is not None else [])
            audit(
                session,
                principal,
                tenant_id=account.tenant_id,
                action="account.update",
                resource_type="email_account",
                resource_id=account.id,
                details={"fields": changed},
            )
    except IntegrityError:
        raise Conflict("Email already registered") from None
    return account


def delete_account(ctx: ServiceContext, *, principal: Principal, account_id: uuid.UUID) -> EmailAccount:
    """Soft delete: the account disappears from GET/list, sync stops, its credentials are destroyed.

    Raises:
        NotFound / Forbidden: as :func:`get_account`.
    """
    with ctx.db.tenant_session(principal.tenant_id) as session:
        account = load_account(session, principal, account_id)
        now = now_ms()
        account.deleted_at = now
        account.is_enabled = False
        account.is_sync_enabled = False
        account.updated_at = now
        for credential in session.execute(
            select(EmailCredential).where(EmailCredential.account_id == account.id)
        ).scalars():
            session.delete(credential)
        account.credential_id = None
        audit(
            session,
            principal,
            tenant_id=account.tenant_id,
            action="account.delete",
            resource_type="email_account",
            resource_id=account.id,
        )
    return account


def account_password(ctx: ServiceContext, session: Session, account: EmailAccount) -> str:
    """Decrypt the account's password for a login (IMAP/POP3/SMTP); never log or return it.

    Raises:
        NotFound: the account has no credential (deleted).
        CredentialDecryptionError: the ciphertext does not decrypt with the configured keys.
    """
    credential = session.get(EmailCredential, account.credential_id) if account.credential_id else None
    if credential is None:
        raise NotFound("Account has no stored credential")
    return ctx.cipher.decrypt(credential.ciphertext, tenant_id=account.tenant_id, account_id=account.id)
