"""Attachments of messages (seed 004): list, metadata, upload to a draft, delete from a draft, and the hooks
compose uses to build and send a draft with its attachments.

Same isolation as messages (seed 001): the message's account must be visible to the caller (another user of the
tenant: 403, another tenant: 404).  Uploads stream into the blob store while they are counted (413 past
``MAX_ATTACHMENT_SIZE``), hashed and sniffed (libmagic, checked against ``ALLOWED_MIME_TYPES``); the row is
written only after the bytes are stored, so a crash leaves at worst an unreferenced blob (collected by
``gc-blobs``), never a row without its bytes.  The same bytes uploaded twice to one draft give one attachment.
Downloads and virus scans are in :mod:`email_service.services.attachment_content`.
"""

from __future__ import annotations

import logging
import mimetypes
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from email_service.errors import InvalidInput, NotFound, PayloadTooLarge
from email_service.models import EmailAttachment, EmailMessage, now_ms
from email_service.protocols.mime.filename import safe_filename
from email_service.protocols.mime.sniff import SNIFF_BYTES, sniff_mime_type, type_allowed
from email_service.security.tokens import Principal
from email_service.services import search_index
from email_service.services.accounts import Page, audit
from email_service.services.actions import lock_account
from email_service.services.changes import record_changes
from email_service.services.context import ServiceContext
from email_service.services.mailbox import load_message

log = logging.getLogger("email_service.attachments")
#: Longest ``filename`` column value (``email_attachments.filename``).
FILENAME_COLUMN = 500


class UploadSource(Protocol):
    """An uploaded file as the API reads it from the request: its bytes as they arrive, then its name."""

    def chunks(self) -> Iterator[bytes]:
        """The file's bytes, piece by piece, as the request body streams in (raises :class:`InvalidInput` for a
        malformed body)."""
        ...

    @property
    def filename(self) -> str | None:
        """The name to give the file (the form's ``filename`` field, else the part's own); read after
        :meth:`chunks` is exhausted."""
        ...


@dataclass(frozen=True)
class Uploaded:
    """Result of an upload: the attachment row and whether it was created (False: the same bytes were already
    attached to this draft, and that attachment is returned)."""

    attachment: EmailAttachment
    created: bool


def load_attachment(
    session: Session, principal: Principal, attachment_id: uuid.UUID
) -> tuple[EmailAttachment, EmailMessage]:
    """An attachment and its message, visible to ``principal``.

    Raises:
        NotFound: no such attachment in the caller's tenant.
        Forbidden: another user's attachment and the caller is not an admin.
    """
    attachment = session.get(EmailAttachment, attachment_id)
    if attachment is None or attachment.tenant_id != principal.tenant_id:
        raise NotFound("Attachment not found")
    try:
        message = load_message(session, principal, attachment.message_id)
    except NotFound:
        raise NotFound("Attachment not found") from None
    return attachment, message


def ordered_attachments(
    session: Session, message_id: uuid.UUID, limit: int | None = None, offset: int = 0
) -> list[EmailAttachment]:
    """Attachments of a message in the order they were added (mirrored ones by MIME part)."""
    query = (
        select(EmailAttachment)
        .where(EmailAttachment.message_id == message_id)
        .order_by(EmailAttachment.created_at, EmailAttachment.part_id, EmailAttachment.id)
        .offset(offset)
    )
    if limit is not None:
        query = query.limit(limit)
    return list(session.execute(query).scalars())


def list_attachments(
    ctx: ServiceContext, *, principal: Principal, message_id: uuid.UUID, limit: int, offset: int
) -> Page:
    """Attachments of a message in the order they were added (mirrored ones in MIME part order).

    Raises:
        NotFound / Forbidden: as :func:`email_service.services.mailbox.load_message`.
    """
    with ctx.db.tenant_session(principal.tenant_id) as session:
        load_message(session, principal, message_id)
        total = session.execute(
            select(func.count()).select_from(EmailAttachment).where(EmailAttachment.message_id == message_id)
        ).scalar_one()
        return Page(ordered_attachments(session, message_id, limit, offset), int(total), limit, offset)


