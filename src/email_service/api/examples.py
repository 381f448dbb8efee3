"""Example requests and responses of the OpenAPI document (seed 000's account example; ids are seed 000/001's)."""

from __future__ import annotations

from typing import Any

TENANT_ID = "550e8400-e29b-41d4-a716-446655440000"
USER_ID = "6ba7b810-9dad-11d1-80b4-00c04fd430c8"
ACCOUNT_ID = "3f2a9c1e-8d4b-4e6f-9a7c-2b1d0e5f6a70"
FOLDER_ID = "8c1f4e2a-5b3d-4c7e-9f0a-1d2e3f4a5b6c"
MESSAGE_ID = "d4e5f6a7-b8c9-4d0e-8f1a-2b3c4d5e6f70"
SYNC_ID = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"
EPOCH_MS = 1706033200000

ACCOUNT_CREATE: dict[str, Any] = {
    "accountName": "Work Email",
    "emailAddress": "user@company.example",
    "protocol": "imap",
    "hostname": "imap.company.example",
    "port": 993,
    "encryption": "tls",
    "username": "user@company.example",
    "password": "secure_password_123",
    "isSyncEnabled": True,
    "syncInterval": 300,
}
ACCOUNT_UPDATE: dict[str, Any] = {"accountName": "Updated Name", "isSyncEnabled": False, "syncInterval": 600}
ACCOUNT: dict[str, Any] = {
    "id": ACCOUNT_ID,
    "tenantId": TENANT_ID,
    "userId": USER_ID,
    **{key: value for key, value in ACCOUNT_CREATE.items() if key != "password"},
    "smtpHostname": "smtp.company.example",
    "smtpPort": 465,
    "smtpEncryption": "tls",
    "smtpUsername": None,
    "saveSentCopy": True,
    "lastSyncAt": EPOCH_MS,
    "isSyncing": False,
    "isEnabled": True,
    "createdAt": EPOCH_MS,
    "updatedAt": EPOCH_MS,
}
ACCOUNT_LIST: dict[str, Any] = {"accounts": [ACCOUNT], "pagination": {"total": 1, "limit": 100, "offset": 0}}
DELETED: dict[str, Any] = {"message": "Account deleted successfully", "id": ACCOUNT_ID}

SYNC_STARTED: dict[str, Any] = {"syncId": SYNC_ID, "accountId": ACCOUNT_ID, "state": "queued", "created": True}
SYNC_STATUS: dict[str, Any] = {
    "accountId": ACCOUNT_ID,
    "isSyncing": False,
    "lastSyncAt": EPOCH_MS + 4000,
    "syncId": SYNC_ID,
    "state": "succeeded",
    "trigger": "api",
    "requestedAt": EPOCH_MS,
    "startedAt": EPOCH_MS + 100,
    "finishedAt": EPOCH_MS + 4000,
    "counts": {
        "foldersSynced": 5,
        "foldersFailed": 1,
        "messagesAdded": 120,
        "messagesUpdated": 3,
        "messagesRemoved": 1,
    },
    "progress": {
        "foldersDone": 6,
        "foldersTotal": 6,
        "currentFolder": None,
        "folderMessagesFetched": 0,
        "folderMessagesExpected": 0,
        "messagesFetched": 120,
        "percent": 100.0,
    },
    "lastError": None,
    "folderErrors": [
        {
            "folderId": "5e6f7a8b-9c0d-4e1f-8a2b-3c4d5e6f7a8b",
            "name": "Archive/2019",
            "kind": "MailboxError",
            "message": "IMAP server refused SELECT of 'Archive/2019': [NOPERM] Permission denied",
            "at": EPOCH_MS + 2000,
        }
    ],
}
CONNECTION_TEST: dict[str, Any] = {
    "success": False,
    "protocol": "imap",
    "folderCount": None,
    "messageCount": None,
    "error": "[AUTHENTICATIONFAILED] Authentication failed.",
    "errorKind": "AuthenticationFailed",
    "durationMs": 182,
}

