"""At most one queued or running sync run per account, enforced by the database (issue 6 item 5).

A partial unique index on ``email_sync_runs (account_id) WHERE state IN ('queued', 'running')``: concurrent sync
requests cannot create several active runs (read-then-write could); the losers read the winner's run instead.
Runs that earlier races left active side by side are closed first (all but the newest per account).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_ACTIVE = "state IN ('queued', 'running')"


def upgrade() -> None:
    op.execute(
        sa.text(
            "UPDATE email_sync_runs SET state = 'failed', error_kind = 'Superseded', "
            "error = 'Closed by a schema upgrade: another run of the account was active' "
            "WHERE state IN ('queued', 'running') AND EXISTS (SELECT 1 FROM email_sync_runs AS newer "
            "WHERE newer.account_id = email_sync_runs.account_id AND newer.state IN ('queued', 'running') "
            "AND (newer.created_at > email_sync_runs.created_at OR "
            "(newer.created_at = email_sync_runs.created_at AND newer.id > email_sync_runs.id)))"
        )
    )
    op.create_index(
        "uq_email_sync_runs_one_active",
        "email_sync_runs",
        ["account_id"],
        unique=True,
        sqlite_where=sa.text(_ACTIVE),
        postgresql_where=sa.text(_ACTIVE),
    )


def downgrade() -> None:
    op.drop_index("uq_email_sync_runs_one_active", table_name="email_sync_runs")
