"""Attachments (issue 10): virus-scan state and transfer encoding of attachment rows, one copy of an upload per
draft, the draft's "server copy is stale" mark, and the index garbage collection looks raw messages up by.

* ``email_attachments.virus_scan_status`` (``pending | clean | infected | error | skipped``; rows that existed
  before are ``pending``: never scanned), ``virus_name``, ``virus_scanned_at``, ``content_encoding`` (the part's
  Content-Transfer-Encoding as received; ``none`` for uploads).
* ``uq_email_attachments_message_upload``: partial unique index on ``(message_id, content_hash)`` of uploaded
  (``storage_type = 'blob'``) rows, so that two concurrent uploads of the same bytes to one draft make one row.
* ``email_messages.draft_changed_at``: epoch ms of the last local change of a draft its server copy lacks.
* ``idx_email_messages_raw_sha256``: blob garbage collection asks which blobs rows still reference.

No new table: row-level security of 0001 covers both tables.

Revision ID: 0008
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0002"
branch_labels = None
depends_on = None

_UPLOADED = "storage_type = 'blob'"


def upgrade() -> None:
    with op.batch_alter_table("email_attachments", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("virus_scan_status", sa.String(length=16), nullable=False, server_default="pending")
        )
        batch_op.add_column(sa.Column("virus_name", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("virus_scanned_at", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("content_encoding", sa.String(length=32), nullable=True))
    with op.batch_alter_table("email_messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("draft_changed_at", sa.BigInteger(), nullable=True))
        batch_op.create_index("idx_email_messages_raw_sha256", ["raw_sha256"], unique=False)
    op.create_index(
        "uq_email_attachments_message_upload",
        "email_attachments",
        ["message_id", "content_hash"],
        unique=True,
        sqlite_where=sa.text(_UPLOADED),
        postgresql_where=sa.text(_UPLOADED),
    )


def downgrade() -> None:
    op.drop_index("uq_email_attachments_message_upload", table_name="email_attachments")
    with op.batch_alter_table("email_messages", schema=None) as batch_op:
        batch_op.drop_index("idx_email_messages_raw_sha256")
        batch_op.drop_column("draft_changed_at")
    with op.batch_alter_table("email_attachments", schema=None) as batch_op:
        batch_op.drop_column("content_encoding")
        batch_op.drop_column("virus_scanned_at")
        batch_op.drop_column("virus_name")
        batch_op.drop_column("virus_scan_status")
