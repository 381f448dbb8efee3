"""Databases of the tests and benchmarks: a private PostgreSQL database with the non-owner app role (row-level
security in force, as in production), or an SQLite file; migrated to head, dropped after."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from email_service.db import upgrade_database

APP_ROLE = "email_service_app"


@contextmanager
def postgres_database(admin_url: str) -> Iterator[tuple[str, str]]:
    """Create a private database and the app role; yield ``(owner url, app url)``; drop the database after."""
    base = make_url(admin_url).set(drivername="postgresql+psycopg")
    name = f"email_service_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
        exists = connection.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": APP_ROLE}).first()
        if not exists:
            connection.execute(text(f"CREATE ROLE {APP_ROLE} LOGIN NOSUPERUSER NOBYPASSRLS"))
    owner_url = base.set(database=name)
    app_url = owner_url.set(username=APP_ROLE, password=None)
    try:
        yield (owner_url.render_as_string(hide_password=False), app_url.render_as_string(hide_password=False))
    finally:
        with admin.connect() as connection:
            connection.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"), {"n": name}
            )
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


@contextmanager
def migrated_database(data_dir: Path, name: str, admin_url: str | None = None) -> Iterator[tuple[str, str]]:
    """A new database at the head revision, dropped after: PostgreSQL at ``admin_url`` (default
    ``TEST_DATABASE_URL``) with the owner and the non-owner app role, else the SQLite file
    ``<data_dir>/<name>.db``.  Yields ``(migration url, app url)``."""
    admin_url = admin_url or os.environ.get("TEST_DATABASE_URL")
    if admin_url:
        with postgres_database(admin_url) as (owner_url, app_url):
            upgrade_database(owner_url, app_url=app_url)
            yield owner_url, app_url
        return
    url = f"sqlite:///{data_dir / name}.db"
    upgrade_database(url)
    yield url, url
