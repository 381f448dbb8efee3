"""Drafts (issue 9): create and edit a draft locally, and put it on the server through the write-back.

A draft is a message row in the account's Drafts folder (``isDraft``, flags ``\\Draft \\Seen``), built by the same
:func:`~email_service.sync.store.message_rows` the sync uses, from the RFC 5322 bytes built here (kept in the blob
store).  Its attachments are blob rows (``storage_type = 'blob'``, as uploads of issue 10), so an edit rebuilds the
message from them.  In the same transaction an ``append`` pending action is recorded
(:mod:`email_service.sync.syncback_append`): the ``syncback_account`` job APPENDs the draft to the Drafts mailbox
and, for an edit, removes the previous server copy (``UID EXPUNGE``, RFC 4315).  The row gets the new UID from
APPENDUID.  An account without a Drafts folder gets one: a local folder row and a ``folder_create`` action with
``\\Drafts`` special use (RFC 6154), recorded before the append.  A draft whose attachments change through the
attachment endpoints (issue 10 marks it ``draft_changed_at``) is rebuilt and re-APPENDed by the scheduler
(:func:`republish_changed_drafts`).

Lives in ``sync`` (not ``services``) because it builds rows with the sync's :mod:`email_service.sync.store`.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from datetime import datetime
from email.utils import make_msgid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from email_service.errors import Conflict, InvalidInput, NotFound
from email_service.models import (
    EmailAccount,
    EmailAttachment,
    EmailFolder,
    EmailMessage,
    PendingAction,
    Tenant,
    now_ms,
)
from email_service.security.tokens import Principal
from email_service.services.accounts import audit, load_account
from email_service.services.actions import NewAction, lock_account, record_actions, request_syncback
from email_service.services.attachment_content import content_of
from email_service.services.attachments import draft_changed, ordered_attachments
from email_service.services.changes import record_changes
from email_service.services.compose import (
    BlobRef,
    fields_of,
    parts_of,
    resolve_related,
    sender_of,
    store_new_attachments,
)
from email_service.services.compose_mime import ComposeFields, Envelope, build_raw, check_fields
from email_service.services.context import ServiceContext
from email_service.services.mailbox import load_message
from email_service.sync.store import add_messages, insert_rows, message_rows

DRAFT_FLAGS = ("\\Draft", "\\Seen")
#: The name and RFC 6154 special-use flag of a folder created for a role the account lacks.
ROLE_FOLDERS = {"drafts": ("Drafts", "\\Drafts"), "sent": ("Sent", "\\Sent")}
#: The columns an edit takes over from the rebuilt message's row.
PARSED_COLUMNS = (
    "message_id",
    "in_reply_to",
    "references",
    "from_name",
    "from_address",
    "sender",
    "to_addresses",
    "cc_addresses",
    "bcc_addresses",
    "reply_to",
    "subject",
    "preview",
    "text_body",
    "html_body",
    "has_attachments",
    "sent_at",
    "defects",
    "raw_sha256",
    "size",
)


def role_folder(session: Session, account: EmailAccount, role: str) -> tuple[EmailFolder, list[NewAction]]:
    """The account's folder of ``role`` (``drafts`` / ``sent``), or a new local one with the ``folder_create``
    action that makes it on the server (CREATE with the special-use flag when the server offers it)."""
    folders = list(session.execute(select(EmailFolder).where(EmailFolder.account_id == account.id)).scalars())
    found = sorted((f for f in folders if f.type == role), key=lambda f: f.name)
    if found:
        return found[0], []
    name, special_use = ROLE_FOLDERS[role]
    for folder in folders:
        if folder.name == name:
            return folder, []
    folder = EmailFolder(
        id=uuid.uuid4(),
        tenant_id=account.tenant_id,
        account_id=account.id,
        name=name,
        type=role,
        delimiter=next((f.delimiter for f in folders if f.delimiter), None),
        attributes=[special_use],
        is_selectable=True,
        sync_state="initial",
    )
    session.add(folder)
    session.flush()
    record_changes(session, tenant_id=account.tenant_id, account_id=account.id, kind="folder", created=[folder.id])
    create = NewAction(
        "folder_create", folder_id=folder.id, mailbox=name, details={"name": name, "specialUse": special_use}
    )
    return folder, [create]


def _blob_rows(ctx: ServiceContext, message: dict[str, Any], refs: Sequence[BlobRef]) -> list[dict[str, Any]]:
    """``email_attachments`` rows (``storage_type = 'blob'``) of a draft for ``refs`` (one per distinct bytes)."""
    status = "pending" if ctx.settings.virus_scan_enabled else "skipped"
    unique = {ref.sha256: ref for ref in refs}
    return [
        {
            "id": uuid.uuid4(),
            "tenant_id": message["tenant_id"],
            "account_id": message["account_id"],
            "message_id": message["id"],
            "filename": ref.filename[:500],
            "mime_type": ref.content_type[:255],
            "size_bytes": ref.size,
            "disposition": "attachment",
            "storage_type": "blob",
            "content_hash": ref.sha256,
            "content_encoding": "none",
            "virus_scan_status": status,
            "created_at": now_ms() + index,  # keeps the order of the list (attachments are ordered by creation)
            "updated_at": now_ms(),
        }
        for index, ref in enumerate(unique.values())
    ]


def _queue_scans(ctx: ServiceContext, tenant_id: uuid.UUID, rows: Sequence[dict[str, Any]]) -> None:
    for row in rows:
        if row["virus_scan_status"] == "pending":
            ctx.jobs.enqueue("scan_attachment", {"tenantId": str(tenant_id), "attachmentId": str(row["id"])})


def pending_append(session: Session, message_id: uuid.UUID) -> bool:
    """True when an ``append`` of the message is still pending: the server copy its row names (``uid``) is about
    to be replaced, so a new action on that copy must learn its UID when the append is applied (``uid`` None)."""
    found = session.execute(
        select(PendingAction.id)
        .where(PendingAction.message_id == message_id, PendingAction.state == "pending", PendingAction.kind == "append")
        .limit(1)
    ).first()
    return found is not None


def _append_action(
    message: EmailMessage | dict[str, Any], folder: EmailFolder, sha256: str, changed: int, *, known: bool = True
) -> NewAction:
    get = message.get if isinstance(message, dict) else lambda name: getattr(message, name)
    return NewAction(
        "append",
        message_id=get("id"),
        folder_id=folder.id,
        mailbox=folder.name,
        uidvalidity=get("uidvalidity") if known else None,
        uid=get("uid") if known else None,
        details={
            "sha256": sha256,
            "flags": list(DRAFT_FLAGS),
            "messageId": get("message_id"),
            "changedAt": changed,
            "replaces": get("uid") is not None,
        },
    )


def _imap_account(ctx: ServiceContext, principal: Principal, account_id: uuid.UUID) -> EmailAccount:
    with ctx.db.tenant_session(principal.tenant_id) as session:
        account = load_account(session, principal, account_id)
    if account.protocol != "imap":
        raise Conflict("Drafts are kept on the IMAP server: a POP3 account has no Drafts folder")
    return account


def _store_new_draft(
    ctx: ServiceContext, principal: Principal, account: EmailAccount, raw: bytes, refs: Sequence[BlobRef]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Store a new draft's bytes and row (in Drafts, created if missing) with its attachment rows, and record its
    ``append``, in one transaction.  Returns the message row and the attachment rows."""
    account_id = account.id
    sha256 = ctx.blobs.put(str(principal.tenant_id), raw)
    with ctx.db.tenant_session(principal.tenant_id) as session:
        lock_account(session, account_id)
        folder, actions = role_folder(session, account, "drafts")
        row, _parsed = message_rows(
            raw,
            identity={},
            tenant_id=principal.tenant_id,
            account_id=account_id,
            folder_id=folder.id,
            flags=DRAFT_FLAGS,
        )
        row["draft_changed_at"] = changed = now_ms()
        attachments = _blob_rows(ctx, row, refs)
        add_messages(
            session,
            tenant_id=principal.tenant_id,
            account_id=account_id,
            folder_id=folder.id,
            messages=[row],
            attachments=attachments,
        )
        actions.append(_append_action(row, folder, sha256, changed))
        record_actions(session, tenant_id=principal.tenant_id, account_id=account_id, actions=actions)
        audit(
            session,
            principal,
            tenant_id=principal.tenant_id,
            action="draft.create",
            resource_type="message",
            resource_id=row["id"],
            details={"accountId": str(account_id)},
        )
    return row, attachments


