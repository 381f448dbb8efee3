"""Helpers of the IDLE push tests: supervisors scoped to a test's tenant, a message factory, bounded waits, and a
blob store that can hold a sync in the middle of a folder."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient

from email_service.services.context import ServiceContext
from email_service.storage.blobs import BlobStore
from email_service.sync.push_supervisor import PushSupervisor
from tests.support.services import wait_until


def new_message(subject: str) -> bytes:
    """A small RFC 5322 message with a unique Message-ID."""
    return (
        f"From: Alice <alice@example.com>\r\nTo: Bob <bob@example.com>\r\nSubject: {subject}\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@example.com>\r\nDate: Sun, 01 Mar 2026 12:00:00 +0000\r\n\r\n"
        f"{subject} body\r\n"
    ).encode()


def listed_subjects(client: FlaskClient, account_id: str, headers: dict[str, str]) -> set[str] | None:
    """Subjects ``GET /accounts/{id}/messages`` lists now (``None`` after a 429: the caller polls again later)."""
    response = client.get(f"/api/v1/accounts/{account_id}/messages?limit=100", headers=headers)
    if response.status_code == 429:
        time.sleep(float(response.headers.get("Retry-After", "1")))
        return None
    assert response.status_code == 200, response.get_json()
    return {message["subject"] for message in response.get_json()["messages"]}


def wait_for_subject(client: FlaskClient, account_id: str, headers: dict[str, str], subject: str) -> None:
    """Poll the message list (every 0.2 s, like a client) until ``subject`` is there; fail after 30 s."""

    def probe() -> bool:
        found = subject in (listed_subjects(client, account_id, headers) or set())
        if not found:
            time.sleep(0.15)
        return found

    wait_until(probe, what=f"message {subject!r} listed by the API")


@pytest.fixture
def start_push(ctx: ServiceContext) -> Iterator[Callable[..., PushSupervisor]]:
    """``start_push(tenant_id, context=ctx, start=True, **options)`` -> a running supervisor for that tenant only
    (4 s leases: a tick every second); every one is stopped after the test."""
    supervisors: list[PushSupervisor] = []

    def make(
        tenant_id: uuid.UUID, *, context: ServiceContext | None = None, start: bool = True, **options: Any
    ) -> PushSupervisor:
        options = {"max_connections": 10, "lease_seconds": 4.0, "renew_after": 300.0, **options}
        supervisor = PushSupervisor(context or ctx, tenant_ids=[tenant_id], **options)
        supervisors.append(supervisor)
        if start:
            supervisor.start()
        return supervisor

    yield make
    for supervisor in supervisors:
        supervisor.stop()


class GatedBlobStore:
    """A blob store that holds the thread storing a message containing ``marker`` until :meth:`release`: a sync
    run stopped in the middle of one folder, on purpose.  Everything else goes straight to ``inner``."""

    def __init__(self, inner: BlobStore, marker: bytes) -> None:
        self.inner = inner
        self.marker = marker
        self.entered = threading.Event()
        self._released = threading.Event()

    def release(self) -> None:
        self._released.set()

    def put(self, namespace: str, data: bytes, *, sha256: str | None = None) -> str:
        if self.marker in data:
            self.entered.set()
            self._released.wait(60)
        return self.inner.put(namespace, data, sha256=sha256)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
