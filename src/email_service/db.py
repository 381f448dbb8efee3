"""Engine, sessions and tenant-scoped transactions (DESIGN.md section 6).

Every unit of work on tenant data runs in :meth:`Database.tenant_session`, which on PostgreSQL sets
``app.current_tenant_id`` for that transaction only, with a bound parameter (``set_config(..., true)``), so that
row-level security policies filter every statement.  Services also filter by ``tenant_id`` explicitly: RLS is the
second wall, not the only one.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, Select, create_engine, event, func, select, text
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


def fetch_ordered_rows(
    connection: Connection,
    statement: Select[Any],
    values: Mapping[str, Any],
    *,
    order_by: tuple[str, ...],
    descending: bool,
) -> Sequence[Sequence[Any]]:
    """The rows of ``statement`` (ordered by its columns named ``order_by``, all ascending or all ``descending``,
    as its own ``ORDER BY`` orders them) as sequences of its columns' values, read by position.

    PostgreSQL: the statement's rows as they come (SQLAlchemy ``Row``\\ s).  SQLite: the same rows fetched as ONE
    value, a JSON array built by SQLite (:func:`_in_one_value`), so the values are what JSON holds of them: text,
    integers (booleans as 0/1), reals and nulls; a statement of BLOB columns is refused by SQLite.  Why: the
    ``sqlite3`` module releases the GIL around every row it steps, and while another thread of the process wants
    it, each release hands it over and waits to get it back.  A page of 50 rows read by 4 threads at once cost
    ~500 context switches and a third of the throughput (issue 11, ``bench/README.md`` stop 18); one value is
    one step.  The order is SQLite's own: each element carries its ``row_number()`` over ``order_by``.

    ``statement`` should be built once (its wrapped form is kept per statement object).  Raises what the driver
    raises.
    """
    if connection.dialect.name != "sqlite":
        return connection.execute(statement, values).all()
    value = connection.execute(_in_one_value(statement, order_by, descending), values).scalar_one()
    rows: list[list[Any]] = orjson.loads(value)
    rows.sort(key=_ordinal)
    return [row[1:] for row in rows]


def _ordinal(row: list[Any]) -> int:
    return int(row[0])


@lru_cache(maxsize=256)
def _in_one_value(statement: Select[Any], order_by: tuple[str, ...], descending: bool) -> Select[Any]:
    """``SELECT json_group_array(json_array(ordinal, <columns>)) FROM (<statement> numbered)``: ``ordinal`` is
    ``row_number() OVER (ORDER BY <order_by>)`` over the statement's rows (its LIMIT applied first, so its plan is
    unchanged), since the order in which an aggregate sees rows is not defined."""
    rows = statement.subquery("rows")
    keys = [rows.c[name].desc() if descending else rows.c[name].asc() for name in order_by]
    numbered = select(func.row_number().over(order_by=keys).label("ordinal"), *rows.c).subquery("numbered")
    return select(func.json_group_array(func.json_array(*numbered.c)))


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
