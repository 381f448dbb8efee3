"""The outbox (issue 9, DESIGN.md section 8): accepting a send, listing, cancelling (undo send), and the periodic
work that queues due items and ends items a crash left ``sending``.

Accepting a send (:func:`submit_draft`, :func:`submit_inline`) builds the message once -- RFC 5322 bytes without a
Bcc header, a fixed Message-ID, the envelope ``mail_from``/``rcpt_tos`` with the Bcc recipients -- and stores an
:class:`~email_service.models.OutboxItem`.  Every send waits ``SEND_UNDO_SECONDS`` (default 5) before its SMTP
transaction, or until ``sendAt`` when that is later; meanwhile ``DELETE /outbox/{id}`` cancels it and the draft
stays a draft.  The ``send_outbox_item`` job (:mod:`email_service.sync.send`) delivers it.

At most once: the job commits ``sending`` before the SMTP transaction.  An item still ``sending`` after the job's
hard time limit has no recorded outcome (the worker died between the server's answer and the commit, or during the
transaction): it is never sent again but ends ``failed`` with kind ``OutcomeUnknown`` (:func:`fail_stuck`), and the
client decides whether to send it again (the recipients may or may not have it).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from email.utils import make_msgid

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from email_service.errors import Conflict, InvalidInput, NotFound
from email_service.models import (
    OUTBOX_STATUSES,
    WAITING_STATUSES,
    EmailAccount,
    EmailMessage,
    OutboxItem,
    Tenant,
    now_ms,
)
from email_service.protocols.mime.build import AttachmentPart
from email_service.protocols.smtp_validate import envelope_recipients
from email_service.security.tokens import Principal
from email_service.services import idempotency
from email_service.services.accounts import Page, load_account
from email_service.services.attachment_content import draft_attachments
from email_service.services.changes import record_changes
from email_service.services.compose import fields_of, parts_of, resolve_related, sender_of
from email_service.services.compose_mime import ComposeFields, Envelope, build_raw, check_fields, check_recipients
from email_service.services.context import ServiceContext
from email_service.services.mailbox import load_message

#: ``sendAt`` at most this far ahead (ms): a year.
MAX_SCHEDULE_MS = 366 * 24 * 3600 * 1000
#: Items due within this many seconds get their job now (with a delay); later ones are queued by the scheduler.
ENQUEUE_HORIZON_SECONDS = 3600


@dataclass(frozen=True)
class Accepted:
    """A send request's outcome: the item, and False when an ``Idempotency-Key`` replay returned an earlier one."""

    item: OutboxItem
    created: bool


@dataclass(frozen=True)
class Outgoing:
    """A message ready for the outbox."""

    account: EmailAccount
    raw: bytes
    rfc_message_id: str
    subject: str
    rcpt_tos: list[str]
    draft_id: uuid.UUID | None = None
    reply_to_id: uuid.UUID | None = None


@dataclass(frozen=True)
class SendRequest:
    """What every send request carries besides its message: ``sendAt`` (epoch ms or ``None``), the
    ``Idempotency-Key`` header and the request's fingerprint (:func:`idempotency.request_hash`)."""

    send_at: int | None = None
    idempotency_key: str | None = None
    body_sha256: str = ""


def require_smtp(account: EmailAccount) -> None:
    """Raises :class:`Conflict` naming the settings to add when the account cannot send."""
    missing = [
        name for name, value in (("smtpHostname", account.smtp_hostname), ("smtpPort", account.smtp_port)) if not value
    ]
    if missing:
        raise Conflict(
            f"The account has no SMTP settings: set {' and '.join(missing)} (and smtpEncryption, smtpUsername if "
            "needed) with PUT /api/v1/accounts/{id}",
            details={name: ["required to send mail"] for name in missing},
        )


def _schedule(ctx: ServiceContext, send_at: int | None, now: int) -> tuple[int, str]:
    """``(effective send time, status)``: never before the undo window ends; ``scheduled`` when ``sendAt`` is
    later than that, else ``queued``."""
    if send_at is not None and send_at > now + MAX_SCHEDULE_MS:
        raise InvalidInput("sendAt: at most a year ahead", details={"sendAt": ["At most a year ahead"]})
    undo_ends = now + ctx.settings.send_undo_seconds * 1000
    if send_at is not None and send_at > undo_ends:
        return send_at, "scheduled"
    return undo_ends, "queued"


