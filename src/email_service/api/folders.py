"""Folders (issue 8): create, read one, rename or move, delete -- locally at once, then written back (IMAP
CREATE / RENAME / DELETE, names in modified UTF-7 on the wire, plain Unicode here)."""

from __future__ import annotations

import uuid
from typing import Any

from apiflask import APIBlueprint

from email_service.services import folders as service

from . import examples
from .auth import current_principal
from .change_schemas import FolderCreateIn, FolderDeletedOut, FolderDetailOut, FolderUpdateIn
from .common import AUTH_ERRORS
from .context import service_context
from .gate import guard

bp = guard(
    APIBlueprint(
        "folders", __name__, tag={"name": "Mailbox", "description": "Folders and messages of the mirrored mailbox"}
    )
)
WRITE_ERRORS = [*AUTH_ERRORS, 409, 413, 415]


def _body(view: service.FolderView) -> dict[str, Any]:
    folder = view.folder
    return {
        "id": folder.id,
        "account_id": folder.account_id,
        "name": folder.name,
        "delimiter": folder.delimiter,
        "type": folder.type,
        "attributes": folder.attributes,
        "total_count": folder.total_count,
        "unread_count": folder.unread_count,
        "is_selectable": folder.is_selectable,
        "last_synced_at": folder.last_synced_at,
        "parentId": view.parent_id,
        "pendingChanges": view.pending,
    }


@bp.post("/accounts/<uuid:account_id>/folders")
@bp.input(FolderCreateIn, location="json", example=examples.FOLDER_CREATE)
@bp.output(FolderDetailOut, status_code=201, example=examples.FOLDER)
@bp.doc(
    summary="Create a folder",
    operation_id="createFolder",
    description=(
        "Creates name (one hierarchy level, Unicode) at the top level or under parentId, joined with the server's "
        "hierarchy delimiter. 400 for a name containing the delimiter, control characters or * %; 409 when the "
        "name exists or the account was never synced. Written back with IMAP CREATE (modified UTF-7 on the wire)."
    ),
    responses=WRITE_ERRORS,
)
def create_folder(account_id: uuid.UUID, json_data: dict[str, Any]) -> Any:
    view = service.create_folder(
        service_context(),
        principal=current_principal(),
        account_id=account_id,
        name=json_data["name"],
        parent_id=json_data.get("parentId"),
    )
    return _body(view), 201


@bp.get("/folders/<uuid:folder_id>")
@bp.output(FolderDetailOut, example=examples.FOLDER)
@bp.doc(
    summary="One folder with its role, counts and parent",
    description="`pendingChanges` is true while a create or rename of it waits to be written back.",
    operation_id="getFolder",
    responses=AUTH_ERRORS,
)
def get_folder(folder_id: uuid.UUID) -> dict[str, Any]:
    return _body(service.get_folder(service_context(), principal=current_principal(), folder_id=folder_id))


@bp.patch("/folders/<uuid:folder_id>")
@bp.input(FolderUpdateIn, location="json", example=examples.FOLDER_UPDATE)
@bp.output(FolderDetailOut, example=examples.FOLDER)
@bp.doc(
    summary="Rename a folder or move it under another parent",
    operation_id="updateFolder",
    description=(
        "A new name and/or parentId (null: the top level). Subfolders follow. 409 for the inbox, sent, drafts and "
        "trash folders and for a name that exists. Written back with IMAP RENAME."
    ),
    responses=WRITE_ERRORS,
)
def update_folder(folder_id: uuid.UUID, json_data: dict[str, Any]) -> dict[str, Any]:
    view = service.update_folder(
        service_context(),
        principal=current_principal(),
        folder_id=folder_id,
        name=json_data.get("name"),
        parent_id=json_data.get("parentId", service.KEEP),
    )
    return _body(view)


@bp.delete("/folders/<uuid:folder_id>")
@bp.output(FolderDeletedOut, example=examples.FOLDER_DELETED)
@bp.doc(
    summary="Delete a folder and its messages",
    operation_id="deleteFolder",
    description=(
        "409 for the inbox, sent, drafts and trash folders and for a folder with subfolders. Its messages go with "
        "it. Written back with IMAP DELETE."
    ),
    responses=[*AUTH_ERRORS, 409],
)
def delete_folder(folder_id: uuid.UUID) -> dict[str, Any]:
    folder = service.delete_folder(service_context(), principal=current_principal(), folder_id=folder_id)
    return {"message": "Folder deleted", "id": folder.id}
