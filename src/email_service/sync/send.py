"""Delivery of outbox items (issue 9, DESIGN.md section 8): the ``send_outbox_item`` job.

::

    claim: one transaction -- the item must be queued/scheduled and due; it becomes ``sending`` (attempts + 1,
           sending_started_at) and that is COMMITTED before any SMTP byte is sent
        |   an item found ``sending`` is never sent again (its outcome is unknown: see below)
    SMTP: the item's stored bytes, exactly, through the seed-002 handler and the process's shared pool (keyed by
          the account's full credential identity), envelope mail_from / rcpt_tos (Bcc only there), no retry inside
        |
    record_delivery: one transaction -- sent | partially_sent (refused recipients kept) | queued again after a
          transient failure (421/450/451/452, other 4xx, connection errors: 1, 5, 30 s, then doubling up to an hour,
          until SEND_DEADLINE_SECONDS after the send was accepted) | failed (5xx: the server's reason; deadline).
          After success, in the same transaction: the Sent copy (a row built by the sync's message_rows plus an
          ``append`` action with \\Seen, unless the account's saveSentCopy is false), the draft removed (expunge
          action), \\Answered on the original of a reply (flags action); the write-back job applies them.

At most once: a worker that dies between the server's 250 and the commit of ``record_delivery`` leaves the item
``sending``; the scheduler's :func:`email_service.services.outbox.fail_stuck` ends it ``failed`` /
``OutcomeUnknown`` once the job's hard time limit has passed, and nothing resends it.  (A retry of this job, or a
second copy of it, finds the item ``sending`` and does nothing.)
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable

from sqlalchemy import update
from sqlalchemy.orm import Session

from email_service.errors import NotFound
from email_service.models import (
    WAITING_STATUSES,
    EmailAccount,
    EmailMessage,
    OutboxItem,
    now_ms,
)
from email_service.protocols.smtp import SMTPConnectionPool, SMTPDeliveryStatus, SMTPProtocolHandler
from email_service.protocols.smtp_types import DeliveryResult
from email_service.services.accounts import account_password
from email_service.services.actions import (
    NewAction,
    lock_account,
    pending_message_ids,
    record_actions,
    request_syncback,
)
from email_service.services.context import ServiceContext
from email_service.services.message_changes import LocalChanges
from email_service.services.outbox import queue_send, record_outbox_change
from email_service.sync.drafts import pending_append, role_folder
from email_service.sync.store import add_messages, delete_messages, message_rows

log = logging.getLogger("email_service.send")
#: Seconds before the first retries after a transient failure (seed 002); then doubling, capped.
RETRY_DELAYS = (1, 5, 30)
BACKOFF_CAP_SECONDS = 3600
_TRANSIENT = (SMTPDeliveryStatus.RETRY, SMTPDeliveryStatus.TEMP_FAILED)
_ERROR_KINDS = {
    SMTPDeliveryStatus.REJECTED: "Rejected",
    SMTPDeliveryStatus.FAILED: "Failed",
    SMTPDeliveryStatus.INVALID: "InvalidMessage",
}
_POOL: SMTPConnectionPool | None = None
_POOL_LOCK = threading.Lock()


def shared_pool() -> SMTPConnectionPool:
    """The process's SMTP connection pool (made on first use); connections are keyed by host, port, username and
    account, never shared across accounts."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = SMTPConnectionPool(max_connections=10)
        return _POOL


def retry_delay(attempts: int) -> int:
    """Seconds before the next attempt after ``attempts`` failed ones: 1, 5, 30, then 60, 120, ... up to 3600."""
    if attempts <= len(RETRY_DELAYS):
        return RETRY_DELAYS[max(attempts, 1) - 1]
    return int(min(BACKOFF_CAP_SECONDS, RETRY_DELAYS[-1] * 2 ** (attempts - len(RETRY_DELAYS))))


def _handler(ctx: ServiceContext, account: EmailAccount, password: str, mail_from: str) -> SMTPProtocolHandler:
    port = int(account.smtp_port or 587)
    return SMTPProtocolHandler(
        hostname=str(account.smtp_hostname),
        port=port,
        username=account.smtp_username or account.username,
        password=password,
        encryption=account.smtp_encryption or ("tls" if port == 465 else "starttls"),
        encryption_vocabulary="account",
        from_address=mail_from,
        ca_bundle=ctx.settings.mail_ca_bundle,
        timeout=float(ctx.settings.mail_timeout_seconds),
        account_id=str(account.id),
        pool=shared_pool(),
        host_policy=ctx.host_policy,
    )