def create_draft(
    ctx: ServiceContext, *, principal: Principal, account_id: uuid.UUID, fields: ComposeFields
) -> uuid.UUID:
    """Create a draft in the account's Drafts folder and queue its APPEND; returns the message id.

    Raises:
        NotFound / Forbidden: the account (or ``inReplyTo``/``forwardOf`` message) is not visible.
        InvalidInput: a seed 002 / 004 limit, naming the field (see :func:`check_fields`).
        Conflict: a POP3 account.
    """
    settings = ctx.settings
    check_fields(fields, max_size=settings.max_attachment_size, max_count=settings.max_attachments_per_message)
    account = _imap_account(ctx, principal, account_id)
    related = resolve_related(ctx, principal=principal, account=account, fields=fields)
    check_fields(
        dataclasses.replace(fields, attachments=()),
        max_size=settings.max_attachment_size,
        max_count=settings.max_attachments_per_message,
        existing=len(related.forwarded) + len(fields.attachments),
    )
    refs = related.forwarded + store_new_attachments(ctx, principal.tenant_id, fields.attachments)
    domain = account.email_address.rpartition("@")[2] or None
    envelope = Envelope(
        from_address=sender_of(account),
        message_id=make_msgid(domain=domain),
        date=datetime.now().astimezone(),
        in_reply_to=related.in_reply_to,
        references=related.references,
        keep_bcc=True,
    )
    raw = build_raw(related.fields, envelope, parts_of(ctx, principal.tenant_id, refs))
    row, attachments = _store_new_draft(ctx, principal, account, raw, refs)
    _queue_scans(ctx, principal.tenant_id, attachments)
    request_syncback(ctx, principal.tenant_id, account_id)
    return uuid.UUID(str(row["id"]))


