"""The bytes of an attachment: where they are, scanned before they are served or sent.

**Mirrored attachments are decoded on first use, not at sync** (measured in ``bench/attachments.py --mirror``,
figures in ``bench/README.md``).  A sync keeps the raw message only; the first download (or virus scan, or send)
of one of its parts decodes that part from the raw message and stores the decoded bytes in the blob store under
their sha256 (``content_hash``, computed at sync), where later downloads stream from like uploads do.  Extracting
every part at sync would write a second copy of every attachment (base64 in the raw message + decoded) and slow
every sync for parts most of which are never opened; decoding at each download would parse the whole message for
every request and could not stream a range.  Decoding on first use costs one parse per opened attachment.

**Virus scanning** (clamd ``INSTREAM``): an upload is scanned by a ``scan_attachment`` job right after it is
stored; any attachment not yet found clean -- a mirrored one on its first download, an upload whose job has not
run, one whose scan failed, one that arrived while scanning was off -- is scanned before it is served or sent.
An infected attachment is never served (403 naming the finding) nor sent.
"""

from __future__ import annotations

import contextlib
import logging
import mimetypes
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import update

from email_service.errors import Forbidden, NotFound, ServiceUnavailable
from email_service.models import EmailAttachment, now_ms
from email_service.protocols.clamd import ClamdEndpoint, scan_stream
from email_service.protocols.errors import ConnectionFailed, PermanentFailure
from email_service.protocols.mime.filename import safe_filename
from email_service.protocols.mime.parse import attachment_bytes
from email_service.security.tokens import Principal
from email_service.services.attachments import load_attachment, ordered_attachments
from email_service.services.context import ServiceContext

log = logging.getLogger("email_service.attachments")
#: Statuses that need no (new) scan before the bytes are served or sent.
SCANNED = ("clean", "infected")
_DECODING: dict[str, threading.Lock] = {}
_DECODING_GUARD = threading.Lock()


@dataclass(frozen=True)
class Content:
    """Where an attachment's decoded bytes are: blob ``sha256`` of ``size`` bytes in ``namespace``."""

    namespace: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Download:
    """What a download serves: the bytes (:class:`Content`), their type and a safe file name."""

    content: Content
    mime_type: str
    filename: str


class AttachmentInfected(Forbidden):
    """The attachment carries malware: never served nor sent (403, the message names the finding)."""


def clamd_endpoint(ctx: ServiceContext) -> ClamdEndpoint:
    """clamd as configured: ``CLAMD_SOCKET``, else ``CLAMD_HOST``/``CLAMD_PORT``; ``VIRUS_SCAN_TIMEOUT``."""
    settings = ctx.settings
    return ClamdEndpoint(
        socket_path=settings.clamd_socket,
        host=settings.clamd_host,
        port=settings.clamd_port,
        timeout=float(settings.virus_scan_timeout),
    )


def _decoding_lock(key: str) -> threading.Lock:
    with _DECODING_GUARD:
        return _DECODING.setdefault(key, threading.Lock())


def content_of(ctx: ServiceContext, attachment: EmailAttachment) -> Content:
    """The attachment's bytes in the blob store, decoding a mirrored part from its raw message on first use.

    Raises:
        NotFound: the bytes are gone (raw message or blob missing, or the part is not in the message).
    """
    namespace = str(attachment.tenant_id)
    digest = attachment.content_hash
    if digest and ctx.blobs.exists(namespace, digest):
        return Content(namespace, digest, ctx.blobs.size(namespace, digest))
    if attachment.storage_type != "message" or not attachment.storage_path:
        raise NotFound("Attachment content is not available")
    raw_sha256, _, part_id = attachment.storage_path.partition("#")
    with _decoding_lock(attachment.storage_path):
        if digest and ctx.blobs.exists(namespace, digest):  # decoded by another request meanwhile
            return Content(namespace, digest, ctx.blobs.size(namespace, digest))
        try:
            _info, data = attachment_bytes(ctx.blobs.get(namespace, raw_sha256), part_id)
        except (NotFound, KeyError):
            raise NotFound("Attachment content is not available") from None
        stored = ctx.blobs.put(namespace, data)
    if stored != digest or len(data) != attachment.size_bytes:  # a row from an older parser: record the truth
        log.warning("attachment %s decoded to other bytes than recorded; updating its hash", attachment.id)
        with ctx.db.tenant_session(attachment.tenant_id) as session:
            session.execute(
                update(EmailAttachment)
                .where(EmailAttachment.id == attachment.id)
                .values(content_hash=stored, size_bytes=len(data), updated_at=now_ms())
            )
        attachment.content_hash, attachment.size_bytes = stored, len(data)
    return Content(namespace, stored, len(data))


def _record_scan(ctx: ServiceContext, attachment: EmailAttachment, status: str, virus: str | None) -> None:
    with ctx.db.tenant_session(attachment.tenant_id) as session:
        session.execute(
            update(EmailAttachment)
            .where(EmailAttachment.id == attachment.id)
            .values(virus_scan_status=status, virus_name=virus, virus_scanned_at=now_ms(), updated_at=now_ms())
        )
    attachment.virus_scan_status, attachment.virus_name = status, virus


