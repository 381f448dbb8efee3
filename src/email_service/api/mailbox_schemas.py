"""Schemas of the sync, folder and message endpoints (issue 2 sections 6-7)."""

from __future__ import annotations

from apiflask import Schema
from apiflask.fields import UUID, Boolean, Integer, List, Nested, String
from apiflask.validators import Range

from .fields import QuerySchema
from .schemas import PaginationOut, offset_field


class SyncStartedOut(Schema):
    """``POST /accounts/{id}/sync`` (202): the run that will (or already does) sync the account."""

    syncId = UUID()
    accountId = UUID()
    state = String(metadata={"description": "queued | running | succeeded | failed"})
    created = Boolean(metadata={"description": "false when an already queued/running sync is returned"})


class SyncErrorOut(Schema):
    """Why the last sync failed: error kind (e.g. AuthenticationFailed) and the server's message."""

    kind = String(allow_none=True)
    message = String()


class SyncCountsOut(Schema):
    """Counts of one run."""

    foldersSynced = Integer()
    messagesAdded = Integer()
    messagesUpdated = Integer()
    messagesRemoved = Integer()


class SyncStatusOut(Schema):
    """``GET /accounts/{id}/sync``: the account's flags and its latest run."""

    accountId = UUID()
    isSyncing = Boolean()
    lastSyncAt = Integer(allow_none=True)
    syncId = UUID(allow_none=True)
    state = String(allow_none=True, metadata={"description": "null before the first sync"})
    trigger = String(
        allow_none=True,
        metadata={"description": "what asked for the run: api, scheduler, cli or push (IMAP IDLE, new mail)"},
    )
    requestedAt = Integer(allow_none=True)
    startedAt = Integer(allow_none=True)
    finishedAt = Integer(allow_none=True)
    counts = Nested(SyncCountsOut, allow_none=True)
    lastError = Nested(SyncErrorOut, allow_none=True)


class ConnectionTestOut(Schema):
    """``POST /accounts/{id}/test``: did the login work, what was found, or the server's error."""

    success = Boolean()
    protocol = String()
    folderCount = Integer(allow_none=True)
    messageCount = Integer(allow_none=True)
    error = String(allow_none=True)
    errorKind = String(allow_none=True)
    durationMs = Integer()


class FolderOut(Schema):
    """One mailbox with its role and counts."""

    id = UUID()
    accountId = UUID(attribute="account_id")
    name = String()
    delimiter = String(allow_none=True)
    role = String(attribute="type", metadata={"description": "inbox|sent|drafts|trash|spam|archive|custom"})
    attributes = List(String())
    totalCount = Integer(attribute="total_count")
    unreadCount = Integer(attribute="unread_count")
    isSelectable = Boolean(attribute="is_selectable")
    lastSyncedAt = Integer(attribute="last_synced_at", allow_none=True)


class FolderListOut(Schema):
    """``{"folders": [...], "pagination": {...}}``."""

    folders = List(Nested(FolderOut))
    pagination = Nested(PaginationOut)


class AddressOut(Schema):
    """A mailbox address: display ``name`` (decoded) and ``email`` (the addr-spec)."""

    name = String()
    email = String()


class MessageSummaryOut(Schema):
    """A message in a list: headers, flags and a text preview."""

    id = UUID()
    accountId = UUID()
    folderId = UUID()
    uid = Integer(allow_none=True)
    messageId = String(allow_none=True, metadata={"description": "RFC 5322 Message-ID without angle brackets"})
    threadId = UUID(allow_none=True)
    subject = String()
    from_ = Nested(AddressOut, data_key="from", allow_none=True)
    to = List(Nested(AddressOut))
    cc = List(Nested(AddressOut))
    sentAt = Integer(allow_none=True, metadata={"description": "Date header, epoch ms"})
    receivedAt = Integer(allow_none=True, metadata={"description": "IMAP INTERNALDATE, epoch ms"})
    preview = String()
    flags = List(String())
    isRead = Boolean()
    isFlagged = Boolean()
    isAnswered = Boolean()
    isDraft = Boolean()
    hasAttachments = Boolean()
    size = Integer()


class AttachmentSummaryOut(Schema):
    """Attachment metadata as listed with a message."""

    id = UUID()
    filename = String(allow_none=True)
    mimeType = String()
    size = Integer()
    contentId = String(allow_none=True)
    disposition = String()
    contentHash = String(allow_none=True)
    partId = String(allow_none=True)


class MessageOut(MessageSummaryOut):
    """A whole message: all addresses, threading headers, bodies, attachments and parser defects."""

    folderName = String()
    bcc = List(Nested(AddressOut))
    replyTo = List(Nested(AddressOut))
    sender = Nested(AddressOut, allow_none=True)
    inReplyTo = String(allow_none=True)
    references = List(String())
    textBody = String(allow_none=True)
    htmlBody = String(allow_none=True)
    attachments = List(Nested(AttachmentSummaryOut))
    defects = List(String())
    rawUrl = String()


class MessageListOut(Schema):
    """``{"messages": [...], "pagination": {...}}``, newest first."""

    messages = List(Nested(MessageSummaryOut))
    pagination = Nested(PaginationOut)


class MessageListQuery(QuerySchema):
    """``folderId`` (optional), ``limit`` 1-100 (default 50), ``offset`` 0 to 2**31-1."""

    folderId = UUID(load_default=None, allow_none=True)
    limit = Integer(load_default=50, validate=Range(1, 100, error="limit must be between 1 and 100"))
    offset = offset_field()