def _replayed(ctx: ServiceContext, principal: Principal, request: SendRequest) -> OutboxItem | None:
    if request.idempotency_key is None:
        return None
    with ctx.db.tenant_session(principal.tenant_id) as session:
        known = idempotency.known_item(session, principal, request.idempotency_key, request.body_sha256)
        return session.get(OutboxItem, known) if known else None


def _message_id(account: EmailAccount) -> str:
    return make_msgid(domain=account.email_address.rpartition("@")[2] or None)


def _answered_original(session: Session, draft: EmailMessage) -> uuid.UUID | None:
    """The message of the draft's account that the draft answers (by its In-Reply-To Message-ID), if stored."""
    if not draft.in_reply_to:
        return None
    return session.execute(
        select(EmailMessage.id)
        .where(
            EmailMessage.account_id == draft.account_id,
            EmailMessage.message_id == draft.in_reply_to,
            EmailMessage.is_draft.is_(False),
        )
        .limit(1)
    ).scalar_one_or_none()


def _from_draft(ctx: ServiceContext, principal: Principal, message_id: uuid.UUID) -> Outgoing:
    with ctx.db.tenant_session(principal.tenant_id) as session:
        draft = load_message(session, principal, message_id)
        if not draft.is_draft:
            raise Conflict("messageId names a message that is not a draft")
        account = load_account(session, principal, draft.account_id)
        require_smtp(account)
        reply_to_id = _answered_original(session, draft)
    fields = fields_of(draft)
    check_recipients(fields, sending=True)
    parts = [
        AttachmentPart(a.attachment.filename, a.attachment.mime_type, b"".join(a.chunks(ctx)))
        for a in draft_attachments(ctx, tenant_id=principal.tenant_id, message_id=message_id, for_sending=True)
    ]
    rfc_id = _message_id(account)
    envelope = Envelope(
        sender_of(account), rfc_id, datetime.now().astimezone(), draft.in_reply_to, list(draft.references or [])
    )
    raw = build_raw(fields, envelope, parts)
    recipients = [r.email for r in (*(fields.to or ()), *(fields.cc or ()), *(fields.bcc or ()))]
    return Outgoing(account, raw, rfc_id, fields.subject or "", envelope_recipients(recipients), draft.id, reply_to_id)


def _inline(ctx: ServiceContext, principal: Principal, account_id: uuid.UUID, fields: ComposeFields) -> Outgoing:
    settings = ctx.settings
    check_fields(fields, max_size=settings.max_attachment_size, max_count=settings.max_attachments_per_message)
    with ctx.db.tenant_session(principal.tenant_id) as session:
        account = load_account(session, principal, account_id)
    require_smtp(account)
    related = resolve_related(ctx, principal=principal, account=account, fields=fields)
    check_recipients(related.fields, sending=True)
    if len(related.forwarded) + len(fields.attachments) > settings.max_attachments_per_message:
        limit = settings.max_attachments_per_message
        raise InvalidInput(f"attachments: at most {limit}", details={"attachments": [f"At most {limit}"]})
    parts = parts_of(ctx, principal.tenant_id, related.forwarded, fields.attachments)
    rfc_id = _message_id(account)
    envelope = Envelope(
        sender_of(account), rfc_id, datetime.now().astimezone(), related.in_reply_to, related.references
    )
    raw = build_raw(related.fields, envelope, parts)
    built = related.fields
    recipients = [r.email for r in (*(built.to or ()), *(built.cc or ()), *(built.bcc or ()))]
    return Outgoing(
        account, raw, rfc_id, built.subject or "", envelope_recipients(recipients), None, related.reply_to_id
    )


def submit_draft(ctx: ServiceContext, *, principal: Principal, message_id: uuid.UUID, request: SendRequest) -> Accepted:
    """``POST /compose/send``: send a draft (it is removed from Drafts after success).

    Raises:
        NotFound / Forbidden: the draft is not visible.  InvalidInput: no recipient, ``sendAt``.
        Conflict: not a draft; no SMTP settings; the ``Idempotency-Key`` was used with another body.
        AttachmentInfected / ServiceUnavailable: an attachment is infected or cannot be scanned.
    """
    replayed = _replayed(ctx, principal, request)
    if replayed is not None:
        return Accepted(replayed, created=False)
    return _store(ctx, principal, _from_draft(ctx, principal, message_id), request)


