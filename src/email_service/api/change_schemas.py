"""Schemas of the endpoints that act on mail (issue 8): message changes, batches, folders, the action log."""

from __future__ import annotations

from typing import Any

from apiflask import Schema
from apiflask.fields import UUID, Dict, Integer, List, Nested, String
from apiflask.validators import Length, OneOf
from marshmallow import ValidationError, validates_schema

from email_service.models import ACTION_KINDS, ACTION_STATES
from email_service.protocols.imap_syntax import KEYWORD_PATTERN
from email_service.services.folders import NAME_PATTERN, NAME_RULE
from email_service.services.message_changes import MAX_BATCH

from .fields import Boolean, FullMatch, QuerySchema, Text
from .mailbox_schemas import FolderOut
from .schemas import PaginationOut, PaginationQuery

#: Most keywords one request may add (and remove).
MAX_KEYWORDS = 50
_KEYWORD_ERROR = 'keywords must be IMAP keywords: printable ASCII without space or ( ) {{ % * " \\ ]'


def _keywords() -> List[Any]:
    keyword = Text(validate=[Length(1, 100), FullMatch(KEYWORD_PATTERN, error=_KEYWORD_ERROR)])
    return List(keyword, load_default=list, validate=Length(max=MAX_KEYWORDS))


class KeywordChangesIn(Schema):
    """Keywords (RFC 3501 flag-keyword atoms, e.g. ``$Important``) to clear, then to set (compared without regard
    to case): a keyword in both lists ends up set."""

    add = _keywords()
    remove = _keywords()


class MessageUpdateIn(Schema):
    """``PATCH``/``PUT /messages/{id}``: any of the flags, keywords, and ``folderId`` (move); at least one."""

    isRead = Boolean(metadata={"description": "\\Seen"})
    isFlagged = Boolean(metadata={"description": "\\Flagged"})
    isAnswered = Boolean(metadata={"description": "\\Answered"})
    keywords = Nested(KeywordChangesIn)
    folderId = UUID(metadata={"description": "Move the message to this folder of the same account"})

    @validates_schema
    def _not_empty(self, data: dict[str, Any], **_: Any) -> None:
        if not data:
            raise ValidationError("Give at least one of isRead, isFlagged, isAnswered, keywords, folderId")


class BatchIn(Schema):
    """``POST /accounts/{id}/messages/batch``: up to 1,000 message ids and either the changes of a PATCH or
    ``delete`` (to Trash; ``permanent`` expunges)."""

    messageIds = List(
        UUID(),
        required=True,
        validate=Length(1, MAX_BATCH, error=f"messageIds must list 1 to {MAX_BATCH} ids"),
        error_messages={"required": "messageIds is required"},
    )
    isRead = Boolean()
    isFlagged = Boolean()
    isAnswered = Boolean()
    keywords = Nested(KeywordChangesIn)
    folderId = UUID()
    delete = Boolean(metadata={"description": "Move to Trash (expunge with permanent, or when in Trash)"})
    permanent = Boolean(metadata={"description": "With delete: expunge instead of moving to Trash"})

    @validates_schema
    def _one_kind(self, data: dict[str, Any], **_: Any) -> None:
        changes = set(data) - {"messageIds", "delete", "permanent"}
        if data.get("delete"):
            if changes:
                raise ValidationError("delete cannot be combined with other changes")
        elif not changes:
            raise ValidationError("Give changes (isRead, isFlagged, isAnswered, keywords, folderId) or delete: true")
        if "permanent" in data and not data.get("delete"):
            raise ValidationError("permanent is only allowed with delete: true")


class BatchFailureOut(Schema):
    """One message of a batch that was not changed."""

    id = UUID()
    error = String()
    message = String()


class BatchOut(Schema):
    """How many messages were changed, and which were not (unknown, or not of this account)."""

    updatedCount = Integer()
    failedCount = Integer()
    failed = List(Nested(BatchFailureOut))


class DeleteQuery(QuerySchema):
    """``permanent=true`` expunges instead of moving to Trash."""

    permanent = Boolean(load_default=False)


class MessageDeletedOut(Schema):
    """``DELETE /messages/{id}``: moved to Trash (``folderId``) or expunged (``permanent``)."""

    message = String()
    id = UUID()
    permanent = Boolean()
    folderId = UUID(allow_none=True, metadata={"description": "The Trash folder, when moved there"})
    pendingChanges = Boolean()


_FOLDER_NAME = FullMatch(NAME_PATTERN, error=f"name {NAME_RULE}")


class FolderCreateIn(Schema):
    """``POST /accounts/{id}/folders``: one hierarchy level's ``name`` (Unicode), under ``parentId`` if given."""

    name = Text(required=True, validate=_FOLDER_NAME, error_messages={"required": "name is required"})
    parentId = UUID(allow_none=True)


class FolderUpdateIn(Schema):
    """``PATCH /folders/{id}``: a new ``name`` and/or ``parentId`` (``null``: the top level)."""

    name = Text(validate=_FOLDER_NAME)
    parentId = UUID(allow_none=True)

    @validates_schema
    def _not_empty(self, data: dict[str, Any], **_: Any) -> None:
        if not data:
            raise ValidationError("Give name and/or parentId")


class FolderDetailOut(FolderOut):
    """One folder with its parent and whether a change of it still waits for write-back."""

    parentId = UUID(allow_none=True)
    pendingChanges = Boolean()


class FolderDeletedOut(Schema):
    """``{"message": "Folder deleted", "id": ...}``."""

    message = String()
    id = UUID()


class ActionErrorOut(Schema):
    """Why an action failed (or why a pending one is waiting): error kind and the server's words."""

    kind = String(allow_none=True)
    message = String()


class ActionOut(Schema):
    """One change written (or to be written) back to the server."""

    id = UUID()
    accountId = UUID()
    seq = Integer(metadata={"description": "Order of the account's actions"})
    kind = String(metadata={"description": " | ".join(ACTION_KINDS)})
    state = String(metadata={"description": " | ".join(ACTION_STATES)})
    messageId = UUID(allow_none=True)
    folderId = UUID(allow_none=True)
    targetFolderId = UUID(allow_none=True)
    mailbox = String(allow_none=True, metadata={"description": "Server-side name of the mailbox acted on"})
    targetMailbox = String(allow_none=True)
    details = Dict()
    attempts = Integer()
    error = Nested(ActionErrorOut, allow_none=True)
    createdAt = Integer()
    updatedAt = Integer()
    appliedAt = Integer(allow_none=True)


class ActionListQuery(PaginationQuery):
    """``state`` (pending | applied | failed, optional), ``limit``, ``offset``."""

    state = Text(load_default=None, validate=OneOf(ACTION_STATES, error="state must be pending, applied or failed"))


class ActionListOut(Schema):
    """``{"actions": [...], "pagination": {...}}``, newest first."""

    actions = List(Nested(ActionOut))
    pagination = Nested(PaginationOut)
