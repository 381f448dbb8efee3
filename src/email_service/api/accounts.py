"""Accounts API (seed 000): list, create, get, update, soft delete; admin listing (seed 001)."""

from __future__ import annotations

import uuid
from typing import Any

from apiflask import APIBlueprint

from email_service.services import accounts as service

from . import examples
from .auth import current_principal, verify_role
from .common import AUTH_ERRORS, snake
from .context import service_context
from .gate import guard
from .openapi import account_links
from .schemas import AccountCreateIn, AccountListOut, AccountOut, AccountUpdateIn, DeletedOut, PaginationQuery

bp = guard(
    APIBlueprint(
        "accounts",
        __name__,
        tag={"name": "Accounts", "description": "Mail accounts of the caller (seed 000); the admin listing (seed 001)"},
    )
)


def _page(page: service.Page, key: str) -> dict[str, Any]:
    return {key: page.items, "pagination": {"total": page.total, "limit": page.limit, "offset": page.offset}}


@bp.get("/accounts")
@bp.input(PaginationQuery, location="query")
@bp.output(AccountListOut, example=examples.ACCOUNT_LIST, links=account_links("$response.body#/accounts/0/id"))
@bp.doc(
    summary="List the caller's mail accounts",
    description="The caller's own accounts (not deleted), oldest first, `limit` (1-100, default 100) from `offset`.",
    operation_id="listAccounts",
    responses=AUTH_ERRORS,
)
def list_accounts(query_data: dict[str, Any]) -> dict[str, Any]:
    page = service.list_accounts(service_context(), principal=current_principal(), **query_data)
    return _page(page, "accounts")


@bp.post("/accounts")
@bp.input(AccountCreateIn, location="json", example=examples.ACCOUNT_CREATE)
@bp.output(AccountOut, status_code=201, example=examples.ACCOUNT, links=account_links("$response.body#/id"))
@bp.doc(
    summary="Register a mail account",
    description="Stores the account and its password (encrypted, never returned). 409 when the caller already has "
    "an account with this address. The server is not contacted; use `POST /accounts/{account_id}/test` for that.",
    operation_id="createAccount",
    responses=[*AUTH_ERRORS, 409, 415],
)
def create_account(json_data: dict[str, Any]) -> Any:
    fields = snake(json_data)
    password = fields.pop("password")
    return service.create_account(service_context(), principal=current_principal(), fields=fields, password=password)


@bp.get("/accounts/<uuid:account_id>")
@bp.output(AccountOut, example=examples.ACCOUNT)
@bp.doc(
    summary="Get one mail account",
    description="403 for another user's account of the same tenant (admins may read it), 404 for another tenant's.",
    operation_id="getAccount",
    responses=AUTH_ERRORS,
)
def get_account(account_id: uuid.UUID) -> Any:
    return service.get_account(service_context(), principal=current_principal(), account_id=account_id)


@bp.put("/accounts/<uuid:account_id>")
@bp.input(AccountUpdateIn, location="json", example=examples.ACCOUNT_UPDATE)
@bp.output(AccountOut, example=examples.ACCOUNT)
@bp.doc(
    summary="Change a mail account",
    description="Changes the fields given (at least one); a new `password` replaces the stored one.",
    operation_id="updateAccount",
    responses=[*AUTH_ERRORS, 409, 415],
)
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
@bp.output(DeletedOut, example=examples.DELETED)
@bp.doc(
    summary="Delete a mail account (soft delete; credentials destroyed)",
    description="The account disappears from every read and its sync stops; its address may be registered again.",
    operation_id="deleteAccount",
    responses=AUTH_ERRORS,
)
def delete_account(account_id: uuid.UUID) -> dict[str, Any]:
    account = service.delete_account(service_context(), principal=current_principal(), account_id=account_id)
    return {"message": "Account deleted successfully", "id": account.id}


@bp.get("/admin/accounts")
@verify_role("admin")  # checked before the query string too: a non-admin gets 403 whatever it holds
@bp.input(PaginationQuery, location="query")
@bp.output(AccountListOut, example=examples.ACCOUNT_LIST)
@bp.doc(
    summary="List every mail account of the caller's tenant (admin)",
    description="Role `admin` only (403 otherwise); never another tenant's accounts.",
    operation_id="adminListAccounts",
    responses=AUTH_ERRORS,
)
def admin_list_accounts(query_data: dict[str, Any]) -> dict[str, Any]:
    page = service.list_accounts(service_context(), principal=current_principal(), whole_tenant=True, **query_data)
    return _page(page, "accounts")
