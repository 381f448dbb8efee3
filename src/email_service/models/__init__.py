"""Typed SQLAlchemy 2 models, one module per table family (seed 003 + sync state)."""

from email_service.models.account import EmailAccount, EmailCredential, Tenant
from email_service.models.audit import AuditLog
from email_service.models.base import Base, TenantScoped, now_ms
from email_service.models.mailbox import FOLDER_ROLES, EmailAttachment, EmailFolder, EmailMessage
from email_service.models.push import PushLease
from email_service.models.sync import SYNC_RUN_STATES, SyncRun

TENANT_TABLES = (
    "email_accounts",
    "email_credentials",
    "email_folders",
    "email_messages",
    "email_attachments",
    "email_sync_runs",
    "email_audit_log",
    "email_push_leases",
)

__all__ = [
    "FOLDER_ROLES",
    "SYNC_RUN_STATES",
    "TENANT_TABLES",
    "AuditLog",
    "Base",
    "EmailAccount",
    "EmailAttachment",
    "EmailCredential",
    "EmailFolder",
    "EmailMessage",
    "PushLease",
    "SyncRun",
    "Tenant",
    "TenantScoped",
    "now_ms",
]