def get_attachment(ctx: ServiceContext, *, principal: Principal, attachment_id: uuid.UUID) -> EmailAttachment:
    """One attachment's metadata.  Raises :class:`NotFound` / :class:`Forbidden`."""
    with ctx.db.tenant_session(principal.tenant_id) as session:
        return load_attachment(session, principal, attachment_id)[0]


def mark_draft_changed(message: EmailMessage) -> None:
    """Record that a draft changed locally and its server copy (Drafts mailbox) must be rebuilt and re-APPENDed.

    The hook compose shares: call it in the transaction of any change to a draft (its fields, its attachments);
    the re-APPEND clears ``draft_changed_at`` only if it still holds the value it built from.
    """
    message.draft_changed_at = now_ms()
    message.updated_at = message.draft_changed_at


def draft_changed(session: Session, message: EmailMessage) -> None:
    """Everything a local change to a draft (its fields, its attachments) entails, in the caller's transaction
    (under the account lock): :func:`mark_draft_changed` (the server copy is re-APPENDed), the message's new doc row
    in the search index, and a message ``updated`` entry in the account's change log."""
    mark_draft_changed(message)
    search_index.reindex_messages(session, [message.id])
    record_changes(
        session, tenant_id=message.tenant_id, account_id=message.account_id, kind="message", updated=[message.id]
    )


def _require_draft(message: EmailMessage, action: str) -> None:
    if not message.is_draft:
        raise InvalidInput(f"Attachments can only be {action} drafts", details={"messageId": ["Not a draft"]})


def _require_room(ctx: ServiceContext, session: Session, message: EmailMessage) -> None:
    limit = ctx.settings.max_attachments_per_message
    count = session.execute(
        select(func.count()).select_from(EmailAttachment).where(EmailAttachment.message_id == message.id)
    ).scalar_one()
    if count >= limit:
        raise InvalidInput(
            f"A message can have at most {limit} attachments", details={"file": [f"At most {limit} attachments"]}
        )


def _stored_upload(ctx: ServiceContext, namespace: str, source: UploadSource) -> tuple[str, int, str]:
    """Stream the upload into the blob store: ``(sha256, size, sniffed MIME type)``.

    Nothing is stored when the file is too large, empty or of a type not allowed.
    """
    limit = ctx.settings.max_attachment_size
    head = bytearray()
    with ctx.blobs.writer(namespace) as writer:
        for chunk in source.chunks():
            if writer.size + len(chunk) > limit:
                raise PayloadTooLarge(f"File is larger than the limit of {limit} bytes")
            if len(head) < SNIFF_BYTES:
                head += chunk[: SNIFF_BYTES - len(head)]
            writer.write(chunk)
        if writer.size == 0:
            raise InvalidInput("file is empty", details={"file": ["The file is empty"]})
        mime_type = sniff_mime_type(bytes(head))
        if not type_allowed(mime_type, ctx.settings.allowed_mime_types):
            raise InvalidInput(
                f"file type {mime_type} is not allowed", details={"file": [f"Type {mime_type} is not allowed"]}
            )
        return writer.commit(), writer.size, mime_type


def _existing_upload(session: Session, message_id: uuid.UUID, digest: str) -> EmailAttachment | None:
    return session.execute(
        select(EmailAttachment).where(
            EmailAttachment.message_id == message_id,
            EmailAttachment.storage_type == "blob",
            EmailAttachment.content_hash == digest,
        )
    ).scalar_one_or_none()


