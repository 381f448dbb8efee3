"""``db.fetch_ordered_rows``: a statement's rows in its order, on the suite's database (SQLite: fetched as one value).

A real table on the database the suite runs on (SQLite by default, PostgreSQL with ``TEST_DATABASE_URL``): the rows
must be the ones a plain fetch gives, value for value and in the same order, with ties, NULLs, text that JSON must
escape, large integers and booleans among them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import BigInteger, Boolean, Column, Engine, Integer, MetaData, String, Table, Text, bindparam, select
from sqlalchemy import text as sql_text

from email_service.db import fetch_ordered_rows, make_engine
from email_service.services.context import ServiceContext

pytestmark = pytest.mark.integration

TEXTS = ["plain", "quote \" and \\ backslash", "tab\tnew\nline\r", "Grüße 会議 📅", "\u2028\u2029", "", None,
         "<script>alert(1)</script>", "x" * 5000]  # fmt: skip
NUL = "nul \x00 inside"  # SQLite keeps it (its own length() stops there); PostgreSQL text cannot hold it


@pytest.fixture()
def table(ctx: ServiceContext) -> Iterator[tuple[Engine, Table]]:
    """A fresh table of 60 rows with duplicate sort keys (ties broken by id), dropped afterwards."""
    engine = make_engine(ctx.settings.database_migration_url)  # the owner: the app role may not create tables
    texts = TEXTS if ctx.db.is_postgres else [*TEXTS, NUL]
    name = f"fetch_rows_{uuid.uuid4().hex[:8]}"
    metadata = MetaData()
    rows_table = Table(name, metadata, Column("id", String(32), primary_key=True), Column("rank", Integer),
                       Column("body", Text), Column("big", BigInteger),
                       Column("flag", Boolean))  # fmt: skip
    metadata.create_all(engine)
    rows = [
        {"id": uuid.UUID(int=index * 7919).hex, "rank": index % 7, "body": texts[index % len(texts)],
         "big": None if index % 5 == 0 else 2**53 + index, "flag": index % 3 == 0}
        for index in range(60)
    ]  # fmt: skip
    with engine.begin() as connection:
        connection.execute(rows_table.insert(), rows)
    yield engine, rows_table
    with engine.begin() as connection:
        connection.execute(sql_text(f"DROP TABLE {name}"))
    engine.dispose()


def _plain(engine: Engine, statement: Any, values: dict[str, Any]) -> list[tuple[Any, ...]]:
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(statement, values)]


@pytest.mark.parametrize("descending", [True, False])
@pytest.mark.parametrize("limit", [0, 1, 25, 60, 100])
def test_rows_and_order_are_a_plain_fetch_s(table: tuple[Engine, Table], descending: bool, limit: int) -> None:
    engine, rows_table = table
    keys = [rows_table.c.rank, rows_table.c.id]
    ordering = [key.desc() for key in keys] if descending else keys
    statement = (
        select(rows_table.c.id, rows_table.c.body, rows_table.c.big, rows_table.c.flag, rows_table.c.rank)
        .where(rows_table.c.rank >= bindparam("low"))
        .order_by(*ordering)
        .limit(bindparam("limit"))
    )
    values = {"low": 1, "limit": limit}
    with engine.connect() as connection:
        fetched = fetch_ordered_rows(connection, statement, values, order_by=("rank", "id"), descending=descending)
    expected = _plain(engine, statement, values)
    assert len(fetched) == len(expected) == min(limit, sum(1 for index in range(60) if index % 7 >= 1))
    for got, want in zip(fetched, expected, strict=True):
        assert list(got[:3]) == list(want[:3])  # id, body (escapes, NUL, 5,000 chars), big (beyond 2**53) exact
        assert bool(got[3]) == want[3] and got[4] == want[4]  # SQLite gives a boolean as 0/1
    assert any(row[1] is None for row in fetched) == (limit >= 25)  # NULLs come back as None