FOLDER_LIST: dict[str, Any] = {
    "folders": [
        {
            "id": FOLDER_ID,
            "accountId": ACCOUNT_ID,
            "name": "INBOX",
            "delimiter": "/",
            "role": "inbox",
            "attributes": ["\\HasNoChildren"],
            "totalCount": 120,
            "unreadCount": 4,
            "isSelectable": True,
            "lastSyncedAt": EPOCH_MS,
            "syncError": None,
        }
    ],
    "pagination": {"total": 1, "limit": 100, "offset": 0},
    "state": "42",
}
_ALICE = {"name": "Alice", "email": "alice@example.com"}
_BOB = {"name": "Bob", "email": "bob@company.example"}
MESSAGE_SUMMARY: dict[str, Any] = {
    "id": MESSAGE_ID,
    "accountId": ACCOUNT_ID,
    "folderId": FOLDER_ID,
    "uid": 4127,
    "messageId": "q1@example.com",
    "threadId": None,
    "subject": "Quarterly numbers",
    "from": _ALICE,
    "to": [_BOB],
    "cc": [],
    "sentAt": EPOCH_MS,
    "receivedAt": EPOCH_MS + 2000,
    "preview": "Here are the numbers for the quarter.",
    "flags": ["\\Seen"],
    "isRead": True,
    "isFlagged": False,
    "isAnswered": False,
    "isDraft": False,
    "hasAttachments": True,
    "size": 48213,
    "pendingChanges": False,
    "lastError": None,
}
MESSAGE_LIST: dict[str, Any] = {
    "messages": [MESSAGE_SUMMARY],
    "pagination": {"total": 1, "limit": 50, "offset": 0, "nextCursor": None},
    "state": "42",
}
ATTACHMENT_ID = "e5f6a7b8-c9d0-4e1f-8a2b-3c4d5e6f7a80"
ATTACHMENT: dict[str, Any] = {
    "id": ATTACHMENT_ID,
    "messageId": MESSAGE_ID,
    "filename": "numbers.pdf",
    "mimeType": "application/pdf",
    "size": 40960,
    "uploadedAt": EPOCH_MS,
    "contentHash": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "url": f"/api/v1/attachments/{ATTACHMENT_ID}/download",
    "virusScanStatus": "clean",
    "contentId": None,
}
ATTACHMENT_LIST: dict[str, Any] = {"data": [ATTACHMENT], "pagination": {"total": 1, "offset": 0, "limit": 50}}
ATTACHMENT_METADATA: dict[str, Any] = {
    **ATTACHMENT,
    "contentEncoding": "base64",
    "disposition": "attachment",
    "virusName": None,
}
ATTACHMENT_UPLOADED: dict[str, Any] = {
    **ATTACHMENT,
    "virusScanStatus": "pending",
    "contentHash": ATTACHMENT["contentHash"],
}
ATTACHMENT_DELETED: dict[str, Any] = {"success": True, "message": "Attachment deleted"}
MESSAGE: dict[str, Any] = {
    **MESSAGE_SUMMARY,
    "folderName": "INBOX",
    "bcc": [],
    "replyTo": [],
    "sender": None,
    "inReplyTo": None,
    "references": [],
    "textBody": "Here are the numbers for the quarter.\n",
    "htmlBody": None,
    "hasRemoteImages": False,
    "attachments": [
        {
            "id": ATTACHMENT_ID,
            "filename": "numbers.pdf",
            "mimeType": "application/pdf",
            "size": 40960,
            "contentId": None,
            "disposition": "attachment",
            "contentHash": None,
            "partId": "2",
            "url": f"/api/v1/attachments/{ATTACHMENT_ID}/download",
            "virusScanStatus": "clean",
        }
    ],
    "defects": [],
    "rawUrl": f"/api/v1/messages/{MESSAGE_ID}/raw",
}
RAW_MESSAGE = (
    "From: Alice <alice@example.com>\r\nTo: Bob <bob@company.example>\r\nSubject: Quarterly numbers\r\n"
    "Message-ID: <q1@example.com>\r\nDate: Wed, 24 Jan 2024 12:06:40 +0000\r\n\r\n"
    "Here are the numbers for the quarter.\r\n"
)
HEALTH: dict[str, Any] = {"status": "healthy", "service": "email_service", "version": "0.1.0", "database": "ok"}
READY: dict[str, Any] = {
    "status": "ready",
    "checks": {"database": "ok", "migrations": "ok", "redis": "ok", "broker": "ok"},
}
NOT_READY: dict[str, Any] = {
    "status": "not ready",
    "checks": {"database": "ok", "migrations": "ok", "redis": "ok", "broker": "unavailable"},
    "error": "Service unavailable",
    "message": "Not ready: broker unavailable",
}
METRICS = (
    "# HELP email_service_http_requests_total HTTP requests by route template and status\n"
    "# TYPE email_service_http_requests_total counter\n"
    'email_service_http_requests_total{method="GET",route="/api/v1/accounts",status="200"} 42.0\n'
)
TOKEN_REQUEST: dict[str, Any] = {"tenantId": TENANT_ID, "userId": USER_ID, "role": "user", "expiresInHours": 24}
TOKEN: dict[str, Any] = {
    "token": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJyb2xlIjoidXNlciJ9.c2lnbmF0dXJl",
    "tokenType": "Bearer",
    "expiresIn": 86400,
}