def upload_attachment(
    ctx: ServiceContext, *, principal: Principal, message_id: uuid.UUID, source: UploadSource
) -> Uploaded:
    """Attach an uploaded file to a draft.

    The draft and the attachment count are checked before the body is read; the bytes are streamed into the
    blob store, then the row is written (the draft marked changed, see :func:`mark_draft_changed`) and a
    ``scan_attachment`` job queued when virus scanning is on (``virusScanStatus`` ``pending``, else ``skipped``).

    Raises:
        NotFound / Forbidden: unknown or foreign message.
        InvalidInput: not a draft, no room, empty file, type not allowed, malformed body (400).
        PayloadTooLarge: the file is over ``MAX_ATTACHMENT_SIZE`` (413), found while it streams in.
    """
    namespace = str(principal.tenant_id)
    with ctx.db.tenant_session(principal.tenant_id) as session:
        message = load_message(session, principal, message_id)
        _require_draft(message, "added to")
        _require_room(ctx, session, message)
    digest, size, mime_type = _stored_upload(ctx, namespace, source)
    extension = mimetypes.guess_extension(mime_type) or ""
    filename = safe_filename(source.filename, default_extension=extension)[:FILENAME_COLUMN]
    try:
        uploaded = _insert_upload(ctx, principal, message_id, digest, size, mime_type, filename)
    except IntegrityError:  # the same bytes were attached concurrently: return that attachment
        with ctx.db.tenant_session(principal.tenant_id) as session:
            existing = _existing_upload(session, message_id, digest)
        if existing is None:
            raise
        return Uploaded(existing, created=False)
    if uploaded.created and uploaded.attachment.virus_scan_status == "pending":
        ctx.jobs.enqueue("scan_attachment", {"tenantId": namespace, "attachmentId": str(uploaded.attachment.id)})
    return uploaded


def _insert_upload(
    ctx: ServiceContext,
    principal: Principal,
    message_id: uuid.UUID,
    digest: str,
    size: int,
    mime_type: str,
    filename: str,
) -> Uploaded:
    with ctx.db.tenant_session(principal.tenant_id) as session:
        message = load_message(session, principal, message_id)
        lock_account(session, message.account_id)  # lock order: account first (services.changes)
        session.refresh(message, with_for_update=True)
        _require_draft(message, "added to")
        existing = _existing_upload(session, message_id, digest)
        if existing is not None:
            return Uploaded(existing, created=False)
        _require_room(ctx, session, message)
        attachment = EmailAttachment(
            id=uuid.uuid4(),
            tenant_id=message.tenant_id,
            account_id=message.account_id,
            message_id=message.id,
            filename=filename,
            mime_type=mime_type[:255],
            size_bytes=size,
            disposition="attachment",
            storage_type="blob",
            content_hash=digest,
            content_encoding="none",
            virus_scan_status="pending" if ctx.settings.virus_scan_enabled else "skipped",
        )
        session.add(attachment)
        message.has_attachments = True
        draft_changed(session, message)
        audit(
            session,
            principal,
            tenant_id=message.tenant_id,
            action="attachment.upload",
            resource_type="attachment",
            resource_id=attachment.id,
            details={"messageId": str(message.id), "size": size, "mimeType": mime_type},
        )
        session.flush()
        return Uploaded(attachment, created=True)


def delete_attachment(ctx: ServiceContext, *, principal: Principal, attachment_id: uuid.UUID) -> None:
    """Remove an attachment from a draft (its bytes go at the next ``gc-blobs`` when nothing else uses them).

    Raises:
        NotFound / Forbidden: unknown or foreign attachment.
        InvalidInput: the message is not a draft (mirrored mail is changed on the server, not here).
    """
    with ctx.db.tenant_session(principal.tenant_id) as session:
        attachment, message = load_attachment(session, principal, attachment_id)
        _require_draft(message, "removed from")
        lock_account(session, message.account_id)  # lock order: account first (services.changes)
        session.delete(attachment)
        session.flush()
        message.has_attachments = bool(ordered_attachments(session, message.id, limit=1))
        draft_changed(session, message)
        audit(
            session,
            principal,
            tenant_id=message.tenant_id,
            action="attachment.delete",
            resource_type="attachment",
            resource_id=attachment_id,
            details={"messageId": str(message.id)},
        )
