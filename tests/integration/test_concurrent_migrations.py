"""Processes that start together (two workers, an API and a worker) each run the migrations at start: on
PostgreSQL they used to fail one another with "tuple concurrently updated" (concurrent GRANTs to the app role), and
CI saw a Celery worker die before it was ready.  ``upgrade_database`` now serialises them."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

import pytest

from email_service.db import upgrade_database
from tests.support.databases import migrated_database

pytestmark = pytest.mark.integration


def _upgrade(migration_url: str, app_url: str, start: Any) -> None:
    start.wait(60)  # every process imported and waiting: they migrate at the same moment
    upgrade_database(migration_url, app_url=app_url if app_url != migration_url else None)


def test_processes_that_migrate_at_once_all_start(data_dir: Path) -> None:
    spawn = multiprocessing.get_context("spawn")
    with migrated_database(data_dir, "concurrent-migrations") as (migration_url, app_url):
        for _round in range(2):
            start = spawn.Barrier(5)
            processes = [spawn.Process(target=_upgrade, args=(migration_url, app_url, start)) for _ in range(4)]
            for process in processes:
                process.start()
            start.wait(60)
            for process in processes:
                process.join(120)
            assert [process.exitcode for process in processes] == [0, 0, 0, 0]
