"""Search index and conversation (thread) tables of the mirrored mailbox (issue 11, migration 0007).

``email_search_docs`` holds one row per message: its words already stemmed in Python
(:mod:`email_service.services.search_text`), so PostgreSQL (a weighted ``tsv`` column with a GIN index: the
``to_tsvector('simple', ...)`` of the terms, written by the service as a literal since migration 0012; not mapped
here, SQLite has none) and SQLite (an FTS5 external-content table kept in step by triggers on this table)
index the very same lexemes and cannot disagree.  ``from_text`` / ``to_text`` / ``cc_text`` are the lower-cased
addresses for partial matches (``from:ali``; pg_trgm on PostgreSQL).

``email_thread_containers`` are the JWZ containers (RFC 5256 REFERENCES) of an account: one per Message-ID seen,
as a message's own id or in a References / In-Reply-To header, mapping it to its thread.
"""

from __future__ import annotations

import uuid

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from email_service.models.base import Base, TenantScoped, now_ms


class SearchDoc(Base):
    """The indexed words of one message (stemmed lexemes separated by single spaces)."""

    __tablename__ = "email_search_docs"

    doc_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    message_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("email_messages.id", ondelete="CASCADE"), nullable=False, unique=True
    )
    tenant_id: Mapped[uuid.UUID] = mapped_column(Uuid, nullable=False, index=True)
    account_id: Mapped[uuid.UUID] = mapped_column(Uuid, nullable=False)
    #: Copies of the message's columns that never change after it is stored, so that most searches never read the
    #: (wide) message rows: IMAP INTERNALDATE (epoch ms), RFC822.SIZE (octets), has attachments.
    received_at: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    size: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    has_attachments: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    from_text: Mapped[str] = mapped_column(Text, nullable=False, default="")
    to_text: Mapped[str] = mapped_column(Text, nullable=False, default="")
    cc_text: Mapped[str] = mapped_column(Text, nullable=False, default="")
    subject_terms: Mapped[str] = mapped_column(Text, nullable=False, default="")
    address_terms: Mapped[str] = mapped_column(Text, nullable=False, default="")
    attachment_terms: Mapped[str] = mapped_column(Text, nullable=False, default="")
    updated_at: Mapped[int] = mapped_column(BigInteger, nullable=False, default=now_ms, onupdate=now_ms)
    #: Last: SQLite reads a row's columns in order, and this one is long.
    body_terms: Mapped[str] = mapped_column(Text, nullable=False, default="")
    #: Copies of the message's mutable state that a search filters on (``is:``, ``in:``; migration 0014): written
    #: with the doc row, then kept in step by the ``AFTER UPDATE`` trigger on ``email_messages`` (both databases),
    #: so every writer (sync, CONDSTORE, write-back, moves, drafts) is followed without knowing of it.  After
    #: ``body_terms`` on SQLite (``ALTER TABLE ... ADD COLUMN``); SQLite's search probes the message list's
    #: covering indexes instead (``services/search_sql.py``).
    is_read: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    is_flagged: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    is_answered: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    is_draft: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    folder_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)

    __table_args__ = (Index("idx_email_search_docs_account", "account_id", "received_at"),)


class ThreadContainer(TenantScoped, Base):
    """A JWZ container: a Message-ID (``msgid``, without angle brackets) of an account and its thread.

    ``has_message``: a stored message carries this id (else the id was only referenced: a missing parent).
    ``parent_msgid``: the message's parent (last References entry, RFC 5256 REFERENCES step 1C).
    ``base_subject`` (RFC 5256 section 2.1) and ``received_at`` (epoch ms) are set only for a message without
    references, the only kind that may join a thread by subject.
    """

    __tablename__ = "email_thread_containers"

    account_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("email_accounts.id", ondelete="CASCADE"), nullable=False
    )
    msgid: Mapped[str] = mapped_column(String(500), nullable=False)
    thread_id: Mapped[uuid.UUID] = mapped_column(Uuid, nullable=False)
    parent_msgid: Mapped[str | None] = mapped_column(String(500))
    has_message: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    base_subject: Mapped[str | None] = mapped_column(String(200))
    received_at: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (
        Index("uq_email_thread_containers_account_msgid", "account_id", "msgid", unique=True),
        Index("idx_email_thread_containers_thread", "account_id", "thread_id"),
        Index("idx_email_thread_containers_subject", "account_id", "base_subject", "received_at"),
    )
