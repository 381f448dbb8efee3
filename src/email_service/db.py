"""Engine, sessions and tenant-scoped transactions (DESIGN.md section 6).

Every unit of work on tenant data runs in :meth:`Database.tenant_session`, which on PostgreSQL sets
``app.current_tenant_id`` for that transaction only, with a bound parameter (``set_config(..., true)``), so that
row-level security policies filter every statement.  Services also filter by ``tenant_id`` explicitly: RLS is the
second wall, not the only one.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, sessionmaker

from email_service.fs import touch_private

MIGRATIONS_DIR_CANDIDATES = (
    Path(__file__).resolve().parent / "migrations",  # installed wheel (force-included)
    Path(__file__).resolve().parents[2] / "migrations",  # source checkout / editable install
)


def migrations_dir() -> Path:
    """Folder of the Alembic scripts, in a wheel or in a source checkout.

    Raises:
        FileNotFoundError: neither location exists.
    """
    for candidate in MIGRATIONS_DIR_CANDIDATES:
        if (candidate / "env.py").exists():
            return candidate
    raise FileNotFoundError("Alembic migrations folder not found")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def make_engine(url: str, *, pool_size: int = 10) -> Engine:
    """Create an engine for ``url`` (SQLite file or PostgreSQL through psycopg 3).

    SQLite gets foreign keys, WAL and a 30 s busy timeout so that the API and the in-process sync workers can
    share one file; the file is created 0600 in a 0700 folder when missing (:mod:`email_service.fs`).
    """
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            touch_private(Path(path))  # 0600; SQLite gives its -wal and -shm files the same mode
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)


#: The tenant of a PostgreSQL transaction, as a bound parameter (psycopg's ``%(name)s`` placeholder).
_SET_TENANT = "SELECT set_config('app.current_tenant_id', %(tenant_id)s, true)"


class Database:
    """One engine plus session factories; shared by the API, the job runner and the CLI."""

    def __init__(self, url: str, *, engine: Engine | None = None) -> None:
        self.url = url
        self.engine = engine or make_engine(url)
        self.is_postgres = self.engine.dialect.name == "postgresql"
        self._sessions = sessionmaker(bind=self.engine, expire_on_commit=False)

    @property
    def session_factory(self) -> sessionmaker[Session]:
        """The session factory every transaction comes from (for session events, e.g. the change log's
        after-commit hook)."""
        return self._sessions

    @contextmanager
    def tenant_session(self, tenant_id: uuid.UUID, *, read_only: bool = False) -> Iterator[Session]:
        """One transaction bound to ``tenant_id``: committed on success, rolled back on any exception.

        Yields a :class:`Session`.  On PostgreSQL the transaction-local setting ``app.current_tenant_id`` is set
        first, so RLS policies only ever show this tenant's rows.

        ``read_only=True`` is for a use case that reads several rows and must see them as of ONE moment (an
        account and its latest sync run, a page and its counts): PostgreSQL runs it ``REPEATABLE READ READ ONLY``
        (one snapshot for every statement, not one per statement as READ COMMITTED does), SQLite in an explicit
        ``BEGIN`` (pysqlite would otherwise run each SELECT on its own, outside any transaction).  It must not
        write.
        """
        with self._sessions() as session, session.begin():
            # Straight to the driver: no statement to compile or result to wrap, about a third of an empty tenant
            # transaction's CPU on PostgreSQL, paid by every request.  On PostgreSQL in one pipeline (psycopg): the
            # driver's BEGIN, the SET TRANSACTION and the set_config go in one round trip instead of two or three,
            # each a wait for the server that a loaded machine makes long (issue 11, bench/README.md).
            if self.is_postgres:
                driver: Any = session.connection().connection.driver_connection  # a psycopg.Connection
                with driver.pipeline():
                    if read_only:
                        driver.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    driver.execute(_SET_TENANT, {"tenant_id": str(tenant_id)})
            elif read_only:
                session.connection().exec_driver_sql("BEGIN")
            yield session

    @contextmanager
    def system_session(self) -> Iterator[Session]:
        """A transaction with no tenant bound: only the tenant registry is visible on PostgreSQL."""
        with self._sessions() as session, session.begin():
            yield session

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


def insert_ignoring_conflicts(session: Session, model: type[Any], rows: list[dict[str, Any]]) -> int:
    """``INSERT ... ON CONFLICT DO NOTHING`` of ``rows`` into ``model``'s table (PostgreSQL and SQLite).

    Rows that would violate a unique constraint or index are skipped instead of failing the transaction, so
    concurrent inserts of the same row are idempotent.  Returns how many rows were inserted.
    """
    if not rows:
        return 0
    dialect = session.get_bind().dialect.name
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    result = session.execute(insert(model).values(rows).on_conflict_do_nothing())
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def schema_revisions(engine: Engine) -> tuple[set[str], set[str]]:
    """``(current, head)``: the Alembic revisions the database is at and the heads of the migration scripts.

    The database is at head when both sets are equal.  Raises SQLAlchemy errors when the database is unreachable.
    """
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    heads = set(ScriptDirectory(str(migrations_dir())).get_heads())
    with engine.connect() as connection:
        current = set(MigrationContext.configure(connection).get_current_heads())
    return current, heads


#: The PostgreSQL advisory lock key that serialises migrations ("EMAILMIG" in ASCII, apart from the sync locks).
MIGRATION_LOCK_KEY = 0x454D41494C4D4947


def upgrade_database(migration_url: str, *, app_url: str | None = None, revision: str = "head") -> None:
    """Run the Alembic migrations up to ``revision`` (the only way the schema changes, DESIGN.md section 6).

    Args:
        migration_url: URL of the schema owner (``DATABASE_MIGRATION_URL``, default ``DATABASE_URL``).
        app_url: URL the application connects with; on PostgreSQL, when its user differs from the owner, that
            role is granted DML on every table so RLS applies to it.

    Several processes may start at once (two workers, an API and a worker): on PostgreSQL the upgrade runs under a
    transaction-level advisory lock, so they migrate one after the other (concurrent GRANTs on the same catalog
    rows fail with "tuple concurrently updated"); on SQLite the database file's write lock serialises them.
    """
    from alembic import command
    from alembic.config import Config
    from sqlalchemy.engine import make_url

    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.set_main_option("sqlalchemy.url", migration_url.replace("%", "%%"))
    if app_url:
        config.attributes["app_role"] = make_url(app_url).username
    engine = make_engine(migration_url)
    try:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    finally:
        engine.dispose()
