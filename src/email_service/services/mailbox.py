"""Read use cases of the mirrored mailbox: folders, one message, raw RFC 5322 bytes (the message list is
:mod:`email_service.services.message_list`).

Same isolation as accounts (seed 001): the account (or the message's account) must be visible to the caller.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from email_service.errors import NotFound
from email_service.models import EmailAttachment, EmailFolder, EmailMessage
from email_service.protocols.mime.sanitise import SanitisedHtml, sanitise_html
from email_service.security.tokens import Principal
from email_service.services.accounts import load_account
from email_service.services.actions import pending_message_ids
from email_service.services.context import ServiceContext

ROLE_ORDER = {"inbox": 0, "drafts": 1, "sent": 2, "archive": 3, "spam": 4, "trash": 5, "custom": 6}


@dataclass(frozen=True)
class MessageDetail:
    """A message row with its attachment rows, the name of its folder, its HTML body made safe to display
    (``None`` when the message has no HTML body), and whether a change of it still waits to be written back to the
    server (``pending``)."""

    message: EmailMessage
    attachments: list[EmailAttachment]
    folder_name: str
    html: SanitisedHtml | None
    pending: bool = False


def list_folders(ctx: ServiceContext, *, principal: Principal, account_id: uuid.UUID) -> list[EmailFolder]:
    """Folders of an account, INBOX and the special-use roles first, then by name."""
    with ctx.db.tenant_session(principal.tenant_id) as session:
        load_account(session, principal, account_id)
        folders = session.execute(
            select(EmailFolder).where(
                EmailFolder.tenant_id == principal.tenant_id, EmailFolder.account_id == account_id
            )
        ).scalars()
        return sorted(folders, key=lambda f: (ROLE_ORDER.get(f.type, 9), f.name.lower()))


def load_message(
    session: Session, principal: Principal, message_id: uuid.UUID, *, for_update: bool = False
) -> EmailMessage:
    """A message of a live account visible to ``principal`` in the open ``session`` (``for_update``: row locked
    until the transaction ends, on PostgreSQL).

    Raises:
        NotFound: no such message in the caller's tenant (or its account is deleted).
        Forbidden: another user's message and the caller is not an admin.
    """
    message = session.get(EmailMessage, message_id, with_for_update=for_update)
    if message is None or message.tenant_id != principal.tenant_id:
        raise NotFound("Message not found")
    load_account(session, principal, message.account_id)
    return message


def get_message(
    ctx: ServiceContext,
    *,
    principal: Principal,
    message_id: uuid.UUID,
    inline_url: Callable[[uuid.UUID], str],
    remote_images: bool = False,
) -> MessageDetail:
    """One message with its attachments and its HTML body sanitised (:mod:`email_service.protocols.mime.sanitise`):
    ``cid:`` images point at ``inline_url(attachment id)`` of the part with that Content-ID, remote images are
    blocked unless ``remote_images``.  The unsanitised body is only in the raw message.

    Raises :class:`NotFound` / :class:`Forbidden`.
    """
    with ctx.db.tenant_session(principal.tenant_id) as session:
        message = load_message(session, principal, message_id)
        attachments = list(
            session.execute(
                select(EmailAttachment)
                .where(EmailAttachment.message_id == message.id)
                .order_by(EmailAttachment.part_id)
            ).scalars()
        )
        folder = session.get(EmailFolder, message.folder_id)
        pending = bool(pending_message_ids(session, [message.id]))
    html = None
    if message.html_body is not None:
        inline = {a.content_id: inline_url(a.id) for a in attachments if a.content_id}
        html = sanitise_html(message.html_body, inline_urls=inline, allow_remote_images=remote_images)
    return MessageDetail(message, attachments, folder.name if folder else "", html, pending)


def raw_message(ctx: ServiceContext, *, principal: Principal, message_id: uuid.UUID) -> tuple[int, Iterator[bytes]]:
    """``(size in bytes, chunk iterator)`` of the stored RFC 5322 message.

    Raises:
        NotFound: unknown message, or its raw bytes are not in the blob store.
    """
    with ctx.db.tenant_session(principal.tenant_id) as session:
        message = load_message(session, principal, message_id)
        digest = message.raw_sha256
    if not digest:
        raise NotFound("Raw message not available")
    namespace = str(principal.tenant_id)
    return ctx.blobs.size(namespace, digest), ctx.blobs.iter_chunks(namespace, digest)
