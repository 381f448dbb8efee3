"""Initial schema: seed 003 tables, sync state, audit log; RLS and search indexes on PostgreSQL.

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-21 05:51:06.769672
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "email_accounts",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("account_name", sa.String(length=255), nullable=False),
        sa.Column("email_address", sa.String(length=255), nullable=False),
        sa.Column("protocol", sa.String(length=20), nullable=False),
        sa.Column("hostname", sa.String(length=255), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("encryption", sa.String(length=20), nullable=False),
        sa.Column("username", sa.String(length=255), nullable=False),
        sa.Column("credential_id", sa.Uuid(), nullable=True),
        sa.Column("smtp_hostname", sa.String(length=255), nullable=True),
        sa.Column("smtp_port", sa.Integer(), nullable=True),
        sa.Column("smtp_encryption", sa.String(length=20), nullable=True),
        sa.Column("smtp_username", sa.String(length=255), nullable=True),
        sa.Column("is_sync_enabled", sa.Boolean(), nullable=False),
        sa.Column("sync_interval", sa.Integer(), nullable=False),
        sa.Column("last_sync_at", sa.BigInteger(), nullable=True),
        sa.Column("is_syncing", sa.Boolean(), nullable=False),
        sa.Column("is_enabled", sa.Boolean(), nullable=False),
        sa.Column("deleted_at", sa.BigInteger(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_email_accounts")),
    )
    with op.batch_alter_table("email_accounts", schema=None) as batch_op:
        batch_op.create_index(
            "idx_email_accounts_sync_enabled", ["tenant_id", "is_sync_enabled", "last_sync_at"], unique=False
        )
        batch_op.create_index("idx_email_tenant", ["email_address", "tenant_id"], unique=False)
        batch_op.create_index("idx_tenant_enabled", ["tenant_id", "is_enabled"], unique=False)
        batch_op.create_index("idx_user_tenant", ["user_id", "tenant_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_email_accounts_tenant_id"), ["tenant_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_email_accounts_user_id"), ["user_id"], unique=False)

    op.create_table(
        "email_audit_log",
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("resource_type", sa.String(length=64), nullable=False),
        sa.Column("resource_id", sa.String(length=64), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("ip_address", sa.String(length=64), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_email_audit_log")),
    )
    with op.batch_alter_table("email_audit_log", schema=None) as batch_op:
        batch_op.create_index("idx_email_audit_log_tenant_created", ["tenant_id", "created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_email_audit_log_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "email_tenants",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_email_tenants")),
    )
    op.create_table(
        "email_credentials",
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("ciphertext", sa.Text(), nullable=False),
        sa.Column("key_id", sa.String(length=16), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["email_accounts.id"],
            name=op.f("fk_email_credentials_account_id_email_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_email_credentials")),
    )
    with op.batch_alter_table("email_credentials", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_email_credentials_account_id"), ["account_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_email_credentials_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "email_folders",
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=1000), nullable=False),
        sa.Column("type", sa.String(length=20), nullable=False),
        sa.Column("delimiter", sa.String(length=8), nullable=True),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column("unread_count", sa.Integer(), nullable=False),
        sa.Column("total_count", sa.Integer(), nullable=False),
        sa.Column("sync_token", sa.Text(), nullable=True),
        sa.Column("is_selectable", sa.Boolean(), nullable=False),
        sa.Column("uidvalidity", sa.BigInteger(), nullable=True),
        sa.Column("uidnext", sa.BigInteger(), nullable=True),
        sa.Column("highestmodseq", sa.BigInteger(), nullable=True),
        sa.Column("sync_state", sa.String(length=20), nullable=False),
        sa.Column("last_synced_at", sa.BigInteger(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["email_accounts.id"],
            name=op.f("fk_email_folders_account_id_email_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_email_folders")),
    )
    with op.batch_alter_table("email_folders", schema=None) as batch_op:
        batch_op.create_index("idx_email_folders_account_type", ["account_id", "type"], unique=False)
        batch_op.create_index("idx_email_folders_tenant_account", ["tenant_id", "account_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_email_folders_tenant_id"), ["tenant_id"], unique=False)
        batch_op.create_index("uq_email_folders_account_name", ["account_id", "name"], unique=True)

    op.create_table(
        "email_sync_runs",
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("trigger", sa.String(length=20), nullable=False),
        sa.Column("started_at", sa.BigInteger(), nullable=True),
        sa.Column("finished_at", sa.BigInteger(), nullable=True),
        sa.Column("folders_synced", sa.Integer(), nullable=False),
        sa.Column("messages_added", sa.Integer(), nullable=False),
        sa.Column("messages_updated", sa.Integer(), nullable=False),
        sa.Column("messages_removed", sa.Integer(), nullable=False),
        sa.Column("error_kind", sa.String(length=64), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["email_accounts.id"],
            name=op.f("fk_email_sync_runs_account_id_email_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_email_sync_runs")),
    )
    with op.batch_alter_table("email_sync_runs", schema=None) as batch_op:
        batch_op.create_index("idx_email_sync_runs_account_created", ["account_id", "created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_email_sync_runs_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "email_messages",
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("folder_id", sa.Uuid(), nullable=False),
        sa.Column("uid", sa.BigInteger(), nullable=True),
        sa.Column("uidvalidity", sa.BigInteger(), nullable=True),
        sa.Column("uidl", sa.String(length=255), nullable=True),
        sa.Column("modseq", sa.BigInteger(), nullable=True),
        sa.Column("message_id", sa.String(length=998), nullable=True),
        sa.Column("in_reply_to", sa.String(length=998), nullable=True),
        sa.Column("references", sa.JSON(), nullable=False),
        sa.Column("from_name", sa.String(length=500), nullable=True),
        sa.Column("from_address", sa.String(length=500), nullable=True),
        sa.Column("sender", sa.JSON(), nullable=True),
        sa.Column("to_addresses", sa.JSON(), nullable=False),
        sa.Column("cc_addresses", sa.JSON(), nullable=False),
        sa.Column("bcc_addresses", sa.JSON(), nullable=False),
        sa.Column("reply_to", sa.JSON(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("preview", sa.String(length=512), nullable=False),
        sa.Column("text_body", sa.Text(), nullable=True),
        sa.Column("html_body", sa.Text(), nullable=True),
        sa.Column("flags", sa.JSON(), nullable=False),
        sa.Column("is_read", sa.Boolean(), nullable=False),
        sa.Column("is_flagged", sa.Boolean(), nullable=False),
        sa.Column("is_answered", sa.Boolean(), nullable=False),
        sa.Column("is_draft", sa.Boolean(), nullable=False),
        sa.Column("has_attachments", sa.Boolean(), nullable=False),
        sa.Column("thread_id", sa.Uuid(), nullable=True),
        sa.Column("sent_at", sa.BigInteger(), nullable=True),
        sa.Column("received_at", sa.BigInteger(), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("raw_sha256", sa.String(length=64), nullable=True),
        sa.Column("defects", sa.JSON(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["email_accounts.id"],
            name=op.f("fk_email_messages_account_id_email_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["folder_id"],
            ["email_folders.id"],
            name=op.f("fk_email_messages_folder_id_email_folders"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_email_messages")),
    )
    with op.batch_alter_table("email_messages", schema=None) as batch_op:
        batch_op.create_index("idx_email_messages_account_read", ["account_id", "is_read"], unique=False)
        batch_op.create_index("idx_email_messages_message_id", ["message_id", "account_id"], unique=False)
        batch_op.create_index("idx_email_messages_tenant_account", ["tenant_id", "account_id"], unique=False)
        batch_op.create_index("idx_email_messages_thread_id", ["thread_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_email_messages_tenant_id"), ["tenant_id"], unique=False)
        batch_op.create_index("uq_email_messages_account_uidl", ["account_id", "uidl"], unique=True)
        batch_op.create_index("uq_email_messages_folder_uid", ["folder_id", "uidvalidity", "uid"], unique=True)

    op.create_table(
        "email_attachments",
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("message_id", sa.Uuid(), nullable=False),
        sa.Column("part_id", sa.String(length=64), nullable=True),
        sa.Column("filename", sa.String(length=500), nullable=True),
        sa.Column("mime_type", sa.String(length=255), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("content_id", sa.String(length=998), nullable=True),
        sa.Column("disposition", sa.String(length=20), nullable=False),
        sa.Column("storage_type", sa.String(length=20), nullable=False),
        sa.Column("storage_path", sa.String(length=1000), nullable=True),
        sa.Column("content_hash", sa.String(length=64), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["email_accounts.id"],
            name=op.f("fk_email_attachments_account_id_email_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["email_messages.id"],
            name=op.f("fk_email_attachments_message_id_email_messages"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_email_attachments")),
    )
    with op.batch_alter_table("email_attachments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_email_attachments_content_hash"), ["content_hash"], unique=False)
        batch_op.create_index(batch_op.f("ix_email_attachments_message_id"), ["message_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_email_attachments_tenant_id"), ["tenant_id"], unique=False)

    _create_expression_indexes()
    if op.get_bind().dialect.name == "postgresql":
        _postgresql_extras()


def downgrade() -> None:
    op.drop_index("uq_email_accounts_live_address", table_name="email_accounts")
    op.drop_index("idx_email_messages_folder_received", table_name="email_messages")
    with op.batch_alter_table("email_attachments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_email_attachments_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_email_attachments_message_id"))
        batch_op.drop_index(batch_op.f("ix_email_attachments_content_hash"))

    op.drop_table("email_attachments")
    with op.batch_alter_table("email_messages", schema=None) as batch_op:
        batch_op.drop_index("uq_email_messages_folder_uid")
        batch_op.drop_index("uq_email_messages_account_uidl")
        batch_op.drop_index(batch_op.f("ix_email_messages_tenant_id"))
        batch_op.drop_index("idx_email_messages_thread_id")
        batch_op.drop_index("idx_email_messages_tenant_account")
        batch_op.drop_index("idx_email_messages_message_id")
        batch_op.drop_index("idx_email_messages_account_read")

    op.drop_table("email_messages")
    with op.batch_alter_table("email_sync_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_email_sync_runs_tenant_id"))
        batch_op.drop_index("idx_email_sync_runs_account_created")

    op.drop_table("email_sync_runs")
    with op.batch_alter_table("email_folders", schema=None) as batch_op:
        batch_op.drop_index("uq_email_folders_account_name")
        batch_op.drop_index(batch_op.f("ix_email_folders_tenant_id"))
        batch_op.drop_index("idx_email_folders_tenant_account")
        batch_op.drop_index("idx_email_folders_account_type")

    op.drop_table("email_folders")
    with op.batch_alter_table("email_credentials", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_email_credentials_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_email_credentials_account_id"))

    op.drop_table("email_credentials")
    op.drop_table("email_tenants")
    with op.batch_alter_table("email_audit_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_email_audit_log_tenant_id"))
        batch_op.drop_index("idx_email_audit_log_tenant_created")

    op.drop_table("email_audit_log")
    with op.batch_alter_table("email_accounts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_email_accounts_user_id"))
        batch_op.drop_index(batch_op.f("ix_email_accounts_tenant_id"))
        batch_op.drop_index("idx_user_tenant")
        batch_op.drop_index("idx_tenant_enabled")
        batch_op.drop_index("idx_email_tenant")
        batch_op.drop_index("idx_email_accounts_sync_enabled")

    op.drop_table("email_accounts")


TENANT_TABLES = (
    "email_accounts",
    "email_credentials",
    "email_folders",
    "email_messages",
    "email_attachments",
    "email_sync_runs",
    "email_audit_log",
)


def _create_expression_indexes() -> None:
    """Indexes autogenerate cannot express: one live address per user, newest-first listing."""
    op.create_index(
        "uq_email_accounts_live_address",
        "email_accounts",
        ["tenant_id", "user_id", sa.text("lower(email_address)")],
        unique=True,
        sqlite_where=sa.text("deleted_at IS NULL"),
        postgresql_where=sa.text("deleted_at IS NULL"),
    )
    op.create_index("idx_email_messages_folder_received", "email_messages", ["folder_id", sa.text("received_at DESC")])


def _postgresql_extras() -> None:
    """RLS on every tenant table (FORCE, so the owner is filtered too) and the seed 003 search indexes."""
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    tenant = "NULLIF(current_setting('app.current_tenant_id', true), '')::uuid"
    for table in TENANT_TABLES:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY {table}_tenant_isolation ON {table} "
            f"USING (tenant_id = {tenant}) WITH CHECK (tenant_id = {tenant})"
        )
    op.execute(
        "CREATE INDEX idx_email_messages_text_search ON email_messages USING GIN "
        "(to_tsvector('simple', coalesce(subject, '') || ' ' || coalesce(text_body, '')))"
    )
    op.execute("CREATE INDEX idx_email_messages_subject_trgm ON email_messages USING GIN (subject gin_trgm_ops)")
    op.execute(
        "CREATE INDEX idx_email_messages_unread ON email_messages (folder_id, received_at DESC) WHERE NOT is_read"
    )
    op.execute("CREATE INDEX idx_email_messages_created_brin ON email_messages USING BRIN (created_at)")
    op.execute("CREATE INDEX idx_email_audit_log_created_brin ON email_audit_log USING BRIN (created_at)")
    op.execute(
        "CREATE INDEX idx_email_folders_type ON email_folders (type) "
        "WHERE type IN ('inbox', 'sent', 'drafts', 'trash', 'spam', 'archive')"
    )
    op.execute("CREATE INDEX idx_email_attachments_storage_path ON email_attachments (storage_path)")
