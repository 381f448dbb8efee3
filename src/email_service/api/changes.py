"""``GET /accounts/{id}/changes``: what changed since a state (issue 12; JMAP RFC 8620 section 5.2)."""

from __future__ import annotations

import re
import uuid
from typing import Any

from apiflask import APIBlueprint, Schema
from apiflask.fields import UUID, Boolean, Integer, List, Nested, String
from apiflask.validators import Length, Range

from email_service.services import changes as service

from . import examples
from .auth import current_principal
from .common import AUTH_ERRORS
from .context import service_context
from .fields import FullMatch, QuerySchema, Text
from .gate import guard

bp = guard(
    APIBlueprint(
        "changes",
        __name__,
        tag={"name": "Changes", "description": "State strings, /changes, Server-Sent Events and webhooks"},
    )
)


class ChangesQuery(QuerySchema):
    """``since`` (a state from a list answer or an earlier ``/changes``), ``maxChanges`` 1-5000 (default 500)."""

    since = Text(
        required=True,
        validate=[Length(1, 18), FullMatch(re.compile(r"[0-9]+"), error="since must be a state given by this service")],
        metadata={"description": "state the client has (the `state` of a list answer, or a `newState`)"},
    )
    maxChanges = Integer(
        load_default=None,
        validate=Range(1, service.MAX_MAX_CHANGES, error=f"maxChanges must be between 1 and {service.MAX_MAX_CHANGES}"),
        metadata={"description": f"most ids in the answer (default {service.DEFAULT_MAX_CHANGES})"},
    )


class ChangeSetOut(Schema):
    """Ids created, updated and destroyed since the old state."""

    created = List(UUID())
    updated = List(UUID())
    destroyed = List(UUID())


class ChangesOut(Schema):
    """``{oldState, newState, hasMoreChanges, messages, folders}``."""

    oldState = String()
    newState = String()
    hasMoreChanges = Boolean(metadata={"description": "true: ask again with since=newState"})
    messages = Nested(ChangeSetOut)
    folders = Nested(ChangeSetOut)


def _set(changes: service.ChangeSet) -> dict[str, list[uuid.UUID]]:
    return {"created": changes.created, "updated": changes.updated, "destroyed": changes.destroyed}


@bp.get("/accounts/<uuid:account_id>/changes")
@bp.input(ChangesQuery, location="query")
@bp.output(ChangesOut, example=examples.CHANGES)
@bp.doc(
    summary="Message and folder ids changed since a state",
    description=(
        "JMAP-style (RFC 8620 section 5.2): ids created, updated (flags, keywords, a move to another folder, a "
        "folder's counts or name) and destroyed since `since`; an id created and destroyed in between is left out, "
        "one created and updated is only in `created`. With `hasMoreChanges` ask again from `newState`. 410 "
        "`cannotCalculateChanges` when the state is older than the pruned change log: reload the lists."
    ),
    operation_id="getChanges",
    responses=[*AUTH_ERRORS, 410],
)
def get_changes(account_id: uuid.UUID, query_data: dict[str, Any]) -> dict[str, Any]:
    result = service.changes_since(
        service_context(),
        principal=current_principal(),
        account_id=account_id,
        since=query_data["since"],
        max_changes=query_data["maxChanges"],
    )
    return {
        "oldState": result.old_state,
        "newState": result.new_state,
        "hasMoreChanges": result.has_more_changes,
        "messages": _set(result.sets["message"]),
        "folders": _set(result.sets["folder"]),
    }
