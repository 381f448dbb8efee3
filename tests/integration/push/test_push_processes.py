"""Two ``email-service push`` processes share the accounts through leases (issue 8): every account is watched by
exactly one of them (one IDLE connection per account on the server, one lease row), and when one process is
killed the other takes its accounts over once the leases expire, and pushes their new mail.

The processes run on a private database (SQLite file, or a PostgreSQL database with the app role under RLS) so
that they see only this test's accounts.  Leases last 2 s here (``PUSH_LEASE_SECONDS``).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from email_service.models import EmailMessage, PushLease, SyncRun
from email_service.security.tokens import Principal
from email_service.services.accounts import create_account
from email_service.services.context import ServiceContext, build_context
from tests.conftest import make_settings
from tests.integration.push.conftest import new_message
from tests.support.databases import migrated_database
from tests.support.dovecot import Dovecot
from tests.support.services import ServiceProcess, wait_until

pytestmark = pytest.mark.integration

LEASE_SECONDS = "2"


@pytest.fixture
def private_database(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """``(migration url, app url)`` of a freshly migrated database used by this test alone."""
    with migrated_database(tmp_path, "push") as urls:
        yield urls


class PushProcesses:
    """``email-service push`` processes over the private database; all are killed at the end."""

    def __init__(self, tmp_path: Path, env: dict[str, str]) -> None:
        self.tmp_path = tmp_path
        self.env = env
        self.processes: list[ServiceProcess] = []

    def start(self, max_connections: int) -> ServiceProcess:
        env = {**self.env, "PUSH_MAX_CONNECTIONS": str(max_connections)}
        process = ServiceProcess(["push"], env, self.tmp_path / f"push-{len(self.processes)}.log").start()
        self.processes.append(process)
        return process

    def logs(self) -> str:
        return "\n".join(process.output()[-3000:] for process in self.processes)

    def kill_all(self) -> None:
        for process in self.processes:
            process.kill()


@pytest.fixture
def push_processes(tmp_path: Path, private_database: tuple[str, str], ctx: ServiceContext) -> Iterator[PushProcesses]:
    env = {
        "EMAIL_SERVICE_DATA_DIR": str(tmp_path / "data"),
        "DATABASE_URL": private_database[1],
        "DATABASE_MIGRATION_URL": private_database[0],
        "JWT_SECRET_KEY": ctx.settings.jwt_secret_key,
        "CREDENTIAL_ENCRYPTION_KEYS": ",".join(ctx.settings.credential_keys),
        "PUSH_LEASE_SECONDS": LEASE_SECONDS,
        "MAIL_TIMEOUT_SECONDS": "10",
    }
    processes = PushProcesses(tmp_path, env)
    try:
        yield processes
    finally:
        processes.kill_all()


def _holders(private: ServiceContext, accounts: dict[uuid.UUID, uuid.UUID]) -> dict[uuid.UUID, str]:
    """``{account: holder}`` of the accounts' leases (expired or not)."""
    holders: dict[uuid.UUID, str] = {}
    for tenant_id in set(accounts.values()):
        with private.db.tenant_session(tenant_id) as session:
            rows = session.execute(select(PushLease.account_id, PushLease.holder)).all()
        holders.update({account_id: holder for account_id, holder in rows})
    return holders


def _caught_up(private: ServiceContext, accounts: dict[uuid.UUID, uuid.UUID]) -> bool:
    """Every account's catch-up sync (trigger ``push``) has ended and no other run is queued or running."""
    ended: set[uuid.UUID] = set()
    for tenant_id in set(accounts.values()):
        with private.db.tenant_session(tenant_id) as session:
            rows = session.execute(select(SyncRun.account_id, SyncRun.state, SyncRun.trigger)).all()
        if any(state in ("queued", "running") for _account, state, _trigger in rows):
            return False
        ended |= {account for account, state, trigger in rows if trigger == "push" and state == "succeeded"}
    return ended == set(accounts)


def _accounts(private: ServiceContext, dovecot: Dovecot) -> tuple[dict[uuid.UUID, str], dict[uuid.UUID, uuid.UUID]]:
    """Two tenants with two Dovecot accounts each: ``({account: user}, {account: tenant})``."""
    users: dict[uuid.UUID, str] = {}
    accounts: dict[uuid.UUID, uuid.UUID] = {}
    for tenant_id in (uuid.uuid4(), uuid.uuid4()):
        for _ in range(2):
            user, password = dovecot.new_user()
            fields = {
                "account_name": "push",
                "email_address": user,
                "protocol": "imap",
                "hostname": dovecot.host,
                "port": dovecot.imap_port,
                "encryption": "none",
                "username": user,
            }
            principal = Principal(tenant_id, uuid.uuid4())
            account = create_account(private, principal=principal, fields=fields, password=password)
            users[account.id], accounts[account.id] = user, tenant_id
    return users, accounts


def _pid(holder: str) -> int:
    return int(holder.split(":")[-2])


def test_two_push_processes_watch_each_account_once_and_one_takes_over_when_the_other_is_killed(
    tmp_path: Path,
    private_database: tuple[str, str],
    push_processes: PushProcesses,
    dovecot: Dovecot,
) -> None:
    private = build_context(make_settings(tmp_path / "setup", private_database))
    users, accounts = _accounts(private, dovecot)

    def sessions() -> dict[uuid.UUID, int]:
        return {account_id: dovecot.imap_sessions(user) for account_id, user in users.items()}

    def settled(expected_pids: set[int]) -> dict[uuid.UUID, str] | None:
        """The holders once every account has a lease of a process in ``expected_pids`` and exactly one IDLE
        connection (catch-up syncs have finished)."""
        holders = _holders(private, accounts)
        if set(holders) != set(accounts) or {_pid(h) for h in holders.values()} != expected_pids:
            return None
        if not _caught_up(private, accounts):  # a catch-up sync holds a second IMAP session while it runs
            return None
        return holders if set(sessions().values()) == {1} else None

    try:
        first = push_processes.start(max_connections=2)
        wait_until(lambda: len(_holders(private, accounts)) == 2, what="first process leases its two accounts")
        second = push_processes.start(max_connections=4)
        holders = wait_until(lambda: settled({first.pid, second.pid}), what="both processes watching")
        assert sorted(_pid(h) for h in holders.values()).count(first.pid) == 2

        for _ in range(15):  # three lease periods of renewals: nothing moves, nothing doubles
            assert _holders(private, accounts) == holders
            assert set(sessions().values()) == {1}
            time.sleep(0.4)

        first_accounts = [a for a, h in holders.items() if _pid(h) == first.pid]
        first.kill()
        taken_over = wait_until(lambda: settled({second.pid}), what="second process takes every account over")
        assert set(taken_over) == set(accounts)

        dovecot.deliver(users[first_accounts[0]], new_message("after the takeover"))
        tenant = accounts[first_accounts[0]]

        def stored() -> bool:
            with private.db.tenant_session(tenant) as session:
                subjects = session.execute(
                    select(EmailMessage.subject).where(EmailMessage.account_id == first_accounts[0])
                ).scalars()
                return "after the takeover" in set(subjects)

        wait_until(stored, what="mail of a taken-over account pushed and synced")

        assert second.stop() == 0
        assert _holders(private, accounts) == {}, "a process that stops releases its leases"
        wait_until(lambda: set(sessions().values()) == {0}, what="IDLE connections closed")
    except AssertionError:
        print(push_processes.logs())
        raise
    finally:
        private.db.dispose()
