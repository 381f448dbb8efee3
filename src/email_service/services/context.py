"""What every use case needs, bundled once per process: settings, database, cipher, blob store, job queue."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Protocol

from email_service.config import Settings
from email_service.db import Database
from email_service.security.credentials import CredentialCipher
from email_service.security.tokens import TokenConfig
from email_service.storage.blobs import BlobStore, FilesystemBlobStore


class JobQueue(Protocol):
    """Where sync jobs go: the in-process runner (embedded default) or Celery (production)."""

    def enqueue_sync(self, *, tenant_id: uuid.UUID, account_id: uuid.UUID, run_id: uuid.UUID) -> None:
        """Queue one sync run of one account; returns at once."""
        ...


class NullJobQueue:
    """A queue that runs nothing: for the CLI and tests that drive the sync engine themselves."""

    def __init__(self) -> None:
        self.queued: list[tuple[uuid.UUID, uuid.UUID, uuid.UUID]] = []

    def enqueue_sync(self, *, tenant_id: uuid.UUID, account_id: uuid.UUID, run_id: uuid.UUID) -> None:
        """Record the request only."""
        self.queued.append((tenant_id, account_id, run_id))


@dataclass
class ServiceContext:
    """Dependencies of the services; built by :func:`build_context` from :class:`Settings`."""

    settings: Settings
    db: Database
    cipher: CredentialCipher
    blobs: BlobStore
    tokens: TokenConfig
    jobs: JobQueue = field(default_factory=NullJobQueue)


def build_context(settings: Settings, *, jobs: JobQueue | None = None) -> ServiceContext:
    """Create the database, cipher, blob store and token config described by ``settings``."""
    return ServiceContext(
        settings=settings,
        db=Database(settings.database_url),
        cipher=CredentialCipher(settings.credential_keys),
        blobs=FilesystemBlobStore(settings.blob_storage_path),
        tokens=TokenConfig(
            secret=settings.jwt_secret_key,
            algorithm=settings.jwt_algorithm,
            expiration_hours=settings.jwt_expiration_hours,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
        ),
        jobs=jobs or NullJobQueue(),
    )
