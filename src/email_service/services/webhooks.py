"""Webhooks (issue 12): subscriptions, deliveries made from the change log, signed POSTs with retries.

* A user subscribes ``url`` to ``events`` (``<kind>.<change>`` with ``*`` wildcards: ``message.created``,
  ``folder.*``, ``*``) for their own accounts; an admin may subscribe the whole tenant (``scope: tenant``).
  The URL's host obeys the webhook host policy (``ALLOW_PRIVATE_WEBHOOK_HOSTS``, ``WEBHOOK_HOST_ALLOWLIST``; in
  production non-public addresses are refused) when it is registered AND when each request is made (the guarded
  connector, :mod:`email_service.protocols.http_post`).
* Fan-out (:func:`queue_deliveries`: on wake-ups by :mod:`email_service.tasks.fanout`, and every scheduler tick
  as the safety net): per webhook and account, the change-log entries
  above the webhook's cursor become delivery rows (runs of one kind, folded like ``/changes``, filtered by
  ``events``) and the cursor moves, in ONE transaction under the cursor row's lock -- each entry becomes a delivery
  exactly once.  Then one ``deliver_webhook`` job per delivery.
* Delivery (:func:`deliver`): POST the JSON payload with ``X-Webhook-Id`` (the delivery id: unique, the same on
  every retry, so receivers drop duplicates), ``X-Webhook-Timestamp`` (epoch seconds) and ``X-Webhook-Signature:
  v1=<hex HMAC-SHA256(secret, timestamp + "." + body)>``.  A 2xx ends it; anything else is retried after
  ``WEBHOOK_RETRY_BASE_SECONDS * 2**(attempt-1)`` (capped at an hour) up to ``WEBHOOK_MAX_ATTEMPTS``: at-least-once.
  ``WEBHOOK_DISABLE_AFTER_FAILURES`` failed attempts in a row disable the webhook.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import http.client
import json
import secrets
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from email_service.config import Settings
from email_service.errors import ConfigurationError, Forbidden, InvalidInput, NotFound
from email_service.models import (
    CHANGE_KINDS,
    CHANGE_TYPES,
    EmailAccount,
    Tenant,
    Webhook,
    WebhookCursor,
    WebhookDelivery,
    now_ms,
)
from email_service.protocols import http_post
from email_service.protocols.errors import HostNotAllowed
from email_service.protocols.net import HostPolicy, check_host
from email_service.protocols.tls import client_ssl_context
from email_service.security.tokens import Principal
from email_service.services.accounts import Page
from email_service.services.changes import fold, read_entries
from email_service.services.context import ServiceContext

SIGNATURE_HEADER = "X-Webhook-Signature"
TIMESTAMP_HEADER = "X-Webhook-Timestamp"
ID_HEADER = "X-Webhook-Id"
MAX_WEBHOOKS_PER_USER = 20
_RETRY_CAP_SECONDS = 3600
_EVENT_NAMES = tuple(f"{kind}.{change}" for kind in CHANGE_KINDS for change in CHANGE_TYPES)
#: Every name or pattern ``events`` may hold: ``*``, ``<kind>.*``, ``*.<change>`` and each ``<kind>.<change>``.
EVENT_PATTERNS = ("*", *(f"{k}.*" for k in CHANGE_KINDS), *(f"*.{c}" for c in CHANGE_TYPES), *_EVENT_NAMES)


def webhook_host_policy(settings: Settings) -> HostPolicy:
    """``ALLOW_PRIVATE_WEBHOOK_HOSTS`` and ``WEBHOOK_HOST_ALLOWLIST`` as a policy of the guarded connector."""
    try:
        return HostPolicy.from_allowlist(
            settings.webhook_host_allowlist, allow_private=settings.allow_private_webhook_hosts
        )
    except ValueError as exc:
        raise ConfigurationError(f"WEBHOOK_HOST_ALLOWLIST: {exc}") from None


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """``v1=<hex>``: HMAC-SHA256 with ``secret`` over ``"<timestamp>." + body`` (the receiver recomputes it)."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"v1={digest}"


