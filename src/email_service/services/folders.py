"""Folder use cases (issue 8): read one, create, rename or move under another parent, delete.

Names are Unicode at the API and full hierarchical names in the rows (``Work/Projects``), built with the server's
hierarchy delimiter (RFC 3501 section 5.1.1, from LIST); the wire adapter encodes them in modified UTF-7 (RFC 3501
section 5.1.3).  Like message changes, each change is made locally at once and recorded as a pending action in the
same transaction (:mod:`email_service.services.actions`); the write-back sends CREATE / RENAME / DELETE.
"""

from __future__ import annotations

import re
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Final

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from email_service.errors import Conflict, InvalidInput, NotFound
from email_service.models import EmailAccount, EmailFolder, now_ms
from email_service.security.tokens import Principal
from email_service.services.accounts import load_account
from email_service.services.actions import NewAction, lock_account, pending_folder_ids, record_actions, request_syncback
from email_service.services.changes import record_changes, record_folders_destroyed
from email_service.services.context import ServiceContext

#: Roles whose folder cannot be renamed or deleted (409): the server and other clients rely on them.
PROTECTED_ROLES = ("inbox", "sent", "drafts", "trash")
#: Longest full name (the column's size).
MAX_NAME = 1000
#: One hierarchy level's name: 1 to 255 characters, no control characters, no LIST wildcards ``*`` ``%`` (RFC 3501
#: section 6.3.8), no white space at either end.  Also the ``pattern`` of the field in the OpenAPI document.
NAME_PATTERN = r"^[^\s\x00-\x1f\x7f-\x9f*%]([^\x00-\x1f\x7f-\x9f*%]{0,253}[^\s\x00-\x1f\x7f-\x9f*%])?$"
NAME_RULE = "must be 1-255 characters without control characters, * or %, and not start or end with white space"
_NAME = re.compile(NAME_PATTERN)
#: ``parent_id`` argument meaning "keep the current parent".
KEEP: Final = object()


@dataclass(frozen=True)
class FolderView:
    """A folder row, its parent folder's id (``None`` at the top level) and whether a change waits for write-back."""

    folder: EmailFolder
    parent_id: uuid.UUID | None
    pending: bool


def _account_folders(session: Session, account_id: uuid.UUID) -> dict[str, EmailFolder]:
    rows = session.execute(select(EmailFolder).where(EmailFolder.account_id == account_id)).scalars()
    return {folder.name: folder for folder in rows}


def _delimiter(folders: dict[str, EmailFolder]) -> str | None:
    """The server's hierarchy delimiter as LIST reported it (``None`` for a flat server).

    Raises:
        Conflict: no folder is known yet (sync the account first).
    """
    if not folders:
        raise Conflict("The account's folders are not known yet; sync the account first")
    counted = Counter(f.delimiter for f in folders.values() if f.delimiter)
    return counted.most_common(1)[0][0] if counted else None


def _leaf(name: str, delimiter: str | None) -> str:
    """A valid name for one hierarchy level (:data:`NAME_PATTERN`, no delimiter).  Raises :class:`InvalidInput`
    naming the field ``name``."""
    problem = None
    if not _NAME.fullmatch(name):
        problem = NAME_RULE
    elif delimiter and delimiter in name:
        problem = f"must not contain the server's hierarchy delimiter {delimiter!r}; use parentId"
    if problem:
        raise InvalidInput(f"name {problem}", details={"name": [problem]})
    return name


def _parent_name(name: str, delimiter: str | None) -> str | None:
    return name.rsplit(delimiter, 1)[0] if delimiter and delimiter in name else None


def _full_name(parent: EmailFolder | None, leaf: str, delimiter: str | None) -> str:
    full = f"{parent.name}{delimiter}{leaf}" if parent is not None and delimiter else leaf
    if len(full) > MAX_NAME:
        raise InvalidInput(f"name: the full name must be at most {MAX_NAME} characters", details={"name": ["too long"]})
    return full


def _is_under(name: str, ancestor: str, delimiter: str | None) -> bool:
    return bool(delimiter) and name.startswith(f"{ancestor}{delimiter}")