def submit_inline(
    ctx: ServiceContext, *, principal: Principal, account_id: uuid.UUID, fields: ComposeFields, request: SendRequest
) -> Accepted:
    """``POST /accounts/{id}/send``: send a message given inline (the draft fields).  Raises as
    :func:`submit_draft`, and :class:`InvalidInput` naming a field for every seed 002 / 004 limit."""
    replayed = _replayed(ctx, principal, request)
    if replayed is not None:
        return Accepted(replayed, created=False)
    return _store(ctx, principal, _inline(ctx, principal, account_id, fields), request)


def _store(ctx: ServiceContext, principal: Principal, outgoing: Outgoing, request: SendRequest) -> Accepted:
    now = now_ms()
    send_at, status = _schedule(ctx, request.send_at, now)
    sha256 = ctx.blobs.put(str(principal.tenant_id), outgoing.raw)
    account = outgoing.account
    item = OutboxItem(
        id=uuid.uuid4(),
        tenant_id=principal.tenant_id,
        account_id=account.id,
        user_id=principal.user_id,
        status=status,
        attempts=0,
        send_at=send_at,
        next_attempt_at=send_at,
        rfc_message_id=outgoing.rfc_message_id,
        raw_sha256=sha256,
        size=len(outgoing.raw),
        subject=outgoing.subject,
        mail_from=account.email_address,
        rcpt_tos=outgoing.rcpt_tos,
        draft_id=outgoing.draft_id,
        reply_to_id=outgoing.reply_to_id,
    )
    try:
        with ctx.db.tenant_session(principal.tenant_id) as session:
            session.add(item)
            session.flush()
            record_outbox_change(session, item, created=True)
            if request.idempotency_key is not None:
                idempotency.remember(session, principal, request.idempotency_key, request.body_sha256, item.id)
    except IntegrityError:  # the same key, concurrently: answer with the first request's item
        replayed = _replayed(ctx, principal, request)
        if replayed is None:
            raise
        return Accepted(replayed, created=False)
    queue_send(ctx, item.tenant_id, item.id, delay_ms=send_at - now)
    return Accepted(item, created=True)


def record_outbox_change(session: Session, item: OutboxItem, *, created: bool = False) -> None:
    """An outbox item's creation or status change in the account's change log (kind ``outbox``, issue 12), in the
    transaction that made it."""
    ids = [item.id]
    record_changes(
        session,
        tenant_id=item.tenant_id,
        account_id=item.account_id,
        kind="outbox",
        created=ids if created else (),
        updated=() if created else ids,
    )


def queue_send(ctx: ServiceContext, tenant_id: uuid.UUID, outbox_id: uuid.UUID, *, delay_ms: int) -> None:
    """Queue the item's ``send_outbox_item`` job ``delay_ms`` from now, unless that is beyond
    :data:`ENQUEUE_HORIZON_SECONDS` (the scheduler queues it when it is due)."""
    delay = max(0.0, delay_ms / 1000)
    if delay <= ENQUEUE_HORIZON_SECONDS:
        payload: dict[str, str | int | float | bool | None] = {"tenantId": str(tenant_id), "outboxId": str(outbox_id)}
        ctx.jobs.enqueue("send_outbox_item", payload, delay_seconds=delay)


def _load(session: Session, principal: Principal, outbox_id: uuid.UUID) -> OutboxItem:
    item = session.get(OutboxItem, outbox_id)
    if item is None or item.tenant_id != principal.tenant_id:
        raise NotFound("Outbox item not found")
    try:
        load_account(session, principal, item.account_id)
    except NotFound:
        raise NotFound("Outbox item not found") from None
    return item


def get_item(ctx: ServiceContext, *, principal: Principal, outbox_id: uuid.UUID) -> OutboxItem:
    """One outbox item.  Raises :class:`NotFound` / :class:`Forbidden` (another user's: 403, as accounts)."""
    with ctx.db.tenant_session(principal.tenant_id) as session:
        return _load(session, principal, outbox_id)


