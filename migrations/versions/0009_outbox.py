"""Compose and send (issue 9): the outbox, idempotency keys of send requests, the account's ``save_sent_copy``.

* ``email_outbox``: one row per message to send (status, attempts, next attempt, fixed Message-ID, raw MIME
  sha256, envelope ``mail_from``/``rcpt_tos``, the seed-002 ``DeliveryResult`` JSON, error kind/reason, the draft
  it came from and the message it answers).
* ``email_idempotency_keys``: ``(tenant, user, key)`` unique, the body hash and the outbox item, ``expires_at``.
* ``email_accounts.save_sent_copy``: APPEND sent mail to the Sent folder (default true).

Both tables are tenant tables: row-level security with FORCE on PostgreSQL, like 0004.

Revision ID: 0009
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0007"
branch_labels = None
depends_on = None

_TENANT = "NULLIF(current_setting('app.current_tenant_id', true), '')::uuid"


def _common() -> list[sa.Column[object]]:
    return [
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
    ]


def _rls(table: str) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY {table}_tenant_isolation ON {table} "
            f"USING (tenant_id = {_TENANT}) WITH CHECK (tenant_id = {_TENANT})"
        )


def upgrade() -> None:
    op.create_table(
        "email_outbox",
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("send_at", sa.BigInteger(), nullable=False),
        sa.Column("next_attempt_at", sa.BigInteger(), nullable=False),
        sa.Column("sending_started_at", sa.BigInteger(), nullable=True),
        sa.Column("finished_at", sa.BigInteger(), nullable=True),
        sa.Column("rfc_message_id", sa.String(length=998), nullable=False),
        sa.Column("raw_sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("mail_from", sa.String(length=320), nullable=False),
        sa.Column("rcpt_tos", sa.JSON(), nullable=False),
        sa.Column("delivery", sa.JSON(), nullable=True),
        sa.Column("error_kind", sa.String(length=64), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("draft_id", sa.Uuid(), nullable=True),
        sa.Column("reply_to_id", sa.Uuid(), nullable=True),
        sa.Column("sent_copy_id", sa.Uuid(), nullable=True),
        *_common(),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["email_accounts.id"],
            name=op.f("fk_email_outbox_account_id_email_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_email_outbox")),
    )
    op.create_index("idx_email_outbox_account_status", "email_outbox", ["account_id", "status"])
    op.create_index("idx_email_outbox_due", "email_outbox", ["tenant_id", "status", "next_attempt_at"])
    op.create_index("idx_email_outbox_user", "email_outbox", ["tenant_id", "user_id", "created_at"])
    op.create_index(op.f("ix_email_outbox_tenant_id"), "email_outbox", ["tenant_id"])
    op.create_table(
        "email_idempotency_keys",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("body_sha256", sa.String(length=64), nullable=False),
        sa.Column("outbox_id", sa.Uuid(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        *_common(),
        sa.ForeignKeyConstraint(
            ["outbox_id"],
            ["email_outbox.id"],
            name=op.f("fk_email_idempotency_keys_outbox_id_email_outbox"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_email_idempotency_keys")),
    )
    op.create_index(
        "uq_email_idempotency_keys_user_key", "email_idempotency_keys", ["tenant_id", "user_id", "key"], unique=True
    )
    op.create_index(op.f("ix_email_idempotency_keys_tenant_id"), "email_idempotency_keys", ["tenant_id"])
    # Plain ADD COLUMN (no batch copy, which would drop the expression index uq_email_accounts_live_address).
    op.add_column("email_accounts", sa.Column("save_sent_copy", sa.Boolean(), nullable=False, server_default=sa.true()))
    _rls("email_outbox")
    _rls("email_idempotency_keys")


def downgrade() -> None:
    op.drop_column("email_accounts", "save_sent_copy")
    op.drop_table("email_idempotency_keys")
    op.drop_table("email_outbox")
