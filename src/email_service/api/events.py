"""``GET /api/v1/events``: Server-Sent Events of the caller's accounts (issue 12; the events themselves are
described in :mod:`email_service.services.events`).

Server model: one open stream holds one HTTP thread of the serving process (waitress in the embedded default,
gunicorn gthread in production), blocked on a :class:`threading.Event` between wake-ups -- no CPU, a thread stack
and a database read per wake-up.  Threads, not gevent or a separate ASGI process, because everything under the view
(psycopg, SQLAlchemy's pool, redis-py, the auth and rate-limit middleware) is synchronous code that would need
monkey-patching or a second stack; a thread per stream holds a few hundred streams per process comfortably (the
bench measures 200).  ``email-service serve`` therefore gives each process ``EVENTS_MAX_STREAMS`` threads on top
of ``WEB_THREADS``, and a stream beyond ``EVENTS_MAX_STREAMS`` gets 503 with ``Retry-After``, so streams never
take the threads the JSON API needs.  In production any API process can serve any client: the change bus relays
commits from every process through Redis pub/sub.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

from apiflask import APIBlueprint
from flask import Response, current_app, jsonify, request

from email_service.errors import ServiceUnavailable
from email_service.services.context import ServiceContext
from email_service.services.events import EventReader, SharedReads, decode_cursor

from .auth import current_principal
from .common import AUTH_ERRORS
from .context import service_context
from .gate import guard

bp = guard(
    APIBlueprint(
        "events",
        __name__,
        tag={"name": "Changes", "description": "State strings, /changes, Server-Sent Events and webhooks"},
    )
)
_SLOTS_KEY = "email_service.event_slots"
_SHARED_KEY = "email_service.event_reads"
_LOCK = threading.Lock()
#: How long an EventSource waits before it reconnects after a dropped connection, ms (the ``retry:`` field).
RETRY_MS = 2000
#: ``Retry-After`` of a 503 when the process holds EVENTS_MAX_STREAMS streams, seconds.
RETRY_AFTER_SECONDS = 5
EVENTS_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "an endless text/event-stream: `state`, then `message`, `folder`, `sync`, `outbox` and "
        "`reset` events, a `: heartbeat` comment every EVENTS_HEARTBEAT_SECONDS",
        "content": {
            "text/event-stream": {
                "schema": {"type": "string"},
                "example": (
                    "retry: 2000\n\nid: 4f1c09e2d6a84b1f9f5c3a7e8b2d1c00:42\nevent: state\n"
                    'data: {"accounts":{"4f1c09e2-d6a8-4b1f-9f5c-3a7e8b2d1c00":"42"}}\n\n'
                    "id: 4f1c09e2d6a84b1f9f5c3a7e8b2d1c00:43\nevent: message\n"
                    'data: {"accountId":"4f1c09e2-d6a8-4b1f-9f5c-3a7e8b2d1c00","type":"message","oldState":"42",'
                    '"newState":"43","created":["9b2e4c1a-0f3d-4e5b-8a6c-7d8e9f0a1b2c"],"updated":[],"destroyed":[]}'
                    "\n\n: heartbeat\n\n"
                ),
            }
        },
    },
    **{
        code: {
            "description": "Error",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}},
        }
        for code in [*AUTH_ERRORS, 503]
    },
}


def _shared_reads() -> SharedReads:
    with _LOCK:
        shared: SharedReads | None = current_app.extensions.get(_SHARED_KEY)
        if shared is None:
            shared = current_app.extensions[_SHARED_KEY] = SharedReads()
        return shared


def _slots(ctx: ServiceContext) -> threading.BoundedSemaphore:
    with _LOCK:
        slots: threading.BoundedSemaphore | None = current_app.extensions.get(_SLOTS_KEY)
        if slots is None:
            slots = threading.BoundedSemaphore(ctx.settings.events_max_streams)
            current_app.extensions[_SLOTS_KEY] = slots
        return slots


@bp.get("/events")
@bp.doc(
    summary="Server-Sent Events of every change to the caller's accounts",
    description=(
        "`text/event-stream`. Each event's id is the new state of all of the caller's accounts; reconnect with "
        "`Last-Event-ID` to get exactly the events missed (nothing repeated). A `state` event opens every "
        "connection; `message`, `folder`, `sync` and `outbox` events carry `{accountId, type, oldState, newState, "
        "created, updated, destroyed}`; `reset` means the account's lists must be reloaded. A comment is sent "
        "every 15 s (EVENTS_HEARTBEAT_SECONDS). 503 with Retry-After when the process holds EVENTS_MAX_STREAMS "
        "streams. Try: `curl -N -H 'Authorization: Bearer ...' .../api/v1/events`."
    ),
    operation_id="streamEvents",
    responses=EVENTS_RESPONSES,
)
def stream_events() -> Response:
    ctx, principal = service_context(), current_principal()
    last = request.headers.get("Last-Event-ID")
    reader = EventReader(ctx, principal, decode_cursor(last) if last else None, _shared_reads())
    slots = _slots(ctx)
    if not slots.acquire(blocking=False):
        refusal = ServiceUnavailable("Too many open event streams on this server; reconnect later")
        return jsonify(refusal.to_body()), 503, {"Retry-After": str(RETRY_AFTER_SECONDS)}  # type: ignore[return-value]
    subscription = ctx.changes.subscribe(principal.tenant_id, principal.user_id)
    heartbeat = float(ctx.settings.events_heartbeat_seconds)
    closed = threading.Event()

    def close() -> None:  # from the generator's end or the server's close(), whichever comes first; once
        with _LOCK:
            if closed.is_set():
                return
            closed.set()
        subscription.close()
        slots.release()

    def generate() -> Iterator[bytes]:
        try:
            yield f"retry: {RETRY_MS}\n\n".encode()
            sent = time.monotonic()
            generation: int | None = None  # None: a read of its own (the first one, and after a heartbeat)
            while True:
                for event in reader.poll(generation):
                    yield event.encode()
                    sent = time.monotonic()
                if subscription.wait(max(0.0, sent + heartbeat - time.monotonic())):
                    generation = ctx.changes.generation(principal.tenant_id, principal.user_id)
                    continue
                generation = None
                if time.monotonic() >= sent + heartbeat:
                    yield b": heartbeat\n\n"
                    sent = time.monotonic()
        finally:
            close()

    response = Response(generate(), mimetype="text/event-stream")
    response.call_on_close(close)
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
    return response
