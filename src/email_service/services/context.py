"""What every use case needs, bundled once per process: settings, database, cipher, blob store, job queue
(:mod:`email_service.services.jobs`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from email_service.config import Settings
from email_service.db import Database
from email_service.security.credentials import CredentialCipher
from email_service.security.tokens import TokenConfig
from email_service.services.jobs import JobQueue, RecordingJobQueue
from email_service.storage.blobs import BlobStore, FilesystemBlobStore


@dataclass
class ServiceContext:
    """Dependencies of the services; built by :func:`build_context` from :class:`Settings`."""

    settings: Settings
    db: Database
    cipher: CredentialCipher
    blobs: BlobStore
    tokens: TokenConfig
    jobs: JobQueue = field(default_factory=RecordingJobQueue)


def build_context(settings: Settings, *, jobs: JobQueue | None = None) -> ServiceContext:
    """Create the database, cipher, blob store and token config described by ``settings``."""
    return ServiceContext(
        settings=settings,
        db=Database(settings.database_url),
        cipher=CredentialCipher(settings.credential_keys),
        blobs=FilesystemBlobStore(settings.blob_storage_path),
        tokens=TokenConfig.from_settings(settings),
        jobs=jobs or RecordingJobQueue(),
    )
