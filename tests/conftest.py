"""Shared fixtures: one migrated database per test session (SQLite by default, PostgreSQL when
``TEST_DATABASE_URL`` is set), the app with its real in-process job runner, HTTP clients and auth helpers.

Run on PostgreSQL::

    TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres uv run pytest

The session creates a private database there, migrates it as the owner (``postgres``) and connects the app as
the non-owner role ``email_service_app``, so row-level security is in force exactly as in production.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from hypothesis import settings as hypothesis_settings

from email_service.app import create_app
from email_service.config import Settings
from email_service.security.credentials import generate_key
from email_service.security.tokens import create_jwt_token
from email_service.services.context import ServiceContext, build_context
from email_service.tasks.runner import InProcessJobRunner
from tests.support.databases import migrated_database
from tests.support.dovecot import dovecot, dovecot_without_condstore, mail_user  # noqa: F401  (re-exported)
from tests.support.peers import clamd, s3_server  # noqa: F401  (re-exported fixtures)

# Row-level security and the tsv of migration 0012 are PostgreSQL features: their tests belong to the PostgreSQL run
# only (not skipped on SQLite, where they have nothing to test, but not collected).
#: Modules that need PostgreSQL: collected only with ``TEST_DATABASE_URL`` (CI runs the suite on both databases).
POSTGRESQL_ONLY = [
    "integration/api/test_rls.py",
    "integration/search/test_search_tsv_postgresql.py",
    "integration/test_tenant_session_postgresql.py",
]
collect_ignore_glob = [] if os.environ.get("TEST_DATABASE_URL") else POSTGRESQL_ONLY

# CI explores the same Hypothesis examples every run (no flakes from a new random draw); locally it varies.
hypothesis_settings.register_profile("ci", derandomize=True, database=None, deadline=None)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")
JWT_SECRET = "test-secret-" + "x" * 40


@pytest.fixture(scope="session")
def data_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="email-service-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def database_urls(data_dir: Path) -> Iterator[tuple[str, str]]:
    """``(migration url, app url)`` of the session's migrated database."""
    with migrated_database(data_dir, "test") as urls:
        yield urls


def settings_env(data_dir: Path, database_urls: tuple[str, str], **overrides: str | None) -> dict[str, str]:
    """The environment of the test settings (also handed to service processes the tests start): explicit secrets,
    header auth on, in-memory rate limits; an override of ``None`` leaves that variable unset (its default
    applies)."""
    env = {
        "EMAIL_SERVICE_DATA_DIR": str(data_dir),
        "DATABASE_URL": database_urls[1],
        "DATABASE_MIGRATION_URL": database_urls[0],
        "JWT_SECRET_KEY": JWT_SECRET,
        "CREDENTIAL_ENCRYPTION_KEYS": os.environ.get("TEST_CREDENTIAL_KEY") or _SESSION_KEY,
        "AUTH_TRUST_HEADERS": "true",
        "CORS_ORIGINS": "http://localhost:3000",
        "SCHEDULER_ENABLED": "false",
        "MAIL_TIMEOUT_SECONDS": "10",
    }
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def make_settings(data_dir: Path, database_urls: tuple[str, str], **overrides: str | None) -> Settings:
    """Settings of the test app (:func:`settings_env`)."""
    return Settings.from_env(settings_env(data_dir, database_urls, **overrides))


_SESSION_KEY = generate_key()


def cli_env(settings: Settings) -> dict[str, str]:
    """The environment under which the ``email-service`` command sees the test session's database and keys."""
    return {
        "EMAIL_SERVICE_DATA_DIR": str(settings.data_dir),
        "DATABASE_URL": settings.database_url,
        "DATABASE_MIGRATION_URL": settings.database_migration_url,
        "JWT_SECRET_KEY": settings.jwt_secret_key,
        "CREDENTIAL_ENCRYPTION_KEYS": ",".join(settings.credential_keys),
    }


@pytest.fixture(scope="session")
def settings(data_dir: Path, database_urls: tuple[str, str]) -> Settings:
    return make_settings(data_dir, database_urls)


@pytest.fixture(scope="session")
def runner() -> Iterator[InProcessJobRunner]:
    jobs = InProcessJobRunner(workers=2)
    yield jobs
    jobs.shutdown(wait=True)