def _check_events(events: Sequence[str]) -> list[str]:
    patterns = list(dict.fromkeys(events))
    if not patterns or len(patterns) > 32:
        raise InvalidInput("events: give 1 to 32 event names", details={"events": ["1 to 32 names"]})
    for pattern in patterns:
        if pattern not in EVENT_PATTERNS:
            raise InvalidInput(
                f"events: {pattern!r} matches no event (kinds {', '.join(CHANGE_KINDS)}; changes "
                f"{', '.join(CHANGE_TYPES)}; e.g. message.created, folder.*, *)",
                details={"events": ["unknown event"]},
            )
    return patterns


def _check_url(url: str, policy: HostPolicy) -> None:
    try:
        target = http_post.parse_url(url)
        check_host(target.host, policy, port=target.port)
    except ValueError as exc:
        raise InvalidInput(f"url: {exc}", details={"url": [str(exc)]}) from None
    except HostNotAllowed as exc:
        raise InvalidInput(f"url: {exc.message}", details={"url": [exc.message]}) from None
    except OSError:
        return  # does not resolve now: the deliveries fail and are retried


@dataclass(frozen=True)
class CreatedWebhook:
    """A new webhook and its signing secret (shown once)."""

    webhook: Webhook
    secret: str


def create_webhook(
    ctx: ServiceContext,
    *,
    principal: Principal,
    url: str,
    events: Sequence[str],
    secret: str | None = None,
    tenant_wide: bool = False,
) -> CreatedWebhook:
    """Subscribe ``url`` to ``events`` of the caller's accounts (``tenant_wide``: every account of the tenant,
    admins only).  ``secret`` (16-256 characters) signs the requests; one is generated when ``None``.

    Raises:
        InvalidInput: a URL that is not http(s) or whose host the policy refuses; unknown events; too many.
        Forbidden: ``tenant_wide`` by a non-admin.
    """
    if tenant_wide and not principal.is_admin:
        raise Forbidden("Only an admin may create a tenant-wide webhook")
    patterns = _check_events(events)
    _check_url(url, webhook_host_policy(ctx.settings))
    secret = secret or secrets.token_urlsafe(32)
    webhook_id = uuid.uuid4()
    ciphertext, _key = ctx.cipher.encrypt(secret, tenant_id=principal.tenant_id, account_id=webhook_id)
    with ctx.db.tenant_session(principal.tenant_id) as session:
        owned = session.execute(
            select(Webhook.id).where(Webhook.tenant_id == principal.tenant_id, Webhook.user_id == principal.user_id)
        ).all()
        if len(owned) >= MAX_WEBHOOKS_PER_USER:
            raise InvalidInput(f"At most {MAX_WEBHOOKS_PER_USER} webhooks per user")
        webhook = Webhook(
            id=webhook_id,
            tenant_id=principal.tenant_id,
            user_id=None if tenant_wide else principal.user_id,
            url=url,
            events=patterns,
            secret_ciphertext=ciphertext,
            is_enabled=True,
            failure_streak=0,
        )
        session.add(webhook)
        session.flush()
        for account_id, seq in _accounts(session, webhook):  # from now on: no backlog of older changes
            session.add(
                WebhookCursor(tenant_id=principal.tenant_id, webhook_id=webhook_id, account_id=account_id, modseq=seq)
            )
    return CreatedWebhook(webhook, secret)


def _accounts(session: Session, webhook: Webhook) -> list[tuple[uuid.UUID, int]]:
    query = select(EmailAccount.id, EmailAccount.change_seq).where(
        EmailAccount.tenant_id == webhook.tenant_id, EmailAccount.deleted_at.is_(None)
    )
    if webhook.user_id is not None:
        query = query.where(EmailAccount.user_id == webhook.user_id)
    return [(account_id, int(seq)) for account_id, seq in session.execute(query)]


def _visible(session: Session, principal: Principal, webhook_id: uuid.UUID) -> Webhook:
    webhook = session.get(Webhook, webhook_id)
    if webhook is None or webhook.tenant_id != principal.tenant_id:
        raise NotFound("Webhook not found")
    if webhook.user_id != principal.user_id and not principal.is_admin:
        raise Forbidden("Access denied: not your webhook")
    return webhook


def list_webhooks(ctx: ServiceContext, *, principal: Principal) -> list[Webhook]:
    """The caller's webhooks (an admin: also the tenant-wide ones), oldest first."""
    with ctx.db.tenant_session(principal.tenant_id) as session:
        query = select(Webhook).where(Webhook.tenant_id == principal.tenant_id).order_by(Webhook.created_at)
        owners = [Webhook.user_id == principal.user_id]
        if principal.is_admin:
            owners.append(Webhook.user_id.is_(None))
        return list(session.execute(query.where(or_(*owners))).scalars())


