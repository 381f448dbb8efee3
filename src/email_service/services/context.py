"""What every use case needs, bundled once per process: settings, database, cipher, blob store, job queue
(:mod:`email_service.services.jobs`), and the host policy every mail connection obeys."""

from __future__ import annotations

from dataclasses import dataclass, field

from email_service.config import Settings
from email_service.db import Database
from email_service.protocols.net import HostPolicy
from email_service.security.credentials import CredentialCipher
from email_service.security.tokens import TokenConfig
from email_service.services.change_bus import ChangeBus
from email_service.services.hosts import mail_host_policy
from email_service.services.jobs import JobQueue, RecordingJobQueue
from email_service.storage.blobs import BlobStore, open_blob_store


@dataclass
class ServiceContext:
    """Dependencies of the services; built by :func:`build_context` from :class:`Settings`.

    ``host_policy`` is what every connection to a mail host obeys (DESIGN.md section 2): built once from
    ``ALLOW_PRIVATE_MAIL_HOSTS`` and ``MAIL_HOST_ALLOWLIST`` and handed to the wire adapters.
    """

    settings: Settings
    db: Database
    cipher: CredentialCipher
    blobs: BlobStore
    tokens: TokenConfig
    host_policy: HostPolicy
    jobs: JobQueue = field(default_factory=RecordingJobQueue)
    #: Wake-ups of the change log's readers (issue 12); fed after each commit that recorded changes.
    changes: ChangeBus = field(default_factory=ChangeBus)


def build_context(settings: Settings, *, jobs: JobQueue | None = None) -> ServiceContext:
    """Create the database, cipher, blob store, token config and host policy described by ``settings``.

    Raises:
        ConfigurationError: ``MAIL_HOST_ALLOWLIST`` holds a malformed network.
    """
    from email_service.services.changes import install_commit_hook

    host_policy = mail_host_policy(settings)
    db = Database(settings.database_url)
    bus = ChangeBus(settings.redis_url)
    install_commit_hook(db.session_factory, bus.publish)
    return ServiceContext(
        settings=settings,
        db=db,
        cipher=CredentialCipher(settings.credential_keys),
        blobs=open_blob_store(settings),
        tokens=TokenConfig.from_settings(settings),
        host_policy=host_policy,
        jobs=jobs or RecordingJobQueue(),
        changes=bus,
    )
