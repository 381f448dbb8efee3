"""Accounts API (seed 000): list, create, get, update, soft delete; admin listing (seed 001)."""

from __future__ import annotations

import uuid
from typing import Any

from apiflask import APIBlueprint

from email_service.services import accounts as service

from .auth import current_principal, require_authentication, verify_role
from .common import AUTH_ERRORS, require_json_body, snake
from .context import service_context
from .schemas import AccountCreateIn, AccountListOut, AccountOut, AccountUpdateIn, DeletedOut, PaginationQuery

bp = APIBlueprint("accounts", __name__, tag="Accounts")
bp.before_request(require_authentication)
bp.before_request(require_json_body)


def _page(page: service.Page, key: str) -> dict[str, Any]:
    return {key: page.items, "pagination": {"total": page.total, "limit": page.limit, "offset": page.offset}}


@bp.get("/accounts")
@bp.input(PaginationQuery, location="query")
@bp.output(AccountListOut)
@bp.doc(summary="List the caller's mail accounts", responses=AUTH_ERRORS)
def list_accounts(query_data: dict[str, Any]) -> dict[str, Any]:
    page = service.list_accounts(service_context(), principal=current_principal(), **query_data)
    return _page(page, "accounts")


@bp.post("/accounts")
@bp.input(AccountCreateIn, location="json")
@bp.output(AccountOut, status_code=201)
@bp.doc(summary="Register a mail account", responses=[*AUTH_ERRORS, 409, 415])
def create_account(json_data: dict[str, Any]) -> Any:
    fields = snake(json_data)
    password = fields.pop("password")
    return service.create_account(service_context(), principal=current_principal(), fields=fields, password=password)


@bp.get("/accounts/<uuid:account_id>")
@bp.output(AccountOut)
@bp.doc(summary="Get one mail account", responses=AUTH_ERRORS)
def get_account(account_id: uuid.UUID) -> Any:
    return service.get_account(service_context(), principal=current_principal(), account_id=account_id)


@bp.put("/accounts/<uuid:account_id>")
@bp.input(AccountUpdateIn, location="json")
@bp.output(AccountOut)
@bp.doc(summary="Change a mail account", responses=[*AUTH_ERRORS, 409, 415])
def update_account(account_id: uuid.UUID, json_data: dict[str, Any]) -> Any:
    fields = snake(json_data)
    password = fields.pop("password", None)
    return service.update_account(
        service_context(),
        principal=current_principal(),
        account_id=account_id,
        fields=fields,
        password=password,
    )


@bp.delete("/accounts/<uuid:account_id>")
@bp.output(DeletedOut)
@bp.doc(summary="Delete a mail account (soft delete; credentials destroyed)", responses=AUTH_ERRORS)
def delete_account(account_id: uuid.UUID) -> dict[str, Any]:
    account = service.delete_account(service_context(), principal=current_principal(), account_id=account_id)
    return {"message": "Account deleted successfully", "id": account.id}


@bp.get("/admin/accounts")
@verify_role("admin")  # outside @bp.input: a non-admin gets 403 whatever the query string holds
@bp.input(PaginationQuery, location="query")
@bp.output(AccountListOut)
@bp.doc(summary="List every mail account of the caller's tenant (admin)", responses=AUTH_ERRORS)
def admin_list_accounts(query_data: dict[str, Any]) -> dict[str, Any]:
    page = service.list_accounts(service_context(), principal=current_principal(), whole_tenant=True, **query_data)
    return _page(page, "accounts")