MESSAGE_UPDATE: dict[str, Any] = {"isRead": True, "keywords": {"add": ["$Important"], "remove": []}}
MESSAGE_UPDATED: dict[str, Any] = {
    **MESSAGE,
    "flags": ["$Important", "\\Seen"],
    "isRead": True,
    "pendingChanges": True,
}
MESSAGE_DELETED: dict[str, Any] = {
    "message": "Message moved to Trash",
    "id": MESSAGE_ID,
    "permanent": False,
    "folderId": "9d2e5f3b-6c4e-4d8f-8a1b-2e3f4a5b6c7d",
    "pendingChanges": True,
}
BATCH: dict[str, Any] = {"messageIds": [MESSAGE_ID, "0b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e"], "isRead": True}
BATCH_RESULT: dict[str, Any] = {
    "updatedCount": 1,
    "failedCount": 1,
    "failed": [
        {
            "id": "0b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e",
            "error": "Not found",
            "message": "Message not found in this account",
        }
    ],
}
FOLDER_CREATE: dict[str, Any] = {"name": "Projekte 2026", "parentId": None}
FOLDER_UPDATE: dict[str, Any] = {"name": "Archiv 2025"}
FOLDER: dict[str, Any] = {
    **FOLDER_LIST["folders"][0],
    "id": "7b0e3d1f-4a2c-4b6d-8e9f-0a1b2c3d4e5f",
    "name": "Projekte 2026",
    "role": "custom",
    "attributes": [],
    "totalCount": 0,
    "unreadCount": 0,
    "lastSyncedAt": None,
    "parentId": None,
    "pendingChanges": True,
}
FOLDER_DELETED: dict[str, Any] = {"message": "Folder deleted", "id": FOLDER["id"]}
ACTION_LIST: dict[str, Any] = {
    "actions": [
        {
            "id": "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f",
            "accountId": ACCOUNT_ID,
            "seq": 42,
            "kind": "flags",
            "state": "failed",
            "messageId": MESSAGE_ID,
            "folderId": FOLDER_ID,
            "targetFolderId": None,
            "mailbox": "INBOX",
            "targetMailbox": None,
            "details": {"add": ["\\Flagged"], "remove": []},
            "attempts": 1,
            "error": {
                "kind": "MessageGone",
                "message": "The message is no longer in INBOX on the server (expunged or moved by another client)",
            },
            "createdAt": EPOCH_MS,
            "updatedAt": EPOCH_MS + 900,
            "appliedAt": None,
        }
    ],
    "pagination": {"total": 1, "limit": 100, "offset": 0},
}

# --- compose and send (issue 9) ---------------------------------------------------------------------------------
OUTBOX_ID = "f6a7b8c9-d0e1-4f2a-8b3c-4d5e6f7a8b90"
DRAFT_CREATE: dict[str, Any] = {
    "to": [{"name": "Bob", "email": "bob@company.example"}],
    "cc": [],
    "bcc": [{"email": "archive@company.example"}],
    "subject": "Quarterly report",
    "textBody": "Hi Bob,\n\nthe report is attached.\n",
    "attachments": [{"filename": "report.txt", "contentType": "text/plain", "data": "UTFSZXBvcnQK"}],
}
SEND_DRAFT: dict[str, Any] = {"messageId": MESSAGE_ID}
SEND_INLINE: dict[str, Any] = {**DRAFT_CREATE, "sendAt": None}
SEND_ACCEPTED: dict[str, Any] = {"outboxId": OUTBOX_ID, "status": "queued", "sendAt": EPOCH_MS + 5000}
OUTBOX_ITEM: dict[str, Any] = {
    "id": OUTBOX_ID,
    "accountId": ACCOUNT_ID,
    "status": "sent",
    "attempts": 1,
    "sendAt": EPOCH_MS + 5000,
    "nextAttemptAt": None,
    "messageId": "<170603320000.1234.5678@company.example>",
    "subject": "Quarterly report",
    "recipients": ["bob@company.example", "archive@company.example"],
    "delivery": {
        "status": "success",
        "messageId": "<170603320000.1234.5678@company.example>",
        "smtpCode": 250,
        "smtpError": None,
        "recipientFailures": {},
        "sentAt": EPOCH_MS + 5400,
        "retryCount": 0,
        "isRetryable": False,
    },
    "error": None,
    "draftId": MESSAGE_ID,
    "sentCopyId": "a7b8c9d0-e1f2-4a3b-8c4d-5e6f7a8b9c01",
    "createdAt": EPOCH_MS,
    "updatedAt": EPOCH_MS + 5400,
    "finishedAt": EPOCH_MS + 5400,
}
OUTBOX_LIST: dict[str, Any] = {"items": [OUTBOX_ITEM], "pagination": {"total": 1, "limit": 100, "offset": 0}}
OUTBOX_CANCELLED: dict[str, Any] = {
    **OUTBOX_ITEM,
    "status": "cancelled",
    "attempts": 0,
    "delivery": None,
    "sentCopyId": None,
    "updatedAt": EPOCH_MS + 2000,
    "finishedAt": EPOCH_MS + 2000,
}
CHANGES: dict[str, Any] = {
    "oldState": "42",
    "newState": "45",
    "hasMoreChanges": False,
    "messages": {"created": [MESSAGE_ID], "updated": [], "destroyed": []},
    "folders": {"created": [], "updated": [FOLDER_ID], "destroyed": []},
}
