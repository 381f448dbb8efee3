"""Folder sync errors and sync progress (issue 8: no single folder stops a sync; issue 7: sync progress).

``email_folders`` gets the last sync error of the folder (kind, message, time; cleared by the next good sync).
``email_sync_runs`` gets where a running sync is: folders total/done/failed, the current folder, and how many of
its expected messages were fetched.  Adds columns only (no new table, so no new RLS policy); existing rows get 0.

Revision ID: 0005
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0008"
branch_labels = None
depends_on = None

_RUN_COUNTERS = ("folders_total", "folders_done", "folders_failed", "folder_expected", "folder_fetched")


def upgrade() -> None:
    with op.batch_alter_table("email_folders", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sync_error_kind", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("sync_error", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("sync_error_at", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("email_sync_runs", schema=None) as batch_op:
        for name in _RUN_COUNTERS:
            batch_op.add_column(sa.Column(name, sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("current_folder", sa.String(length=1000), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("email_sync_runs", schema=None) as batch_op:
        batch_op.drop_column("current_folder")
        for name in reversed(_RUN_COUNTERS):
            batch_op.drop_column(name)
    with op.batch_alter_table("email_folders", schema=None) as batch_op:
        batch_op.drop_column("sync_error_at")
        batch_op.drop_column("sync_error")
        batch_op.drop_column("sync_error_kind")
