"""Schemas of the sync, folder and message endpoints (issue 2 sections 6-7)."""

from __future__ import annotations

from apiflask import Schema
from apiflask.fields import UUID, Boolean, Float, Integer, List, Nested, String
from apiflask.validators import Length, OneOf, Range, Regexp

from email_service.services.message_list import SORT_FIELDS, SORT_ORDERS

from .fields import Boolean as StrictBoolean
from .fields import QuerySchema, Text
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
    """Counts of one run (kept current while it runs)."""

    foldersSynced = Integer(metadata={"description": "folders synced without error"})
    foldersFailed = Integer(metadata={"description": "folders whose sync failed; see folderErrors"})
    messagesAdded = Integer()
    messagesUpdated = Integer()
    messagesRemoved = Integer()


class SyncProgressOut(Schema):
    """Where a run is: written per stored batch of messages and about once a second otherwise."""

    foldersDone = Integer(metadata={"description": "folders finished (synced, failed or found gone)"})
    foldersTotal = Integer(metadata={"description": "folders this run syncs (0 until the folder list is read)"})
    currentFolder = String(allow_none=True, metadata={"description": "folder being synced, null between folders"})
    folderMessagesFetched = Integer(metadata={"description": "new messages of the current folder stored so far"})
    folderMessagesExpected = Integer(metadata={"description": "new messages the current folder has to fetch"})
    messagesFetched = Integer(metadata={"description": "new messages stored by this run so far"})
    percent = Float(
        metadata={"description": "0-100: finished folders plus the fetched share of the current one, per folder"}
    )


class FolderSyncErrorOut(Schema):
    """Why the folder's last sync failed (e.g. the server refused to open it); cleared by its next good sync."""

    kind = String(metadata={"description": "error kind, e.g. MailboxError"})
    message = String(metadata={"description": "what happened, with the server's words"})
    at = Integer(allow_none=True, metadata={"description": "when, epoch ms"})


class FolderErrorOut(FolderSyncErrorOut):
    """A folder whose last sync failed."""

    folderId = UUID()
    name = String()


class SyncStatusOut(Schema):
    """``GET /accounts/{id}/sync``: the account's flags and its latest run."""

    accountId = UUID()
    isSyncing = Boolean()
    lastSyncAt = Integer(allow_none=True)
    syncId = UUID(allow_none=True)
    state = String(allow_none=True, metadata={"description": "null before the first sync"})
    trigger = String(
        allow_none=True,
        metadata={
            "description": "what asked for the run: api, scheduler, cli, push (IMAP IDLE, new mail) or syncback "
            "(a write-back the server refused, to show its state again)"
        },
    )
    requestedAt = Integer(allow_none=True)
    startedAt = Integer(allow_none=True)
    finishedAt = Integer(allow_none=True)
    counts = Nested(SyncCountsOut, allow_none=True)
    progress = Nested(SyncProgressOut, allow_none=True, metadata={"description": "null before the first sync"})
    lastError = Nested(
        SyncErrorOut,
        allow_none=True,
        metadata={"description": "why the run failed (it could not go through the account); null otherwise"},
    )
    folderErrors = List(
        Nested(FolderErrorOut),
        metadata={
            "description": "folders whose last sync failed; a run with such folders still succeeds for the others"
        },
    )


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
    syncError = Nested(FolderSyncErrorOut, attribute="sync_error_detail", allow_none=True)


class FolderListOut(Schema):
    """``{"folders": [...], "pagination": {...}}``."""

    folders = List(Nested(FolderOut))
    pagination = Nested(PaginationOut)
    state = String(
        metadata={"description": "the account's state before this list was read (GET /accounts/{id}/changes?since=)"}
    )


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
    pendingChanges = Boolean(
        metadata={"description": "true while a change of this message waits to be written back to the server"}
    )
    lastError = String(
        allow_none=True, metadata={"description": "the server's words when writing a change back failed"}
    )


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
    url = String(metadata={"description": "Download URL"})
    virusScanStatus = String(metadata={"description": "pending | clean | infected | error | skipped"})


