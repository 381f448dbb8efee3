"""Row-level access rules of seed 001: a user sees only their own rows, an admin the whole tenant's, nobody
crosses tenants.  Another tenant's rows are reported as missing (404) so that their existence is not revealed."""

from __future__ import annotations

import uuid

from email_service.errors import Forbidden, NotFound
from email_service.security.tokens import Principal


def verify_resource_access(
    principal: Principal,
    resource_tenant_id: uuid.UUID,
    resource_user_id: uuid.UUID,
    *,
    what: str = "Resource",
) -> None:
    """Allow access to a row owned by ``(resource_tenant_id, resource_user_id)``.

    Raises:
        NotFound: the row belongs to another tenant (even for admins).
        Forbidden: same tenant, another user's row, and the caller is not an admin.
    """
    if resource_tenant_id != principal.tenant_id:
        raise NotFound(f"{what} not found")
    if resource_user_id != principal.user_id and not principal.is_admin:
        raise Forbidden(f"Access denied to this {what.lower()}")


def owner_filter_user(principal: Principal) -> uuid.UUID | None:
    """User id lists must be restricted to: the caller's own for users, ``None`` (whole tenant) for admins."""
    return None if principal.is_admin else principal.user_id