def scan(ctx: ServiceContext, attachment: EmailAttachment) -> str:
    """Scan an attachment's bytes with clamd and record the outcome on its row; return the new status.

    Raises:
        ConnectionFailed: clamd is unreachable (recorded as ``error``; retry later).
        NotFound: the bytes are gone.
    """
    content = content_of(ctx, attachment)
    try:
        verdict = scan_stream(clamd_endpoint(ctx), ctx.blobs.iter_chunks(content.namespace, content.sha256))
    except ConnectionFailed:
        _record_scan(ctx, attachment, "error", None)
        raise
    except PermanentFailure as exc:
        log.warning("virus scan of attachment %s failed: %s", attachment.id, exc.message)
        _record_scan(ctx, attachment, "error", None)
        return "error"
    status = "infected" if verdict.infected else "clean"
    if verdict.infected:
        log.warning("attachment %s is infected: %s", attachment.id, verdict.signature)
    _record_scan(ctx, attachment, status, (verdict.signature or "")[:255] or None)
    return status


def require_safe(ctx: ServiceContext, attachment: EmailAttachment) -> None:
    """Scan the attachment now unless it was scanned already (or scanning is off); refuse an infected one.

    Raises:
        AttachmentInfected: clamd found something (403 naming it).
        ServiceUnavailable: scanning is on and clamd could not give a verdict (503).
    """
    if ctx.settings.virus_scan_enabled and attachment.virus_scan_status not in SCANNED:
        with contextlib.suppress(ConnectionFailed):  # recorded as "error": refused below
            scan(ctx, attachment)
        if attachment.virus_scan_status not in SCANNED:
            raise ServiceUnavailable("The attachment could not be scanned for viruses; try again later")
    if attachment.virus_scan_status == "infected":
        raise AttachmentInfected(
            f"Attachment is infected ({attachment.virus_name or 'malware'}) and cannot be downloaded or sent"
        )


def open_download(ctx: ServiceContext, *, principal: Principal, attachment_id: uuid.UUID) -> Download:
    """Resolve a download: access checked, bytes located (decoded on first use), scanned, not infected.

    Raises:
        NotFound / Forbidden: unknown or foreign attachment, or its bytes are gone.
        AttachmentInfected (403) / ServiceUnavailable (503): see :func:`require_safe`.
    """
    with ctx.db.tenant_session(principal.tenant_id) as session:
        attachment, _message = load_attachment(session, principal, attachment_id)
    if attachment.virus_scan_status == "infected":  # never decode or touch known malware again
        require_safe(ctx, attachment)
    content = content_of(ctx, attachment)
    require_safe(ctx, attachment)
    extension = mimetypes.guess_extension(attachment.mime_type) or ""
    return Download(content, attachment.mime_type, safe_filename(attachment.filename, default_extension=extension))


def scan_attachment_job(ctx: ServiceContext, *, tenant_id: uuid.UUID, attachment_id: uuid.UUID) -> str:
    """The ``scan_attachment`` job: scan one attachment unless it was scanned already or scanning is off.

    Returns the attachment's status (``gone`` when the row was deleted meanwhile).  Raises
    :class:`ConnectionFailed` when clamd is unreachable (the job kind retries it).
    """
    with ctx.db.tenant_session(tenant_id) as session:
        attachment = session.get(EmailAttachment, attachment_id)
    if attachment is None:
        return "gone"
    if attachment.virus_scan_status in SCANNED or not ctx.settings.virus_scan_enabled:
        return attachment.virus_scan_status
    try:
        return scan(ctx, attachment)
    except NotFound:
        return "gone"


@dataclass(frozen=True)
class DraftAttachment:
    """An attachment of a draft ready to be put into the MIME message: its row and its decoded bytes."""

    attachment: EmailAttachment
    content: Content

    def chunks(self, ctx: ServiceContext) -> Iterator[bytes]:
        """The decoded bytes, streamed from the blob store."""
        return ctx.blobs.iter_chunks(self.content.namespace, self.content.sha256)


def draft_attachments(
    ctx: ServiceContext, *, tenant_id: uuid.UUID, message_id: uuid.UUID, for_sending: bool = False
) -> list[DraftAttachment]:
    """The hook compose calls to build a draft's MIME message (re-APPEND to Drafts, or send): every attachment
    of the message in order, with its decoded bytes in the blob store (mirrored parts decoded on first use).

    Args:
        for_sending: scan what was not scanned yet and refuse the send if anything is infected.

    Raises:
        NotFound: an attachment's bytes are gone.
        AttachmentInfected / ServiceUnavailable: ``for_sending`` and an attachment is infected / unscannable.
    """
    with ctx.db.tenant_session(tenant_id) as session:
        rows = ordered_attachments(session, message_id)
    found = []
    for attachment in rows:
        content = content_of(ctx, attachment)
        if for_sending:
            require_safe(ctx, attachment)
        found.append(DraftAttachment(attachment, content))
    return found