def _view(session: Session, folder: EmailFolder, folders: dict[str, EmailFolder]) -> FolderView:
    parent = folders.get(_parent_name(folder.name, folder.delimiter) or "")
    pending = bool(pending_folder_ids(session, [folder.id]))
    return FolderView(folder, parent.id if parent else None, pending)


def _load_folder(session: Session, principal: Principal, folder_id: uuid.UUID) -> tuple[EmailFolder, EmailAccount]:
    folder = session.get(EmailFolder, folder_id)
    if folder is None or folder.tenant_id != principal.tenant_id:
        raise NotFound("Folder not found")
    return folder, load_account(session, principal, folder.account_id)


def _parent(folders: dict[str, EmailFolder], parent_id: uuid.UUID) -> EmailFolder:
    for folder in folders.values():
        if folder.id == parent_id:
            return folder
    raise NotFound("Parent folder not found: parentId names no folder of this account")


def _writable(account: EmailAccount) -> None:
    if account.protocol != "imap":
        raise Conflict("Only IMAP accounts have folders on the server")


def get_folder(ctx: ServiceContext, *, principal: Principal, folder_id: uuid.UUID) -> FolderView:
    """One folder.  Raises :class:`NotFound` / :class:`Forbidden`."""
    with ctx.db.tenant_session(principal.tenant_id) as session:
        folder, account = _load_folder(session, principal, folder_id)
        return _view(session, folder, _account_folders(session, account.id))


def create_folder(
    ctx: ServiceContext, *, principal: Principal, account_id: uuid.UUID, name: str, parent_id: uuid.UUID | None
) -> FolderView:
    """Create ``name`` at the top level or under ``parent_id`` (IMAP CREATE via write-back).

    Raises:
        NotFound / Forbidden: the account is not visible; ``parent_id`` is not a folder of this account.
        InvalidInput: a bad name (delimiter, control characters, wildcards, length); a parent on a flat server.
        Conflict: the name exists; the account's folders are unknown (never synced); a POP3 account.
    """
    with ctx.db.tenant_session(principal.tenant_id) as session:
        account = load_account(session, principal, account_id)
        _writable(account)
        lock_account(session, account_id)
        folders = _account_folders(session, account_id)
        delimiter = _delimiter(folders)
        leaf = _leaf(name, delimiter)
        parent = _parent(folders, parent_id) if parent_id is not None else None
        if parent is not None and delimiter is None:
            raise InvalidInput("parentId: the server has no folder hierarchy", details={"parentId": ["flat server"]})
        full = _full_name(parent, leaf, delimiter)
        if full in folders or full.upper() == "INBOX":
            raise Conflict("A folder with this name already exists")
        folder = EmailFolder(
            id=uuid.uuid4(),
            tenant_id=principal.tenant_id,
            account_id=account_id,
            name=full,
            type="custom",
            delimiter=delimiter,
            attributes=[],
            is_selectable=True,
            sync_state="initial",
        )
        session.add(folder)
        try:
            session.flush()
        except IntegrityError:
            raise Conflict("A folder with this name already exists") from None
        action = NewAction("folder_create", folder_id=folder.id, mailbox=full, details={"name": full})
        record_actions(session, tenant_id=principal.tenant_id, account_id=account_id, actions=[action])
        record_changes(
            session, tenant_id=principal.tenant_id, account_id=account_id, kind="folder", created=[folder.id]
        )
        view = FolderView(folder, parent.id if parent else None, True)
    request_syncback(ctx, principal.tenant_id, account_id)
    return view