def list_items(
    ctx: ServiceContext,
    *,
    principal: Principal,
    account_id: uuid.UUID | None,
    status: str | None,
    limit: int,
    offset: int,
) -> Page:
    """The caller's outbox items (an admin's: the tenant's), newest first, of one account and/or status.

    Raises:
        NotFound / Forbidden: ``account_id`` is not visible.  InvalidInput: an unknown status.
    """
    if status is not None and status not in OUTBOX_STATUSES:
        raise InvalidInput(f"status must be one of {', '.join(OUTBOX_STATUSES)}", details={"status": ["unknown"]})
    with ctx.db.tenant_session(principal.tenant_id) as session:
        conditions = [OutboxItem.tenant_id == principal.tenant_id]
        if account_id is not None:
            load_account(session, principal, account_id)
            conditions.append(OutboxItem.account_id == account_id)
        if not principal.is_admin:
            conditions.append(OutboxItem.user_id == principal.user_id)
        if status is not None:
            conditions.append(OutboxItem.status == status)
        total = session.execute(select(func.count()).select_from(OutboxItem).where(*conditions)).scalar_one()
        rows = session.execute(
            select(OutboxItem)
            .where(*conditions)
            .order_by(OutboxItem.created_at.desc(), OutboxItem.id)
            .limit(limit)
            .offset(offset)
        ).scalars()
        return Page(list(rows), int(total), limit, offset)


def cancel(ctx: ServiceContext, *, principal: Principal, outbox_id: uuid.UUID) -> OutboxItem:
    """Undo send: cancel an item that is still ``queued`` or ``scheduled`` (the draft stays a draft).

    Raises:
        NotFound / Forbidden: not visible.  Conflict: already sending, sent, failed or cancelled.
    """
    with ctx.db.tenant_session(principal.tenant_id) as session:
        item = _load(session, principal, outbox_id)
        now = now_ms()
        changed = session.execute(
            update(OutboxItem)
            .where(OutboxItem.id == outbox_id, OutboxItem.status.in_(WAITING_STATUSES))
            .values(status="cancelled", finished_at=now, updated_at=now)
        )
        if not changed.rowcount:  # type: ignore[attr-defined]
            raise Conflict(f"The item is {item.status}; only a queued or scheduled item can be cancelled")
        session.refresh(item)
        record_outbox_change(session, item)
        return item


def _tenants(ctx: ServiceContext, tenant_ids: Iterable[uuid.UUID] | None) -> list[uuid.UUID]:
    if tenant_ids is not None:
        return list(tenant_ids)
    with ctx.db.system_session() as session:
        return list(session.execute(select(Tenant.tenant_id)).scalars())


def queue_due(ctx: ServiceContext, *, now: int, tenant_ids: Iterable[uuid.UUID] | None = None) -> int:
    """Queue the job of every waiting item due at ``now`` (epoch ms); a job queued twice sends once (the job
    claims the item).  Returns how many jobs were queued."""
    queued = 0
    for tenant_id in _tenants(ctx, tenant_ids):
        with ctx.db.tenant_session(tenant_id) as session:
            due = list(
                session.execute(
                    select(OutboxItem.id).where(
                        OutboxItem.tenant_id == tenant_id,
                        OutboxItem.status.in_(WAITING_STATUSES),
                        OutboxItem.next_attempt_at <= now,
                    )
                ).scalars()
            )
        for outbox_id in due:
            queue_send(ctx, tenant_id, outbox_id, delay_ms=0)
        queued += len(due)
    return queued


def fail_stuck(
    ctx: ServiceContext, *, now: int, older_than_ms: int, tenant_ids: Iterable[uuid.UUID] | None = None
) -> int:
    """End every item ``sending`` since before ``now - older_than_ms`` as ``failed`` / ``OutcomeUnknown``: its job
    died without recording what the SMTP server answered, so it is never sent again (at most once; see the module
    docstring).  Returns how many."""
    ended = 0
    for tenant_id in _tenants(ctx, tenant_ids):
        with ctx.db.tenant_session(tenant_id) as session:
            result = session.execute(
                update(OutboxItem)
                .where(
                    OutboxItem.tenant_id == tenant_id,
                    OutboxItem.status == "sending",
                    OutboxItem.sending_started_at < now - older_than_ms,
                )
                .values(
                    status="failed",
                    error_kind="OutcomeUnknown",
                    error="The worker stopped during the SMTP transaction or before recording its outcome: the "
                    "message may or may not have been delivered, so it is not sent again automatically",
                    finished_at=now,
                    updated_at=now,
                )
                .returning(OutboxItem.id, OutboxItem.account_id)
            )
            by_account: dict[uuid.UUID, list[uuid.UUID]] = {}
            for outbox_id, account_id in result:
                by_account.setdefault(account_id, []).append(outbox_id)
            for account_id, ids in by_account.items():
                record_changes(session, tenant_id=tenant_id, account_id=account_id, kind="outbox", updated=ids)
            ended += sum(len(ids) for ids in by_account.values())
    return ended
