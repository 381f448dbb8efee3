"""Write-back of local changes (issue 8): pending actions, the per-account action counter, a message's last error.

``email_pending_actions`` holds every accepted local change (flags, move, delete, folder CRUD) until the
``syncback_account`` job has applied it on the mail server; ``email_accounts.action_seq`` numbers an account's
actions in commit order; ``email_messages.last_error`` keeps the server's words when a write-back failed.
On PostgreSQL the new table gets row-level security like every tenant table (0001).

Revision ID: 0004
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0005"
branch_labels = None
depends_on = None

_TABLE = "email_pending_actions"


def upgrade() -> None:
    op.create_table(
        _TABLE,
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("message_id", sa.Uuid(), nullable=True),
        sa.Column("folder_id", sa.Uuid(), nullable=True),
        sa.Column("mailbox", sa.String(length=1000), nullable=True),
        sa.Column("uidvalidity", sa.BigInteger(), nullable=True),
        sa.Column("uid", sa.BigInteger(), nullable=True),
        sa.Column("target_folder_id", sa.Uuid(), nullable=True),
        sa.Column("target_mailbox", sa.String(length=1000), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("base_modseq", sa.BigInteger(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.BigInteger(), nullable=False),
        sa.Column("error_kind", sa.String(length=64), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("applied_at", sa.BigInteger(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["email_accounts.id"],
            name=op.f("fk_email_pending_actions_account_id_email_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_email_pending_actions")),
    )
    with op.batch_alter_table(_TABLE, schema=None) as batch_op:
        batch_op.create_index("uq_email_pending_actions_account_seq", ["account_id", "seq"], unique=True)
        batch_op.create_index("idx_email_pending_actions_account_state_seq", ["account_id", "state", "seq"])
        batch_op.create_index("idx_email_pending_actions_message", ["message_id", "state"])
        batch_op.create_index("idx_email_pending_actions_folder", ["folder_id", "state"])
        batch_op.create_index("idx_email_pending_actions_due", ["tenant_id", "state", "next_attempt_at"])
        batch_op.create_index(batch_op.f("ix_email_pending_actions_tenant_id"), ["tenant_id"], unique=False)
    # Plain ALTER TABLE ADD COLUMN (SQLite supports it): a batch "move and copy" would recreate the tables and drop
    # the expression indexes it cannot reflect (uq_email_accounts_live_address).
    op.add_column("email_accounts", sa.Column("action_seq", sa.BigInteger(), nullable=False, server_default="0"))
    op.add_column("email_messages", sa.Column("last_error", sa.Text(), nullable=True))

    if op.get_bind().dialect.name == "postgresql":
        tenant = "NULLIF(current_setting('app.current_tenant_id', true), '')::uuid"
        op.execute(f"ALTER TABLE {_TABLE} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {_TABLE} FORCE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY {_TABLE}_tenant_isolation ON {_TABLE} "
            f"USING (tenant_id = {tenant}) WITH CHECK (tenant_id = {tenant})"
        )


def downgrade() -> None:
    op.drop_column("email_messages", "last_error")  # SQLite 3.35+ drops columns natively
    op.drop_column("email_accounts", "action_seq")
    op.drop_table(_TABLE)