def update_folder(
    ctx: ServiceContext,
    *,
    principal: Principal,
    folder_id: uuid.UUID,
    name: str | None = None,
    parent_id: uuid.UUID | object | None = KEEP,
) -> FolderView:
    """Rename the folder and/or move it under another parent (``None``: the top level); its subfolders follow
    (RFC 3501 section 6.3.5), locally at once.

    Raises:
        NotFound / Forbidden: the folder is not visible; the new parent is not a folder of its account.
        InvalidInput: a bad name; the new parent is the folder itself or one of its subfolders.
        Conflict: an inbox/sent/drafts/trash folder; the new name (or a subfolder's) exists; a POP3 account.
    """
    with ctx.db.tenant_session(principal.tenant_id) as session:
        folder, account = _load_folder(session, principal, folder_id)
        _writable(account)
        lock_account(session, account.id)
        session.refresh(folder)
        folders = _account_folders(session, account.id)
        if folder.type in PROTECTED_ROLES:
            raise Conflict(f"The {folder.type} folder cannot be renamed or moved")
        delimiter = folder.delimiter or _delimiter(folders)
        old = folder.name
        leaf = _leaf(name, delimiter) if name is not None else (old.rsplit(delimiter, 1)[-1] if delimiter else old)
        if parent_id is KEEP:
            parent = folders.get(_parent_name(old, delimiter) or "")
        else:
            parent = _parent(folders, parent_id) if isinstance(parent_id, uuid.UUID) else None
        if parent is not None and (parent.id == folder.id or _is_under(parent.name, old, delimiter)):
            raise InvalidInput("parentId: a folder cannot move under itself", details={"parentId": ["own subfolder"]})
        new = _full_name(parent, leaf, delimiter)
        if new != old:
            renamed = _rename_rows(session, folders, old, new, delimiter)
            record_changes(
                session, tenant_id=principal.tenant_id, account_id=account.id, kind="folder", updated=renamed
            )
            action = NewAction(
                "folder_rename",
                folder_id=folder.id,
                mailbox=old,
                target_mailbox=new,
                details={"from": old, "to": new, "delimiter": delimiter},
            )
            record_actions(session, tenant_id=principal.tenant_id, account_id=account.id, actions=[action])
        view = FolderView(folder, parent.id if parent else None, new != old)
    if new != old:
        request_syncback(ctx, principal.tenant_id, account.id)
    return view


def _rename_rows(
    session: Session, folders: dict[str, EmailFolder], old: str, new: str, delimiter: str | None
) -> list[uuid.UUID]:
    """Rename ``old`` and every folder under it; returns their ids.  Raises :class:`Conflict` if a new name is
    taken."""
    moving = [f for name, f in folders.items() if name == old or _is_under(name, old, delimiter)]
    renamed = {f.id: new + f.name[len(old) :] for f in moving}
    staying = set(folders) - {f.name for f in moving}
    if any(name in staying or name.upper() == "INBOX" for name in renamed.values()):
        raise Conflict("A folder with this name already exists")
    now = now_ms()
    for folder in moving:  # two steps: a subfolder's new name may be another's old one
        folder.name = f"#renaming-{folder.id}"
    session.flush()
    for folder in moving:
        folder.name, folder.updated_at = renamed[folder.id], now
    session.flush()
    return [folder.id for folder in moving]


def delete_folder(ctx: ServiceContext, *, principal: Principal, folder_id: uuid.UUID) -> EmailFolder:
    """Delete an empty-of-subfolders folder and its messages (IMAP DELETE via write-back).

    Raises:
        NotFound / Forbidden: the folder is not visible.
        Conflict: an inbox/sent/drafts/trash folder; the folder has subfolders; a POP3 account.
    """
    with ctx.db.tenant_session(principal.tenant_id) as session:
        folder, account = _load_folder(session, principal, folder_id)
        _writable(account)
        lock_account(session, account.id)
        folders = _account_folders(session, account.id)
        if folder.type in PROTECTED_ROLES:
            raise Conflict(f"The {folder.type} folder cannot be deleted")
        if any(_is_under(name, folder.name, folder.delimiter) for name in folders):
            raise Conflict("The folder has subfolders; delete or move them first")
        record_folders_destroyed(session, tenant_id=principal.tenant_id, account_id=account.id, folder_ids=[folder.id])
        session.delete(folder)  # its messages and their attachment rows go with it (ON DELETE CASCADE)
        action = NewAction("folder_delete", folder_id=folder.id, mailbox=folder.name, details={"name": folder.name})
        record_actions(session, tenant_id=principal.tenant_id, account_id=account.id, actions=[action])
    request_syncback(ctx, principal.tenant_id, account.id)
    return folder
