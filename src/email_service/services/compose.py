"""Compose (issue 9): what drafts and sends share -- the sender, reply and forward resolution, attachment bytes.

* :func:`sender_of`: ``From`` is the account's address with its name as display name.
* :func:`resolve_related`: ``inReplyTo`` / ``forwardOf`` (messages of the same account) turned into headers
  (RFC 5322 section 3.6.4), a ``Re:``/``Fwd:`` subject, default recipients of a reply, the quoted body of an
  inline forward and the attachments a forward carries (:class:`BlobRef`: the original as ``message/rfc822``, or
  the original's attachments).
* :func:`parts_of`: attachments as :class:`AttachmentPart` for the MIME builder, bytes read from the blob store.

Reads only; the transactions that store drafts and outbox items are in :mod:`email_service.sync.drafts` and
:mod:`email_service.services.outbox`.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from email_service.errors import InvalidInput, NotFound
from email_service.models import EmailAccount, EmailMessage
from email_service.protocols.mime.build import AttachmentPart
from email_service.protocols.mime.filename import safe_filename
from email_service.security.tokens import Principal
from email_service.services.attachment_content import content_of
from email_service.services.attachments import ordered_attachments
from email_service.services.compose_mime import (
    ComposeFields,
    NewAttachment,
    Recipient,
    forward_body,
    prefixed_subject,
    reply_headers,
)
from email_service.services.context import ServiceContext
from email_service.services.mailbox import load_message


@dataclass(frozen=True)
class BlobRef:
    """An attachment whose decoded bytes are in the tenant's blob store under ``sha256``."""

    filename: str
    content_type: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Related:
    """The outcome of :func:`resolve_related`: the fields to build with, reply headers and forwarded parts."""

    fields: ComposeFields
    in_reply_to: str | None = None
    references: list[str] = field(default_factory=list)
    reply_to_id: uuid.UUID | None = None
    forwarded: list[BlobRef] = field(default_factory=list)


def sender_of(account: EmailAccount) -> str:
    """The account's ``From``: ``"<account name>" <address>``."""
    return Recipient(account.email_address, account.account_name or None).header_value()


def fields_of(message: EmailMessage) -> ComposeFields:
    """The compose fields of a stored draft (its parsed recipients, subject and bodies)."""
    return ComposeFields(
        to=tuple(Recipient.from_row(a) for a in message.to_addresses or []),
        cc=tuple(Recipient.from_row(a) for a in message.cc_addresses or []),
        bcc=tuple(Recipient.from_row(a) for a in message.bcc_addresses or []),
        subject=message.subject,
        text_body=message.text_body,
        html_body=message.html_body,
    )


def _original(
    session: Session, principal: Principal, account: EmailAccount, message_id: uuid.UUID, name: str
) -> EmailMessage:
    try:
        message = load_message(session, principal, message_id)
    except NotFound:
        raise InvalidInput(f"{name}: no such message", details={name: ["Message not found"]}) from None
    if message.account_id != account.id:
        raise InvalidInput(f"{name}: the message belongs to another account", details={name: ["Another account"]})
    return message


def _reply_defaults(fields: ComposeFields, original: EmailMessage) -> ComposeFields:
    subject = fields.subject if fields.subject is not None else prefixed_subject("Re:", original.subject or "")
    to = fields.to
    if to is None:
        sources = original.reply_to or (
            [{"email": original.from_address, "name": original.from_name}] if original.from_address else []
        )
        to = tuple(Recipient.from_row(a) for a in sources)
    return dataclasses.replace(fields, subject=subject, to=to)


def _forwarded_parts(ctx: ServiceContext, session: Session, original: EmailMessage, mode: str) -> list[BlobRef]:
    if mode == "attachment":
        if not original.raw_sha256:
            raise InvalidInput("forwardOf: the original's bytes are not stored", details={"forwardOf": ["No raw"]})
        name = safe_filename(f"{original.subject or 'message'}.eml", default_extension=".eml")
        return [BlobRef(name, "message/rfc822", original.raw_sha256, int(original.size or 0))]
    refs = []
    for attachment in ordered_attachments(session, original.id):
        content = content_of(ctx, attachment)
        name = attachment.filename or safe_filename(None, default_extension="")
        refs.append(BlobRef(name, attachment.mime_type, content.sha256, content.size))
    return refs


def resolve_related(
    ctx: ServiceContext, *, principal: Principal, account: EmailAccount, fields: ComposeFields
) -> Related:
    """Apply ``inReplyTo`` / ``forwardOf`` to ``fields`` (see the module docstring).  Opens its own read session.

    Raises:
        InvalidInput: naming ``inReplyTo`` / ``forwardOf`` when the message is unknown or of another account.
    """
    if not fields.in_reply_to and not fields.forward_of:
        return Related(fields)
    related = Related(fields)
    with ctx.db.tenant_session(principal.tenant_id) as session:
        if fields.in_reply_to:
            original = _original(session, principal, account, fields.in_reply_to, "inReplyTo")
            in_reply_to, references = reply_headers(original)
            related = Related(_reply_defaults(fields, original), in_reply_to, references, original.id)
        if fields.forward_of:
            original = _original(session, principal, account, fields.forward_of, "forwardOf")
            current = related.fields
            subject = current.subject if current.subject is not None else prefixed_subject("Fwd:", original.subject)
            current = dataclasses.replace(current, subject=subject)
            if fields.forward_mode == "inline":
                text, html_text = forward_body(original, current.text_body, current.html_body)
                current = dataclasses.replace(current, text_body=text, html_body=html_text)
            forwarded = _forwarded_parts(ctx, session, original, fields.forward_mode)
            related = dataclasses.replace(related, fields=current, forwarded=forwarded)
    return related


def parts_of(
    ctx: ServiceContext, tenant_id: uuid.UUID, refs: Iterable[BlobRef], new: Sequence[NewAttachment] = ()
) -> list[AttachmentPart]:
    """Attachment parts for the MIME builder: blob-stored ones (bytes read now), then ``new`` inline ones.

    Raises:
        NotFound: a blob is gone.
    """
    namespace = str(tenant_id)
    parts = [
        AttachmentPart(
            filename=ref.filename, content_type=ref.content_type, content=ctx.blobs.get(namespace, ref.sha256)
        )
        for ref in refs
    ]
    parts += [AttachmentPart(filename=a.filename, content_type=a.content_type, content=a.content) for a in new]
    return parts


def store_new_attachments(ctx: ServiceContext, tenant_id: uuid.UUID, new: Sequence[NewAttachment]) -> list[BlobRef]:
    """Put inline attachments given in a request into the tenant's blob store (deduplicated by sha256)."""
    namespace = str(tenant_id)
    return [BlobRef(a.filename, a.content_type, ctx.blobs.put(namespace, a.content), len(a.content)) for a in new]