def delete_webhook(ctx: ServiceContext, *, principal: Principal, webhook_id: uuid.UUID) -> None:
    """Delete a webhook with its cursors and deliveries.  Raises :class:`NotFound` / :class:`Forbidden`."""
    with ctx.db.tenant_session(principal.tenant_id) as session:
        session.delete(_visible(session, principal, webhook_id))


def list_deliveries(
    ctx: ServiceContext, *, principal: Principal, webhook_id: uuid.UUID, limit: int, offset: int
) -> Page:
    """A webhook's deliveries, newest first.  Raises :class:`NotFound` / :class:`Forbidden`."""
    with ctx.db.tenant_session(principal.tenant_id) as session:
        _visible(session, principal, webhook_id)
        condition = WebhookDelivery.webhook_id == webhook_id
        total = session.execute(select(func.count()).select_from(WebhookDelivery).where(condition)).scalar_one()
        rows = session.execute(
            select(WebhookDelivery)
            .where(condition)
            .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id)
            .limit(limit)
            .offset(offset)
        ).scalars()
        return Page(items=list(rows), total=int(total), limit=limit, offset=offset)


# -- fan-out: change log -> deliveries ---------------------------------------------------------------------------


def _wanted(patterns: Sequence[str], kind: str, change: str) -> bool:
    return any(fnmatch.fnmatchcase(f"{kind}.{change}", pattern) for pattern in patterns)


def _fan_out_account(session: Session, webhook: Webhook, account_id: uuid.UUID, now: int) -> list[uuid.UUID]:
    cursor = session.execute(
        select(WebhookCursor)
        .where(WebhookCursor.webhook_id == webhook.id, WebhookCursor.account_id == account_id)
        .with_for_update()
    ).scalar_one_or_none()
    if cursor is None:  # an account added after the webhook: from its beginning
        cursor = WebhookCursor(tenant_id=webhook.tenant_id, webhook_id=webhook.id, account_id=account_id, modseq=0)
        session.add(cursor)
    entries = read_entries(session, account_id, cursor.modseq, 500)
    made: list[uuid.UUID] = []
    start = 0
    while start < len(entries):
        end = start
        while end + 1 < len(entries) and entries[end + 1].kind == entries[start].kind:
            end += 1
        run, kind = entries[start : end + 1], entries[start].kind
        folded = fold((e.change, e.object_id) for e in run)
        ids = {
            c: [str(i) for i in getattr(folded, c)] if _wanted(webhook.events, kind, c) else [] for c in CHANGE_TYPES
        }
        if any(ids.values()):
            delivery_id = uuid.uuid4()
            payload: dict[str, Any] = {
                "id": str(delivery_id),
                "webhookId": str(webhook.id),
                "type": kind,
                "accountId": str(account_id),
                "oldState": str(cursor.modseq if start == 0 else entries[start - 1].modseq),
                "newState": str(run[-1].modseq),
                **ids,
                "createdAt": now,
            }
            session.add(
                WebhookDelivery(
                    id=delivery_id,
                    tenant_id=webhook.tenant_id,
                    webhook_id=webhook.id,
                    account_id=account_id,
                    event=kind,
                    payload=payload,
                    state="pending",
                    attempts=0,
                    next_attempt_at=now,
                )
            )
            made.append(delivery_id)
        start = end + 1
    if entries:
        cursor.modseq = entries[-1].modseq
    return made


def queue_deliveries(ctx: ServiceContext, tenant_ids: Sequence[uuid.UUID] | None = None) -> int:
    """Turn new change-log entries into deliveries for every enabled webhook (of ``tenant_ids``, default all),
    one transaction per webhook and account, then queue a ``deliver_webhook`` job for each new delivery and for
    every pending one whose retry time has passed a minute ago (its job was lost).  Returns how many were queued."""
    if tenant_ids is None:
        with ctx.db.system_session() as session:
            tenant_ids = list(session.execute(select(Tenant.tenant_id)).scalars())
    queued = 0
    for tenant_id in tenant_ids:
        due: list[uuid.UUID] = []
        with ctx.db.tenant_session(tenant_id) as session:
            webhooks = list(
                session.execute(
                    select(Webhook).where(Webhook.tenant_id == tenant_id, Webhook.is_enabled.is_(True))
                ).scalars()
            )
            targets = [
                (webhook, account_id) for webhook in webhooks for account_id, _seq in _accounts(session, webhook)
            ]
            due += session.execute(
                select(WebhookDelivery.id).where(
                    WebhookDelivery.tenant_id == tenant_id,
                    WebhookDelivery.state == "pending",
                    WebhookDelivery.next_attempt_at < now_ms() - 60_000,
                )
            ).scalars()
        for webhook, account_id in targets:
            with ctx.db.tenant_session(tenant_id) as session:
                due += _fan_out_account(session, webhook, account_id, now_ms())
        for delivery_id in dict.fromkeys(due):
            ctx.jobs.enqueue("deliver_webhook", {"tenantId": str(tenant_id), "deliveryId": str(delivery_id)})
            queued += 1
    return queued


