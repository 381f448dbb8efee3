"""Webhooks (issue 12): ``POST/GET /webhooks``, ``DELETE /webhooks/{id}``, ``GET /webhooks/{id}/deliveries``
(deliveries, signatures and retries: :mod:`email_service.services.webhooks`)."""

from __future__ import annotations

import re
import uuid
from typing import Any

from apiflask import APIBlueprint, Schema
from apiflask.fields import UUID, Boolean, Dict, Integer, List, Nested, String
from apiflask.validators import Length, OneOf

from email_service.models import Webhook, WebhookDelivery
from email_service.services import webhooks as service

from .auth import current_principal
from .common import AUTH_ERRORS, pagination
from .context import service_context
from .fields import FullMatch, Text
from .gate import guard
from .schemas import DeletedOut, PaginationOut, PaginationQuery

bp = guard(
    APIBlueprint(
        "webhooks",
        __name__,
        tag={"name": "Changes", "description": "State strings, /changes, Server-Sent Events and webhooks"},
    )
)
_WEBHOOK_ID = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
_EXAMPLE = {
    "id": _WEBHOOK_ID,
    "url": "https://hooks.example.com/mail",
    "events": ["message.created", "folder.*"],
    "scope": "user",
    "isEnabled": True,
    "failureStreak": 0,
    "disabledAt": None,
    "createdAt": 1767225600000,
}


_PORT = r"(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})"
_URL = re.compile(rf"^https?://[A-Za-z0-9.-]+(?::{_PORT})?(?:/[!$&'()*+,;=:@%/?A-Za-z0-9._~-]*)?$")


class WebhookIn(Schema):
    """``url`` (http/https; its host must be public in production), ``events`` (``message.created``, ``folder.*``,
    ``*`` ...), an optional ``secret`` (generated when missing), ``scope`` ``tenant`` for admins."""

    url = Text(
        required=True,
        validate=[Length(1, 2000), FullMatch(_URL, error="url must be an http:// or https:// URL")],
        error_messages={"required": "url is required"},
    )
    events = List(
        Text(validate=OneOf(service.EVENT_PATTERNS, error="events: unknown event name or pattern")),
        required=True,
        validate=Length(1, 32),
        metadata={"description": "<kind>.<change> patterns: message|folder|sync|outbox . created|updated|destroyed"},
    )
    secret = Text(validate=Length(16, 256), metadata={"description": "HMAC-SHA256 key of the signatures"})
    scope = Text(load_default="user", validate=OneOf(("user", "tenant"), error="scope must be user or tenant"))


class WebhookOut(Schema):
    """A webhook (never its secret, except once in the answer to its creation)."""

    id = UUID()
    url = String()
    events = List(String())
    scope = String(metadata={"description": "user: the caller's accounts; tenant: every account of the tenant"})
    isEnabled = Boolean(metadata={"description": "false after WEBHOOK_DISABLE_AFTER_FAILURES failures in a row"})
    failureStreak = Integer()
    disabledAt = Integer(allow_none=True)
    createdAt = Integer()
    secret = String(metadata={"description": "only in the answer to POST: keep it to verify X-Webhook-Signature"})


class WebhookListOut(Schema):
    """``{"webhooks": [...]}``."""

    webhooks = List(Nested(WebhookOut))


class DeliveryOut(Schema):
    """One delivery: its id is the ``X-Webhook-Id`` header of every attempt."""

    id = UUID()
    event = String()
    state = String(metadata={"description": "pending | delivered | failed"})
    attempts = Integer()
    nextAttemptAt = Integer()
    lastStatus = Integer(allow_none=True)
    lastError = String(allow_none=True)
    deliveredAt = Integer(allow_none=True)
    createdAt = Integer()
    payload = Dict()


class DeliveryListOut(Schema):
    """``{"deliveries": [...], "pagination": {...}}``, newest first."""

    deliveries = List(Nested(DeliveryOut))
    pagination = Nested(PaginationOut)


