"""Change log (issue 12): per-account modseq counter, pruning floor and the ``email_changes`` table.

* ``email_accounts.change_seq``: last modseq of the account's change log (bumped in the transaction of a change).
* ``email_accounts.change_floor``: oldest state ``/changes`` can still answer from after pruning (410 below it).
* ``email_changes``: one row per changed object (``kind`` message|folder|sync|outbox, ``change``
  created|updated|destroyed, ``object_id``, ``modseq`` unique per account); a tenant table, so RLS with FORCE on
  PostgreSQL like every other.
* ``email_webhooks``, ``email_webhook_cursors``, ``email_webhook_deliveries``: webhook subscriptions, how far each
  has read each account's log, and the deliveries (models/webhooks.py); tenant tables with RLS.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_TABLE = "email_changes"
_TENANT = "NULLIF(current_setting('app.current_tenant_id', true), '')::uuid"
_TABLES = (_TABLE, "email_webhooks", "email_webhook_cursors", "email_webhook_deliveries")


def _tenant_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
    ]


def _webhook_tables() -> None:
    op.create_table(
        "email_webhooks",
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("events", sa.JSON(), nullable=False),
        sa.Column("secret_ciphertext", sa.Text(), nullable=False),
        sa.Column("is_enabled", sa.Boolean(), nullable=False),
        sa.Column("failure_streak", sa.Integer(), nullable=False),
        sa.Column("disabled_at", sa.BigInteger(), nullable=True),
        *_tenant_columns(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_email_webhooks")),
    )
    op.create_index("idx_email_webhooks_tenant_user", "email_webhooks", ["tenant_id", "user_id"])
    op.create_index(op.f("ix_email_webhooks_tenant_id"), "email_webhooks", ["tenant_id"])
    op.create_table(
        "email_webhook_cursors",
        sa.Column("webhook_id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("modseq", sa.BigInteger(), nullable=False),
        *_tenant_columns(),
        sa.ForeignKeyConstraint(
            ["webhook_id"],
            ["email_webhooks.id"],
            name=op.f("fk_email_webhook_cursors_webhook_id_email_webhooks"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["email_accounts.id"],
            name=op.f("fk_email_webhook_cursors_account_id_email_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_email_webhook_cursors")),
    )
    op.create_index(
        "uq_email_webhook_cursors_webhook_account", "email_webhook_cursors", ["webhook_id", "account_id"], unique=True
    )
    op.create_index(op.f("ix_email_webhook_cursors_tenant_id"), "email_webhook_cursors", ["tenant_id"])
    op.create_table(
        "email_webhook_deliveries",
        sa.Column("webhook_id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("event", sa.String(length=32), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.BigInteger(), nullable=False),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("delivered_at", sa.BigInteger(), nullable=True),
        *_tenant_columns(),
        sa.ForeignKeyConstraint(
            ["webhook_id"],
            ["email_webhooks.id"],
            name=op.f("fk_email_webhook_deliveries_webhook_id_email_webhooks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_email_webhook_deliveries")),
    )
    op.create_index(
        "idx_email_webhook_deliveries_webhook_created", "email_webhook_deliveries", ["webhook_id", "created_at"]
    )
    op.create_index(
        "idx_email_webhook_deliveries_due", "email_webhook_deliveries", ["tenant_id", "state", "next_attempt_at"]
    )
    op.create_index(op.f("ix_email_webhook_deliveries_tenant_id"), "email_webhook_deliveries", ["tenant_id"])


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
    _webhook_tables()
    if op.get_bind().dialect.name == "postgresql":
        for table in _TABLES:
            op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
            op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
            op.execute(
                f"CREATE POLICY {table}_tenant_isolation ON {table} "
                f"USING (tenant_id = {_TENANT}) WITH CHECK (tenant_id = {_TENANT})"
            )


def downgrade() -> None:
    for table in reversed(_TABLES):
        op.drop_table(table)
    op.drop_column("email_accounts", "change_floor")
    op.drop_column("email_accounts", "change_seq")