# -- delivery ----------------------------------------------------------------------------------------------------


def _attempt(ctx: ServiceContext, webhook: Webhook, delivery: WebhookDelivery) -> tuple[int | None, str | None]:
    """One POST: ``(status, error)``; ``error`` is ``None`` for a 2xx."""
    secret = ctx.cipher.decrypt(webhook.secret_ciphertext, tenant_id=webhook.tenant_id, account_id=webhook.id)
    body = json.dumps(delivery.payload, separators=(",", ":"), sort_keys=True).encode()
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "email-service-webhooks/1",
        ID_HEADER: str(delivery.id),
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(secret, timestamp, body),
    }
    try:
        answer = http_post.post(
            webhook.url,
            body,
            headers,
            policy=webhook_host_policy(ctx.settings),
            timeout=float(ctx.settings.webhook_timeout_seconds),
            context=client_ssl_context(ctx.settings.mail_ca_bundle) if webhook.url.startswith("https") else None,
        )
    except HostNotAllowed as exc:
        return None, exc.message
    except (OSError, ValueError, http.client.HTTPException) as exc:
        return None, f"{type(exc).__name__}: {exc}"[:500]
    if 200 <= answer.status < 300:
        return answer.status, None
    return answer.status, f"HTTP {answer.status} {answer.reason}"[:500]


def deliver(ctx: ServiceContext, *, tenant_id: uuid.UUID, delivery_id: uuid.UUID) -> str:
    """The ``deliver_webhook`` job: POST one delivery (see the module docstring); returns its state afterwards
    (``delivered``, ``pending`` with a retry queued, ``failed``, or ``skipped`` when there is nothing to do)."""
    with ctx.db.tenant_session(tenant_id) as session:
        delivery = session.get(WebhookDelivery, delivery_id)
        webhook = session.get(Webhook, delivery.webhook_id) if delivery is not None else None
        if delivery is None or webhook is None or delivery.state != "pending" or not webhook.is_enabled:
            return "skipped"
        session.expunge_all()
    status, error = _attempt(ctx, webhook, delivery)
    now = now_ms()
    settings = ctx.settings
    with ctx.db.tenant_session(tenant_id) as session:
        attempts = delivery.attempts + 1
        values: dict[str, Any] = {"attempts": attempts, "last_status": status, "last_error": error, "updated_at": now}
        if error is None:
            values.update(state="delivered", delivered_at=now)
            streak: Any = 0
        else:
            delay = min(_RETRY_CAP_SECONDS, settings.webhook_retry_base_seconds * 2 ** (attempts - 1))
            values.update(state="failed" if attempts >= settings.webhook_max_attempts else "pending")
            values.update(next_attempt_at=now + delay * 1000)
            streak = Webhook.failure_streak + 1
        session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id, WebhookDelivery.state == "pending")
            .values(**values)
        )
        session.execute(update(Webhook).where(Webhook.id == webhook.id).values(failure_streak=streak))
        if error is not None:
            session.execute(
                update(Webhook)
                .where(Webhook.id == webhook.id, Webhook.failure_streak >= settings.webhook_disable_after_failures)
                .values(is_enabled=False, disabled_at=now)
            )
    if values["state"] == "pending":
        ctx.jobs.enqueue(
            "deliver_webhook",
            {"tenantId": str(tenant_id), "deliveryId": str(delivery_id)},
            delay_seconds=float(min(_RETRY_CAP_SECONDS, settings.webhook_retry_base_seconds * 2 ** (attempts - 1))),
        )
    return str(values["state"])