def _webhook(webhook: Webhook) -> dict[str, Any]:
    return {
        "id": webhook.id,
        "url": webhook.url,
        "events": webhook.events,
        "scope": "user" if webhook.user_id else "tenant",
        "isEnabled": webhook.is_enabled,
        "failureStreak": webhook.failure_streak,
        "disabledAt": webhook.disabled_at,
        "createdAt": webhook.created_at,
    }


def _delivery(delivery: WebhookDelivery) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "event": delivery.event,
        "state": delivery.state,
        "attempts": delivery.attempts,
        "nextAttemptAt": delivery.next_attempt_at,
        "lastStatus": delivery.last_status,
        "lastError": delivery.last_error,
        "deliveredAt": delivery.delivered_at,
        "createdAt": delivery.created_at,
        "payload": delivery.payload,
    }


@bp.post("/webhooks")
@bp.input(WebhookIn, location="json", example={"url": "https://hooks.example.com/mail", "events": ["message.*"]})
@bp.output(WebhookOut, status_code=201, example={**_EXAMPLE, "secret": "s3cr3t-s3cr3t-s3cr3t"})
@bp.doc(
    summary="Subscribe a URL to changes of the caller's accounts (admins: scope tenant)",
    description=(
        "Each change-log event matching `events` is POSTed as JSON with `X-Webhook-Id` (unique per delivery, the "
        "same on retries), `X-Webhook-Timestamp` (epoch s) and `X-Webhook-Signature: v1=<hex HMAC-SHA256(secret, "
        "timestamp + '.' + body)>`. Non-2xx answers are retried with backoff; a long failure streak disables the "
        "webhook. 400 for a URL whose host is not public (production) or unknown events."
    ),
    operation_id="createWebhook",
    responses=[*AUTH_ERRORS, 415],
)
def create_webhook(json_data: dict[str, Any]) -> Any:
    created = service.create_webhook(
        service_context(),
        principal=current_principal(),
        url=json_data["url"],
        events=json_data["events"],
        secret=json_data.get("secret"),
        tenant_wide=json_data["scope"] == "tenant",
    )
    return {**_webhook(created.webhook), "secret": created.secret}, 201


@bp.get("/webhooks")
@bp.output(WebhookListOut, example={"webhooks": [_EXAMPLE]})
@bp.doc(
    summary="The caller's webhooks",
    description="Admins also see the tenant-wide ones.",
    operation_id="listWebhooks",
    responses=AUTH_ERRORS,
)
def list_webhooks() -> dict[str, Any]:
    return {"webhooks": [_webhook(w) for w in service.list_webhooks(service_context(), principal=current_principal())]}


@bp.delete("/webhooks/<uuid:webhook_id>")
@bp.output(DeletedOut, example={"message": "Webhook deleted", "id": _WEBHOOK_ID})
@bp.doc(
    summary="Delete a webhook and its deliveries",
    description="No more deliveries are made.",
    operation_id="deleteWebhook",
    responses=AUTH_ERRORS,
)
def delete_webhook(webhook_id: uuid.UUID) -> dict[str, Any]:
    service.delete_webhook(service_context(), principal=current_principal(), webhook_id=webhook_id)
    return {"message": "Webhook deleted", "id": webhook_id}


@bp.get("/webhooks/<uuid:webhook_id>/deliveries")
@bp.input(PaginationQuery, location="query")
@bp.output(DeliveryListOut, example={"deliveries": [], "pagination": {"total": 0, "limit": 100, "offset": 0}})
@bp.doc(
    summary="Deliveries of a webhook, newest first",
    description="State, attempts, the last answer's status or error, and the payload sent.",
    operation_id="listWebhookDeliveries",
    responses=AUTH_ERRORS,
)
def list_deliveries(webhook_id: uuid.UUID, query_data: dict[str, Any]) -> dict[str, Any]:
    page = service.list_deliveries(
        service_context(),
        principal=current_principal(),
        webhook_id=webhook_id,
        limit=query_data["limit"],
        offset=query_data["offset"],
    )
    return {"deliveries": [_delivery(d) for d in page.items], "pagination": pagination(page)}