@pytest.fixture(scope="session")
def ctx(settings: Settings, runner: InProcessJobRunner) -> Iterator[ServiceContext]:
    context = build_context(settings, jobs=runner)
    runner.bind(context)
    yield context
    context.db.dispose()


@pytest.fixture
def app(ctx: ServiceContext) -> Any:
    """A fresh app (fresh in-memory rate-limit counters) over the session's context."""
    return create_app(context=ctx)


@pytest.fixture
def client(app: Any) -> FlaskClient:
    return app.test_client()


class Caller:
    """A tenant user (or admin) with ready-made auth headers."""

    def __init__(self, ctx: ServiceContext, tenant_id: uuid.UUID | None = None, role: str = "user") -> None:
        self.tenant_id = tenant_id or uuid.uuid4()
        self.user_id = uuid.uuid4()
        self.role = role
        token = create_jwt_token(ctx.tokens, tenant_id=self.tenant_id, user_id=self.user_id, role=role)
        self.headers = {"Authorization": f"Bearer {token}"}
        self.header_auth = {"X-Tenant-ID": str(self.tenant_id), "X-User-ID": str(self.user_id)}

    def colleague(self, ctx: ServiceContext, role: str = "user") -> Caller:
        """Another user of the same tenant."""
        return Caller(ctx, self.tenant_id, role)


@pytest.fixture
def caller(ctx: ServiceContext) -> Caller:
    return Caller(ctx)


@pytest.fixture
def make_caller(ctx: ServiceContext) -> Any:
    def factory(tenant_id: uuid.UUID | None = None, role: str = "user") -> Caller:
        return Caller(ctx, tenant_id, role)

    return factory


def account_body(**overrides: Any) -> dict[str, Any]:
    """A valid POST /accounts body (seed 000 example)."""
    body: dict[str, Any] = {
        "accountName": "Work Email",
        "emailAddress": f"user{uuid.uuid4().hex[:8]}@company.example",
        "protocol": "imap",
        "hostname": "imap.company.example",
        "port": 993,
        "encryption": "tls",
        "username": "user@company.example",
        "password": "secure_password_123",
    }
    body.update(overrides)
    return body


def wait_for_sync(client: FlaskClient, account_id: str, headers: dict[str, str], timeout: float = 60) -> Any:
    """Poll ``GET /accounts/{id}/sync`` until the latest run has finished; return its body.

    Polls like a well-behaved client: every 0.2 s, and after a 429 it waits the ``Retry-After`` it was given.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = client.get(f"/api/v1/accounts/{account_id}/sync", headers=headers)
        if response.status_code == 429:
            time.sleep(min(float(response.headers.get("Retry-After", "1")), max(0.0, deadline - time.monotonic())))
            continue
        body = response.get_json()
        if body.get("state") in ("succeeded", "failed"):
            return body
        time.sleep(0.2)
    raise AssertionError(f"sync of {account_id} did not finish in {timeout} s")


@pytest.fixture(autouse=True)
def _root_logging_restored() -> Iterator[None]:
    """A command run through ``cli.main`` configures the process's logging; put it back after each test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """With ``EMAIL_SERVICE_REQUIRE_INTEGRATION=1`` (CI), a skipped integration test fails the run."""
    if os.environ.get("EMAIL_SERVICE_REQUIRE_INTEGRATION") != "1":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = [
        r
        for r in (reporter.stats.get("skipped", []) if reporter else [])
        if "integration" in getattr(r, "keywords", {})
    ]
    if skipped:
        if reporter:
            reporter.write_line(f"FAILED: {len(skipped)} integration test(s) skipped while they are required")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def create_imap_account(
    client: FlaskClient, caller: Caller, host: str, port: int, username: str, password: str, **extra: Any
) -> str:
    """Register an IMAP account on a test server (plain IMAP, STARTTLS not required); return its id."""
    body = {
        "accountName": "Dovecot",
        "emailAddress": username,
        "protocol": "imap",
        "hostname": host,
        "port": port,
        "encryption": "none",
        "username": username,
        "password": password,
        **extra,
    }
    response = client.post("/api/v1/accounts", headers=caller.headers, json=body)
    assert response.status_code == 201, response.get_json()
    return str(response.get_json()["id"])
