"""POP3 maildrop mirroring (RFC 1939) into the account's INBOX folder.

A POP3 maildrop is one folder without flags; a message is known by its unique-id (``UIDL``, RFC 1939 section 7),
which with the account is its identity (DESIGN.md section 6).  Each run lists the maildrop with UIDL, fetches the
messages whose unique-id is not stored with ``RETR`` (newest, i.e. highest message number, first; stored a batch at
a time like IMAP mail) and removes the stored messages whose unique-id the server no longer lists.  Nothing is
deleted on the server (never ``DELE``): the mail stays there.  A server without UIDL cannot be mirrored: the run
fails with :class:`~email_service.protocols.errors.CapabilityMissing` and nothing is stored.
"""

from __future__ import annotations

import logging
import uuid

from sqlalchemy import select, update

from email_service.models import EmailFolder, EmailMessage, now_ms
from email_service.protocols.pop3 import Pop3Session
from email_service.services.changes import record_changes
from email_service.services.context import ServiceContext
from email_service.sync.progress import RunProgress
from email_service.sync.store import delete_messages
from email_service.sync.writer import MessageWriter

log = logging.getLogger("email_service.sync")
INBOX = "INBOX"
#: Longest unique-id stored (``email_messages.uidl``); RFC 1939 allows 70 characters.
UIDL_MAX = 255


class Pop3Mirror:
    """Mirrors one POP3 account's maildrop into its INBOX folder during one run."""

    def __init__(
        self,
        ctx: ServiceContext,
        tenant_id: uuid.UUID,
        account_id: uuid.UUID,
        pop3: Pop3Session,
        progress: RunProgress,
    ) -> None:
        self.ctx = ctx
        self.tenant_id = tenant_id
        self.account_id = account_id
        self.pop3 = pop3
        self.progress = progress

    def run(self) -> None:
        """List by UIDL, remove what is gone, fetch what is new.

        Raises:
            CapabilityMissing: the server has no UIDL.
            ConnectionFailed: the connection broke (batches stored before stay).
        """
        self.progress.start(1)
        self.progress.enter_folder(INBOX)
        by_uidl: dict[str, int] = {}
        for number, uidl in sorted(self.pop3.uidl().items()):
            if len(uidl) > UIDL_MAX:
                log.warning(
                    "POP3 message %d of account %s has an over-long unique-id; skipped", number, self.account_id
                )
                continue
            by_uidl.setdefault(uidl, number)
        folder_id = self._inbox()
        stored = self._stored_uidls(folder_id)
        gone = stored - by_uidl.keys()
        if gone:
            with self.ctx.db.tenant_session(self.tenant_id) as session:
                self.progress.removed(delete_messages(session, folder_id, EmailMessage.uidl, sorted(gone)))
        new = sorted(((number, uidl) for uidl, number in by_uidl.items() if uidl not in stored), reverse=True)
        self._fetch_new(folder_id, new)
        with self.ctx.db.tenant_session(self.tenant_id) as session:
            session.execute(
                update(EmailFolder)
                .where(EmailFolder.id == folder_id)
                .values(last_synced_at=now_ms(), updated_at=now_ms())
            )
        self.progress.leave_folder()

    def _inbox(self) -> uuid.UUID:
        """The account's INBOX folder row, created on the first run."""
        with self.ctx.db.tenant_session(self.tenant_id) as session:
            folder_id = session.execute(
                select(EmailFolder.id).where(EmailFolder.account_id == self.account_id, EmailFolder.name == INBOX)
            ).scalar_one_or_none()
            if folder_id is None:
                folder_id = uuid.uuid4()
                session.add(
                    EmailFolder(
                        id=folder_id,
                        tenant_id=self.tenant_id,
                        account_id=self.account_id,
                        name=INBOX,
                        type="inbox",
                        attributes=[],
                        is_selectable=True,
                        sync_state="poll",
                        total_count=0,
                        unread_count=0,
                    )
                )
                session.flush()
                record_changes(
                    session, tenant_id=self.tenant_id, account_id=self.account_id, kind="folder", created=[folder_id]
                )
            return folder_id

    def _stored_uidls(self, folder_id: uuid.UUID) -> set[str]:
        with self.ctx.db.tenant_session(self.tenant_id) as session:
            rows = session.execute(select(EmailMessage.uidl).where(EmailMessage.folder_id == folder_id)).scalars()
            return {uidl for uidl in rows if uidl is not None}

    def _fetch_new(self, folder_id: uuid.UUID, new: list[tuple[int, str]]) -> None:
        """RETR each ``(message number, unique-id)`` and store them a batch at a time; a message the server no
        longer has (``-ERR``) is skipped."""
        self.progress.expect(len(new))
        batch_size = self.ctx.settings.sync_batch_size
        writer = MessageWriter(
            self.ctx, tenant_id=self.tenant_id, account_id=self.account_id, folder_id=folder_id, progress=self.progress
        )
        with writer:
            for index, (number, uidl) in enumerate(new, start=1):
                raw = self.pop3.retr(number)
                if raw is None:
                    log.info("POP3 message %d (%s) is gone from the maildrop; skipped", number, uidl)
                else:
                    writer.add(raw, identity={"uidl": uidl})
                if index % batch_size == 0:
                    writer.end_batch()