def merged_fields(current: ComposeFields, given: ComposeFields) -> ComposeFields:
    """``given`` over ``current``: every field given replaces the draft's (attachments are added)."""
    values = {
        name: getattr(given, name) if getattr(given, name) is not None else getattr(current, name)
        for name in ("to", "cc", "bcc", "subject", "text_body", "html_body")
    }
    return dataclasses.replace(current, **values, attachments=given.attachments)


def _draft_for_edit(
    ctx: ServiceContext, principal: Principal, message_id: uuid.UUID
) -> tuple[EmailMessage, EmailAccount, list[BlobRef]]:
    with ctx.db.tenant_session(principal.tenant_id) as session:
        message = load_message(session, principal, message_id)
        if not message.is_draft:
            raise Conflict(
                "Only drafts can be edited; other messages take isRead, isFlagged, isAnswered, keywords, folderId"
            )
        account = load_account(session, principal, message.account_id)
        attachments = ordered_attachments(session, message.id)
    return message, account, [_ref_of(ctx, attachment) for attachment in attachments]


def _ref_of(ctx: ServiceContext, attachment: EmailAttachment) -> BlobRef:
    content = content_of(ctx, attachment)
    return BlobRef(attachment.filename or "attachment", attachment.mime_type, content.sha256, content.size)


def _envelope_of(message: EmailMessage, account: EmailAccount) -> Envelope:
    """The identity headers of a new version of a stored draft: its Message-ID, In-Reply-To and References."""
    return Envelope(
        from_address=sender_of(account),
        message_id=message.message_id or make_msgid(domain=account.email_address.rpartition("@")[2] or None),
        date=datetime.now().astimezone(),
        in_reply_to=message.in_reply_to,
        references=list(message.references or []),
        keep_bcc=True,
    )


def _store_version(
    ctx: ServiceContext,
    tenant_id: uuid.UUID,
    account: EmailAccount,
    message_id: uuid.UUID,
    raw: bytes,
    refs: Sequence[BlobRef],
    *,
    principal: Principal | None,
) -> list[dict[str, Any]]:
    """Store a new version of the draft (its row from ``raw``, new blob attachment rows) and record its ``append``
    (replacing the server copy), in one transaction.  Returns the attachment rows added.

    Raises:
        NotFound / Forbidden: the message is not visible to ``principal`` (or gone).  Conflict: not a draft.
    """
    sha256 = ctx.blobs.put(str(tenant_id), raw)
    with ctx.db.tenant_session(tenant_id) as session:
        lock_account(session, account.id)
        if principal is not None:
            draft = load_message(session, principal, message_id, for_update=True)
        else:
            found = session.get(EmailMessage, message_id)
            if found is None:
                raise NotFound("Message not found")
            draft = found
        session.refresh(draft)
        if not draft.is_draft:
            raise Conflict("Only drafts can be edited")
        row, _parsed = message_rows(
            raw, identity={}, tenant_id=tenant_id, account_id=account.id, folder_id=draft.folder_id, flags=draft.flags
        )
        for column in PARSED_COLUMNS:
            setattr(draft, column, row[column])
        stored = set(
            session.execute(
                select(EmailAttachment.content_hash).where(EmailAttachment.message_id == draft.id)
            ).scalars()
        )
        added = _blob_rows(ctx, {**row, "id": draft.id}, [r for r in refs if r.sha256 not in stored])
        insert_rows(session, [], added)
        draft.has_attachments = bool(refs)
        draft_changed(session, draft)
        folder = session.get(EmailFolder, draft.folder_id)
        assert folder is not None
        known = not pending_append(session, draft.id)  # else the pending append's copy is the one to replace
        action = _append_action(draft, folder, sha256, int(draft.draft_changed_at or 0), known=known)
        record_actions(session, tenant_id=tenant_id, account_id=account.id, actions=[action])
    return added


