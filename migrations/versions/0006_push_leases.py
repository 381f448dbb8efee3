"""IDLE push (issue 8): per-account watcher leases, folder-scoped sync runs and follow-up requests.

* ``email_push_leases``: one row per watched account (unique ``account_id``), ``holder`` and ``expires_at`` (epoch
  ms); a tenant table, so RLS with FORCE on PostgreSQL like every other.
* ``email_sync_runs.folder``: the one mailbox a run covers (a push of INBOX), NULL for every folder.
* ``email_sync_runs.follow_up_trigger`` / ``follow_up_folder``: a run requested while this one was active and could
  no longer see the change; queued when this one ends.

Revision ID: 0006
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0004"
branch_labels = None
depends_on = None

_TENANT = "NULLIF(current_setting('app.current_tenant_id', true), '')::uuid"


def upgrade() -> None:
    op.add_column("email_sync_runs", sa.Column("folder", sa.Text(), nullable=True))
    op.add_column("email_sync_runs", sa.Column("follow_up_trigger", sa.String(length=20), nullable=True))
    op.add_column("email_sync_runs", sa.Column("follow_up_folder", sa.Text(), nullable=True))
    op.create_table(
        "email_push_leases",
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["email_accounts.id"],
            name=op.f("fk_email_push_leases_account_id_email_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_email_push_leases")),
        sa.UniqueConstraint("account_id", name=op.f("uq_email_push_leases_account_id")),
    )
    op.create_index(op.f("ix_email_push_leases_tenant_id"), "email_push_leases", ["tenant_id"], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE email_push_leases ENABLE ROW LEVEL SECURITY")
        op.execute("ALTER TABLE email_push_leases FORCE ROW LEVEL SECURITY")
        op.execute(
            "CREATE POLICY email_push_leases_tenant_isolation ON email_push_leases "
            f"USING (tenant_id = {_TENANT}) WITH CHECK (tenant_id = {_TENANT})"
        )


def downgrade() -> None:
    op.drop_index(op.f("ix_email_push_leases_tenant_id"), table_name="email_push_leases")
    op.drop_table("email_push_leases")
    with op.batch_alter_table("email_sync_runs") as batch_op:
        batch_op.drop_column("follow_up_folder")
        batch_op.drop_column("follow_up_trigger")
        batch_op.drop_column("folder")