def _end(item: OutboxItem, status: str, kind: str | None, error: str | None, now: int) -> None:
    item.status, item.error_kind, item.error = status, kind, error
    item.finished_at = now
    item.updated_at = now


def _claim(
    ctx: ServiceContext, tenant_id: uuid.UUID, outbox_id: uuid.UUID, now: int
) -> str | tuple[OutboxItem, EmailAccount, str]:
    """Mark the item ``sending`` (committed on return) or say why not: ``gone``, ``early`` (queued again), or the
    status it is in (``sending``: in flight or outcome unknown -- never sent again)."""
    with ctx.db.tenant_session(tenant_id) as session:
        item = session.get(OutboxItem, outbox_id, with_for_update=True)
        if item is None:
            return "gone"
        if item.status not in WAITING_STATUSES:
            return item.status
        if item.next_attempt_at > now + 250:
            queue_send(ctx, tenant_id, outbox_id, delay_ms=item.next_attempt_at - now)
            return "early"
        account = session.get(EmailAccount, item.account_id)
        if account is None or account.deleted_at is not None or not account.is_enabled:
            _end(item, "failed", "AccountUnavailable", "The account was deleted or disabled", now)
            record_outbox_change(session, item)
            return "failed"
        if not account.smtp_hostname or not account.smtp_port:
            _end(item, "failed", "NoSmtpSettings", "The account has no SMTP settings (smtpHostname, smtpPort)", now)
            record_outbox_change(session, item)
            return "failed"
        password = account_password(ctx, session, account)
        # One conditional UPDATE, so that of two jobs (or a job and a cancel) only one wins, on every database.
        claimed = session.execute(
            update(OutboxItem)
            .where(OutboxItem.id == outbox_id, OutboxItem.status.in_(WAITING_STATUSES))
            .values(status="sending", attempts=OutboxItem.attempts + 1, sending_started_at=now, updated_at=now)
        )
        session.refresh(item)
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            return item.status
        record_outbox_change(session, item)
        session.expunge(item)
        session.expunge(account)
        return item, account, password


def send_outbox_item(
    ctx: ServiceContext, *, tenant_id: uuid.UUID, outbox_id: uuid.UUID, clock: Callable[[], int] = now_ms
) -> str:
    """The ``send_outbox_item`` job (see the module docstring).  Returns the item's status afterwards, or
    ``gone`` / ``early`` (not due at ``clock()``, epoch ms: queued again for its time).  Never raises for SMTP
    failures (they are recorded); database errors propagate (the item then stays ``sending`` and ends
    ``OutcomeUnknown``: never a second send)."""
    claimed = _claim(ctx, tenant_id, outbox_id, clock())
    if isinstance(claimed, str):
        return claimed
    item, account, password = claimed
    raw: bytes | None = None
    try:
        raw = ctx.blobs.get(str(tenant_id), item.raw_sha256)
    except NotFound:
        result = DeliveryResult(status=SMTPDeliveryStatus.FAILED, smtp_error="The message's bytes are gone")
    else:
        handler = _handler(ctx, account, password, item.mail_from)
        result = handler.send_raw_message(
            raw, rcpt_tos=item.rcpt_tos, mail_from=item.mail_from, message_id=item.rfc_message_id, retry=False
        )
    log.info("outbox %s attempt %d: %s %s", outbox_id, item.attempts, result.status.value, result.smtp_code)
    return record_delivery(
        ctx,
        tenant_id=tenant_id,
        outbox_id=outbox_id,
        result=result,
        raw=raw if result.status is SMTPDeliveryStatus.SUCCESS else None,
        now=clock(),
    )


