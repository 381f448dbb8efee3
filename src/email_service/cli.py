"""The ``email-service`` command.

email-service serve [--host H] [--port P]     API + in-process job runner + periodic sync scheduler (+ IDLE push)
email-service push                            IDLE watchers (RFC 2177) for up to PUSH_MAX_CONNECTIONS accounts
email-service db upgrade                      Alembic migrations to head
email-service token --tenant T --user U [--role admin] [--hours N]
email-service sync ACCOUNT_ID                 one sync now, in the foreground; prints the outcome as JSON
email-service rotate-key                      re-encrypt every credential under the primary key
email-service generate-key                    print a new CREDENTIAL_ENCRYPTION_KEYS entry
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import signal
import sys
import threading
import uuid
from collections.abc import Sequence

from sqlalchemy import select

from email_service.config import Settings
from email_service.db import upgrade_database
from email_service.errors import EmailServiceError, NotFound
from email_service.fs import restrict_dir
from email_service.models import EmailAccount, SyncRun, Tenant
from email_service.security.credentials import generate_key
from email_service.security.tokens import create_jwt_token
from email_service.services import accounts, sync_runs
from email_service.services.context import ServiceContext, build_context
from email_service.sync.imap import sync_account
from email_service.sync.push_supervisor import push_supervisor
from email_service.tasks.runner import InProcessJobRunner


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="email-service", description="Multi-tenant email backend")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the API with the in-process job runner and scheduler")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=5000)
    serve.add_argument("--threads", type=int, default=8, help="HTTP worker threads")
    commands.add_parser("push", help="watch accounts with IMAP IDLE and sync INBOX on new mail (production)")
    db = commands.add_parser("db", help="database schema")
    db.add_argument("action", choices=["upgrade"])
    token = commands.add_parser("token", help="mint a JWT for a tenant and user")
    token.add_argument("--tenant", required=True)
    token.add_argument("--user", required=True)
    token.add_argument("--role", default="user", choices=["user", "admin"])
    token.add_argument("--hours", type=float, default=None)
    sync = commands.add_parser("sync", help="sync one account now, in the foreground")
    sync.add_argument("account_id")
    commands.add_parser("rotate-key", aliases=["rotate-keys"], help="re-encrypt credentials under the primary key")
    commands.add_parser("generate-key", help="print a new credential encryption key")
    return parser


def _prepare_database(settings: Settings) -> None:
    if settings.auto_upgrade_db:
        upgrade_database(settings.database_migration_url, app_url=settings.database_url)


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from waitress.server import create_server

    from email_service.app import create_app

    _prepare_database(settings)
    restrict_dir(settings.data_dir)
    runner = InProcessJobRunner(workers=settings.job_workers)
    ctx = build_context(settings, jobs=runner)
    runner.bind(ctx)
    app = create_app(context=ctx)
    try:  # bind before anything else starts, so a taken port is one clear line, not a traceback
        server = create_server(app, host=args.host, port=args.port, threads=args.threads, ident="email_service")
    except OSError as exc:
        reason = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror or str(exc)
        print(f"email-service: cannot listen on {args.host}:{args.port}: {reason}", file=sys.stderr)
        return 1
    if not settings.is_postgres:
        sync_runs.fail_interrupted_runs(ctx)
    if settings.scheduler_enabled:
        runner.start_scheduler(settings.scheduler_tick_seconds)
    push = push_supervisor(ctx) if settings.push_in_process and settings.push_max_connections else None
    if push is not None:
        push.start()
    logging.getLogger("email_service").info(
        "email_service listening on http://%s:%s (data: %s)", args.host, args.port, settings.data_dir
    )
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
        if push is not None:
            push.stop()
        runner.shutdown(wait=False)
    return 0


def _push(settings: Settings) -> int:
    """IDLE watchers under leases shared with other ``push`` processes, until SIGTERM or Ctrl-C.

    The syncs they trigger run on this process's in-process job runner.
    """
    _prepare_database(settings)
    runner = InProcessJobRunner(workers=settings.job_workers)
    ctx = build_context(settings, jobs=runner)
    runner.bind(ctx)
    supervisor = push_supervisor(ctx)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda _signum, _frame: stopping.set())
    supervisor.start()
    logging.getLogger("email_service").info(
        "email_service push: up to %d IDLE watchers (holder %s)", settings.push_max_connections, supervisor.holder
    )
    try:
        while not stopping.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        supervisor.stop()
        runner.shutdown(wait=False)
    return 0


def _find_tenant(ctx: ServiceContext, account_id: uuid.UUID) -> uuid.UUID:
    with ctx.db.system_session() as session:
        tenants = list(session.execute(select(Tenant.tenant_id)).scalars())
    for tenant_id in tenants:
        with ctx.db.tenant_session(tenant_id) as session:
            account = session.get(EmailAccount, account_id)
            if account is not None and account.deleted_at is None:
                return tenant_id
    raise NotFound("Account not found")


def _sync(settings: Settings, account_id: str) -> int:
    _prepare_database(settings)
    ctx = build_context(settings)
    account_uuid = uuid.UUID(account_id)
    tenant_id = _find_tenant(ctx, account_uuid)
    run, _created = sync_runs.enqueue_sync(
        ctx, tenant_id=tenant_id, account_id=account_uuid, trigger="cli", principal=None
    )
    state = sync_account(ctx, tenant_id=tenant_id, account_id=account_uuid, run_id=run.id)
    with ctx.db.tenant_session(tenant_id) as session:
        done = session.get(SyncRun, run.id)
        assert done is not None
        print(
            json.dumps(
                {
                    "syncId": str(done.id),
                    "state": done.state,
                    "foldersSynced": done.folders_synced,
                    "messagesAdded": done.messages_added,
                    "messagesUpdated": done.messages_updated,
                    "messagesRemoved": done.messages_removed,
                    "errorKind": done.error_kind,
                    "error": done.error,
                }
            )
        )
    return 0 if state == "succeeded" else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``email-service`` console script; returns the exit status."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)  # no "Context impl ..." lines on every start
    try:
        if args.command == "generate-key":
            print(generate_key())
            return 0
        settings = Settings.from_env()
        if args.command == "serve":
            return _serve(settings, args)
        if args.command == "push":
            return _push(settings)
        if args.command == "db":
            upgrade_database(settings.database_migration_url, app_url=settings.database_url)
            print("database is at the latest revision")
            return 0
        if args.command == "token":
            config = build_context(settings).tokens
            print(
                create_jwt_token(
                    config,
                    tenant_id=args.tenant,
                    user_id=args.user,
                    role=args.role,
                    expires_in_hours=args.hours,
                )
            )
            return 0
        if args.command == "sync":
            return _sync(settings, args.account_id)
        if args.command in ("rotate-key", "rotate-keys"):
            _prepare_database(settings)
            changed = accounts.rotate_credentials(build_context(settings))
            print(f"re-encrypted {changed} credential(s)")
            return 0
    except EmailServiceError as exc:
        print(f"email-service: {exc.message}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"email-service: {exc}", file=sys.stderr)
        return 2
    return 1


if __name__ == "__main__":
    sys.exit(main())