def edit_draft(ctx: ServiceContext, *, principal: Principal, message_id: uuid.UUID, fields: ComposeFields) -> None:
    """Replace the fields given (attachments given are added) and queue the replacement of the server copy.

    Raises:
        NotFound / Forbidden: the message is not visible.
        InvalidInput: ``inReplyTo``/``forwardOf`` (only when creating); a seed 002 / 004 limit.
        Conflict: not a draft; a POP3 account.
    """
    if fields.in_reply_to or fields.forward_of:
        raise InvalidInput("inReplyTo and forwardOf can only be given when the draft is created")
    message, account, refs = _draft_for_edit(ctx, principal, message_id)
    if account.protocol != "imap":
        raise Conflict("Drafts are kept on the IMAP server: a POP3 account has no Drafts folder")
    settings = ctx.settings
    check_fields(
        fields,
        max_size=settings.max_attachment_size,
        max_count=settings.max_attachments_per_message,
        existing=len(refs),
    )
    refs += store_new_attachments(ctx, principal.tenant_id, fields.attachments)
    merged = merged_fields(fields_of(message), fields)
    raw = build_raw(merged, _envelope_of(message, account), parts_of(ctx, principal.tenant_id, refs))
    added = _store_version(ctx, principal.tenant_id, account, message_id, raw, refs, principal=principal)
    _queue_scans(ctx, principal.tenant_id, added)
    request_syncback(ctx, principal.tenant_id, account.id)


#: A draft changed locally (e.g. an attachment uploaded) is re-APPENDed once it has been quiet this long (ms).
SETTLE_MS = 2000


def republish_changed_drafts(
    ctx: ServiceContext, *, now: int | None = None, tenant_ids: Sequence[uuid.UUID] | None = None
) -> int:
    """Rebuild and re-APPEND every draft changed locally without a new server copy on the way: an attachment
    uploaded or deleted through the attachment endpoints (issue 10's ``draft_changed_at``), quiet for
    :data:`SETTLE_MS`, with no ``append`` of it pending.  The periodic task of the scheduler.  Returns how many."""
    moment = now_ms() if now is None else now
    if tenant_ids is None:
        with ctx.db.system_session() as session:
            tenant_ids = list(session.execute(select(Tenant.tenant_id)).scalars())
    done = 0
    for tenant_id in tenant_ids:
        with ctx.db.tenant_session(tenant_id) as session:
            appending = select(PendingAction.message_id).where(
                PendingAction.kind == "append", PendingAction.state == "pending", PendingAction.message_id.is_not(None)
            )
            failed_this_version = (
                select(PendingAction.id)
                .where(
                    PendingAction.message_id == EmailMessage.id,
                    PendingAction.kind == "append",
                    PendingAction.state == "failed",
                    PendingAction.created_at >= EmailMessage.draft_changed_at,
                )
                .exists()
            )
            changed = list(
                session.execute(
                    select(EmailMessage.id).where(
                        EmailMessage.tenant_id == tenant_id,
                        EmailMessage.is_draft.is_(True),
                        EmailMessage.draft_changed_at <= moment - SETTLE_MS,
                        EmailMessage.id.not_in(appending),
                        ~failed_this_version,  # the server refused this version: not again every tick
                    )
                ).scalars()
            )
        for message_id in changed:
            done += _republish(ctx, tenant_id, message_id)
    return done


def _republish(ctx: ServiceContext, tenant_id: uuid.UUID, message_id: uuid.UUID) -> int:
    with ctx.db.tenant_session(tenant_id) as session:
        message = session.get(EmailMessage, message_id)
        account = session.get(EmailAccount, message.account_id) if message is not None else None
        if message is None or account is None or account.protocol != "imap" or account.deleted_at is not None:
            return 0
        attachments = ordered_attachments(session, message.id)
    try:
        refs = [_ref_of(ctx, attachment) for attachment in attachments]
        raw = build_raw(fields_of(message), _envelope_of(message, account), parts_of(ctx, tenant_id, refs))
        added = _store_version(ctx, tenant_id, account, message_id, raw, refs, principal=None)
    except (NotFound, Conflict, InvalidInput):  # gone, sent or no longer buildable meanwhile: nothing to publish
        return 0
    _queue_scans(ctx, tenant_id, added)
    request_syncback(ctx, tenant_id, account.id)
    return 1
