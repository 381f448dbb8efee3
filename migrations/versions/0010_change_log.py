"""Change log (issue 12): per-account modseq counter, pruning floor and the ``email_changes`` table.

* ``email_accounts.change_seq``: last modseq of the account's change log (bumped in the transaction of a change).
* ``email_accounts.change_floor``: oldest state ``/changes`` can still answer from after pruning (410 below it).
* ``email_changes``: one row per changed object (``kind`` message|folder|sync|outbox, ``change``
  created|updated|destroyed, ``object_id``, ``modseq`` unique per account); a tenant table, so RLS with FORCE on
  PostgreSQL like every other.

Revision ID: 0010
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0006"
branch_labels = None
depends_on = None

_TABLE = "email_changes"
_TENANT = "NULLIF(current_setting('app.current_tenant_id', true), '')::uuid"


def upgrade() -> None:
    # Plain ADD COLUMN (see 0004): a batch copy would drop the expression index SQLite cannot reflect.
    op.add_column("email_accounts", sa.Column("change_seq", sa.BigInteger(), nullable=False, server_default="0"))
    op.add_column("email_accounts", sa.Column("change_floor", sa.BigInteger(), nullable=False, server_default="0"))
    op.create_table(
        _TABLE,
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("modseq", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("change", sa.String(length=16), nullable=False),
        sa.Column("object_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["email_accounts.id"],
            name=op.f("fk_email_changes_account_id_email_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_email_changes")),
    )
    op.create_index("uq_email_changes_account_modseq", _TABLE, ["account_id", "modseq"], unique=True)
    op.create_index("idx_email_changes_account_created", _TABLE, ["account_id", "created_at"])
    op.create_index(op.f("ix_email_changes_tenant_id"), _TABLE, ["tenant_id"], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE {_TABLE} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {_TABLE} FORCE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY {_TABLE}_tenant_isolation ON {_TABLE} "
            f"USING (tenant_id = {_TENANT}) WITH CHECK (tenant_id = {_TENANT})"
        )


def downgrade() -> None:
    op.drop_table(_TABLE)
    op.drop_column("email_accounts", "change_floor")
    op.drop_column("email_accounts", "change_seq")