def record_delivery(
    ctx: ServiceContext,
    *,
    tenant_id: uuid.UUID,
    outbox_id: uuid.UUID,
    result: DeliveryResult,
    raw: bytes | None,
    now: int | None = None,
) -> str:
    """Store one attempt's outcome (and, after success, the Sent copy, draft removal and ``\\Answered``) in one
    transaction; queue the retry or the write-back after the commit.  Returns the item's new status."""
    now = now_ms() if now is None else now
    retry_in: int | None = None
    with ctx.db.tenant_session(tenant_id) as session:
        item = session.get(OutboxItem, outbox_id)
        if item is None:
            return "gone"
        lock_account(session, item.account_id)
        item.delivery = result.to_dict()
        item.updated_at = now
        reason = " ".join(str(part) for part in (result.smtp_code, result.smtp_error) if part) or result.status.value
        if result.status is SMTPDeliveryStatus.SUCCESS:
            refused = dict(result.recipient_failures)
            if refused:
                _end(
                    item, "partially_sent", "RecipientsRefused", "; ".join(f"{a}: {r}" for a, r in refused.items()), now
                )
            else:
                _end(item, "sent", None, None, now)
            account = session.get(EmailAccount, item.account_id)
            wrote = account is not None and raw is not None and _after_success(ctx, session, item, account, raw)
        elif result.status in _TRANSIENT:
            delay = retry_delay(item.attempts)
            deadline = item.created_at + ctx.settings.send_deadline_seconds * 1000
            if now + delay * 1000 > deadline:
                _end(item, "failed", "DeadlineExceeded", f"Still failing after {item.attempts} attempts: {reason}", now)
            else:
                item.status, item.error_kind, item.error = "queued", "TemporaryFailure", reason
                item.next_attempt_at = now + delay * 1000
                retry_in = delay
            wrote = False
        else:
            _end(item, "failed", _ERROR_KINDS.get(result.status, "Failed"), reason, now)
            wrote = False
        record_outbox_change(session, item)
        status, account_id = item.status, item.account_id
    if retry_in is not None:
        queue_send(ctx, tenant_id, outbox_id, delay_ms=retry_in * 1000)
    if wrote:
        request_syncback(ctx, tenant_id, account_id)
    return status


def _after_success(ctx: ServiceContext, session: Session, item: OutboxItem, account: EmailAccount, raw: bytes) -> bool:
    """The Sent copy, the draft's removal and ``\\Answered`` of the original, in the open transaction; True when
    actions were recorded (IMAP accounts only: a POP3 account has no server folders to change)."""
    if account.protocol != "imap":
        return False
    actions: list[NewAction] = []
    if account.save_sent_copy:
        actions += _sent_copy(ctx, session, item, account, raw)
    changes = LocalChanges(session, account)
    draft = session.get(EmailMessage, item.draft_id) if item.draft_id else None
    if draft is not None and draft.is_draft:
        if draft.uid is None and not pending_message_ids(session, [draft.id]):
            delete_messages(session, draft.folder_id, EmailMessage.id, [draft.id])  # never reached the server
        else:
            if pending_append(session, draft.id):  # expunge the copy that append makes, not the one it replaces
                draft.uid = draft.uidvalidity = None
            changes.delete(draft, permanent=True)
    original = session.get(EmailMessage, item.reply_to_id) if item.reply_to_id else None
    if original is not None and original.account_id == account.id:
        changes.set_flags(original, ["\\Answered"], [])
    record_actions(session, tenant_id=item.tenant_id, account_id=account.id, actions=actions)
    changes.flush(item.tenant_id)
    return bool(actions or changes.actions)


def _sent_copy(
    ctx: ServiceContext, session: Session, item: OutboxItem, account: EmailAccount, raw: bytes
) -> list[NewAction]:
    folder, actions = role_folder(session, account, "sent")
    row, parts = message_rows(
        raw,
        identity={},
        tenant_id=item.tenant_id,
        account_id=account.id,
        folder_id=folder.id,
        flags=["\\Seen"],
        scan_status="pending" if ctx.settings.virus_scan_enabled else "skipped",
    )
    add_messages(
        session, tenant_id=item.tenant_id, account_id=account.id, folder_id=folder.id, messages=[row], attachments=parts
    )
    item.sent_copy_id = row["id"]
    details = {"sha256": item.raw_sha256, "flags": ["\\Seen"], "messageId": item.rfc_message_id}
    actions.append(NewAction("append", message_id=row["id"], folder_id=folder.id, mailbox=folder.name, details=details))
    return actions