class MessageOut(MessageSummaryOut):
    """A whole message: all addresses, threading headers, bodies, attachments and parser defects."""

    folderName = String()
    bcc = List(Nested(AddressOut))
    replyTo = List(Nested(AddressOut))
    sender = Nested(AddressOut, allow_none=True)
    inReplyTo = String(allow_none=True)
    references = List(String())
    textBody = String(allow_none=True)
    htmlBody = String(
        allow_none=True,
        metadata={
            "description": "Sanitised HTML: no scripts, handlers, forms, frames or remote CSS; cid: images point at "
            "their download URL; remote images replaced unless remoteImages=true. The original is in rawUrl."
        },
    )
    hasRemoteImages = Boolean(metadata={"description": "The HTML body references remote images"})
    attachments = List(Nested(AttachmentSummaryOut))
    defects = List(String())
    rawUrl = String()


class MessagePaginationOut(PaginationOut):
    """Page bounds of the message list, with the cursor of the next page."""

    total = Integer(
        allow_none=True,
        metadata={
            "description": "messages matching: the folder's kept counts without filters or with isRead only; null "
            "with other filters (not counted)"
        },
    )
    nextCursor = String(
        allow_none=True, metadata={"description": "pass as `cursor` for the next page; null on the last page"}
    )


class MessageListOut(Schema):
    """``{"messages": [...], "pagination": {...}}``, newest first unless sorted otherwise."""

    messages = List(Nested(MessageSummaryOut))
    pagination = Nested(MessagePaginationOut)
    state = String(
        metadata={"description": "the account's state before this list was read (GET /accounts/{id}/changes?since=)"}
    )


class MessageQuery(QuerySchema):
    """``remoteImages=true`` keeps remote images in ``htmlBody`` (blocked by default: tracking pixels)."""

    remoteImages = StrictBoolean(load_default=False, metadata={"description": "Load remote images in htmlBody"})


class MessageListQuery(QuerySchema):
    """``folderId`` (optional), filters, ``sortBy``/``sortOrder``, ``limit`` 1-100 (default 50), ``offset`` 0 to
    2**31-1 or an opaque ``cursor`` (issue 11)."""

    folderId = UUID(load_default=None, allow_none=True)
    limit = Integer(load_default=50, validate=Range(1, 100, error="limit must be between 1 and 100"))
    offset = offset_field()
    isRead = StrictBoolean(load_default=None, metadata={"description": "only read (true) or unread (false)"})
    isFlagged = StrictBoolean(load_default=None, metadata={"description": "only flagged (true) or not (false)"})
    hasAttachments = StrictBoolean(load_default=None, metadata={"description": "only with (true) or without"})
    from_ = Text(
        data_key="from",
        load_default=None,
        validate=Length(1, 254),
        metadata={"description": "part of the From address or name (case and accents ignored)"},
    )
    to = Text(
        load_default=None,
        validate=Length(1, 254),
        metadata={"description": "part of a To address or name (case and accents ignored)"},
    )
    dateFrom = Integer(
        load_default=None, validate=Range(0, 2**53), metadata={"description": "receivedAt >= this, epoch ms"}
    )
    dateTo = Integer(
        load_default=None, validate=Range(0, 2**53), metadata={"description": "receivedAt < this, epoch ms"}
    )
    sortBy = Text(
        load_default="receivedAt",
        validate=OneOf(SORT_FIELDS, error="sortBy must be one of " + ", ".join(SORT_FIELDS)),
        metadata={"description": "receivedAt | sentAt | subject (first 100 characters) | from (address) | size"},
    )
    sortOrder = Text(load_default="desc", validate=OneOf(SORT_ORDERS, error="sortOrder must be asc or desc"))
    cursor = Text(
        load_default=None,
        validate=[Length(1, 2000), Regexp(r"^[A-Za-z0-9_-]+$", error="cursor is not valid")],
        metadata={"description": "nextCursor of the previous page (same sortBy and sortOrder; not with offset)"},
    )
