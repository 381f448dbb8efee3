"""Alembic environment: the URL and the application role come from the ``email-service db upgrade`` command.

After the migrations, when the application connects as a different (non-owner) PostgreSQL role, that role is
granted DML on every table, so that RLS (``FORCE ROW LEVEL SECURITY``) applies to it (DESIGN.md section 6).
"""

from __future__ import annotations

import re

from alembic import context
from sqlalchemy import create_engine, text

from email_service.models import Base

config = context.config
target_metadata = Base.metadata
_ROLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def _grant_app_role(connection, app_role: str | None) -> None:  # type: ignore[no-untyped-def]
    if connection.dialect.name != "postgresql" or not app_role:
        return
    if not _ROLE_NAME.match(app_role):
        raise ValueError(f"invalid PostgreSQL role name {app_role!r}")
    current = connection.execute(text("SELECT current_user")).scalar_one()
    if current == app_role:
        return
    connection.execute(text(f'GRANT USAGE ON SCHEMA public TO "{app_role}"'))
    connection.execute(text(f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO "{app_role}"'))
    connection.execute(text(f'GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO "{app_role}"'))


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
        with engine.begin() as connection:
            _run(connection)
        engine.dispose()
    else:
        _run(connection)


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
        _grant_app_role(connection, config.attributes.get("app_role"))


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
