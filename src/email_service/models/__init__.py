"""Typed SQLAlchemy 2 models, one module per table family (seed 003 + sync state)."""

from email_service.models.account import EmailAccount, EmailCredential, Tenant
from email_service.models.actions import ACTION_KINDS, ACTION_STATES, REMOVING_KINDS, PendingAction
from email_service.models.audit import AuditLog
from email_service.models.base import Base, TenantScoped, now_ms
from email_service.models.changes import CHANGE_KINDS, CHANGE_TYPES, ChangeEntry
from email_service.models.mailbox import (
    FOLDER_ROLES,
    SCAN_STATUSES,
    EmailAttachment,
    EmailFolder,
    EmailMessage,
    apply_folder_counts,
    folder_counts_delta,
)
from email_service.models.outbox import FINAL_STATUSES, OUTBOX_STATUSES, WAITING_STATUSES, IdempotencyKey, OutboxItem
from email_service.models.push import PushLease
from email_service.models.search import SearchDoc, ThreadContainer
from email_service.models.sync import SYNC_RUN_STATES, SyncRun
from email_service.models.webhooks import DELIVERY_STATES, Webhook, WebhookCursor, WebhookDelivery

TENANT_TABLES = (
    "email_accounts",
    "email_credentials",
    "email_folders",
    "email_messages",
    "email_attachments",
    "email_sync_runs",
    "email_audit_log",
    "email_pending_actions",
    "email_push_leases",
    "email_search_docs",
    "email_thread_containers",
    "email_outbox",
    "email_idempotency_keys",
    "email_changes",
    "email_webhooks",
    "email_webhook_cursors",
    "email_webhook_deliveries",
)

__all__ = [
    "ACTION_KINDS",
    "ACTION_STATES",
    "CHANGE_KINDS",
    "CHANGE_TYPES",
    "DELIVERY_STATES",
    "FINAL_STATUSES",
    "FOLDER_ROLES",
    "OUTBOX_STATUSES",
    "REMOVING_KINDS",
    "SCAN_STATUSES",
    "SYNC_RUN_STATES",
    "TENANT_TABLES",
    "WAITING_STATUSES",
    "AuditLog",
    "Base",
    "ChangeEntry",
    "EmailAccount",
    "EmailAttachment",
    "EmailCredential",
    "EmailFolder",
    "EmailMessage",
    "IdempotencyKey",
    "OutboxItem",
    "PendingAction",
    "PushLease",
    "SearchDoc",
    "SyncRun",
    "Tenant",
    "TenantScoped",
    "ThreadContainer",
    "Webhook",
    "WebhookCursor",
    "WebhookDelivery",
    "apply_folder_counts",
    "folder_counts_delta",
    "now_ms",
]
