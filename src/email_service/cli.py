"""The ``email-service`` command.

email-service serve [--host H] [--port P] [--threads N]   the API (gunicorn in production, waitress otherwise)
email-service worker [--concurrency N] [--pool P]         a Celery worker (production job runner)
email-service beat                                        the periodic scheduler for Celery (leader lease)
email-service push                                        IDLE watchers (RFC 2177) under per-account leases
email-service db upgrade                                  Alembic migrations to head
email-service token --tenant T --user U [--role admin] [--hours N]
email-service sync ACCOUNT_ID                             one sync now, in the foreground: progress on stderr,
                                                          outcome as JSON on stdout
email-service rotate-key                                  re-encrypt credentials and webhook secrets (primary key)
email-service generate-key                                print a new CREDENTIAL_ENCRYPTION_KEYS entry
email-service gc-blobs [--grace-seconds N] [--dry-run]    remove blobs no row references; prints a JSON report

Start-up is kept short (issue 7): this module imports only :mod:`argparse` at load time; each command imports what
it needs, and only the commands that use the database schema (serve, worker, push, db upgrade, sync, rotate-key,
gc-blobs) check it with Alembic.  ``bench/startup.py`` measures ``--help`` and ``token``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from email_service.config import Settings
    from email_service.services.context import ServiceContext
    from email_service.sync.push_supervisor import PushSupervisor


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="email-service", description="Multi-tenant email backend")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the API (with the in-process job runner in the embedded default)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=5000)
    serve.add_argument("--threads", type=int, default=None, help="HTTP threads per process (default WEB_THREADS)")
    worker = commands.add_parser("worker", help="run a Celery worker (JOB_RUNNER=celery)")
    worker.add_argument("--concurrency", type=int, default=None, help="pool processes (default JOB_WORKERS)")
    worker.add_argument("--pool", default="prefork", choices=["prefork", "threads", "solo"])
    commands.add_parser("beat", help="run the periodic scheduler for Celery workers (one leader at a time)")
    commands.add_parser("push", help="watch accounts with IMAP IDLE and sync INBOX on new mail (production)")
    db = commands.add_parser("db", help="database schema")
    db.add_argument("action", choices=["upgrade"])
    token = commands.add_parser("token", help="mint a JWT for a tenant and user")
    token.add_argument("--tenant", required=True)
    token.add_argument("--user", required=True)
    token.add_argument("--role", default="user", choices=["user", "admin"])
    token.add_argument("--hours", type=float, default=None)
    sync = commands.add_parser(
        "sync", help="sync one account now, in the foreground (progress on stderr, outcome as JSON on stdout)"
    )
    sync.add_argument("account_id")
    commands.add_parser("rotate-key", aliases=["rotate-keys"], help="re-encrypt credentials under the primary key")
    commands.add_parser("generate-key", help="print a new credential encryption key")
    gc = commands.add_parser("gc-blobs", help="remove blobs no row references (after a grace period)")
    gc.add_argument("--grace-seconds", type=int, default=None, help="default: BLOB_GC_GRACE_SECONDS (3600)")
    gc.add_argument("--dry-run", action="store_true", help="count what would be removed, remove nothing")
    return parser


def _start(settings: Settings, *, multiprocess: bool = False) -> None:
    """Logging for a command that runs services; with ``multiprocess``, the Prometheus folder shared by the
    command's processes (set before anything imports prometheus_client)."""
    from email_service.observability.logs import configure_logging

    configure_logging(json_lines=settings.log_format == "json", level=settings.log_level)
    if multiprocess:
        import atexit
        import shutil
        import tempfile
        from pathlib import Path

        from email_service.observability.multiprocess import prepare_multiprocess_dir

        folder = settings.prometheus_multiproc_dir
        if folder is None:  # a private folder for this process group, removed when it ends
            folder = Path(tempfile.mkdtemp(prefix="email-service-metrics-"))
            atexit.register(shutil.rmtree, folder, ignore_errors=True)
        prepare_multiprocess_dir(folder)


def _prepare_database(settings: Settings) -> None:
    if settings.auto_upgrade_db:
        from email_service.db import upgrade_database

        upgrade_database(settings.database_migration_url, app_url=settings.database_url)


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    import errno
    import logging

    gunicorn = settings.is_production
    _start(settings, multiprocess=gunicorn)
    from email_service.fs import restrict_dir
    from email_service.server import REUSE_PORT, listen, serve_gunicorn, serve_waitress

    _prepare_database(settings)
    restrict_dir(settings.data_dir)
    try:  # bind before anything else starts, so a taken port is one clear line, not a traceback
        sock = listen(args.host, args.port, reuse_port=gunicorn and REUSE_PORT)
    except OSError as exc:
        reason = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror or str(exc)
        print(f"email-service: cannot listen on {args.host}:{args.port}: {reason}", file=sys.stderr)
        return 1
    # Each open event stream holds a thread (api/events.py): EVENTS_MAX_STREAMS of them on top of the API's.
    threads = (args.threads or settings.web_threads) + settings.events_max_streams
    logging.getLogger("email_service").info(
        "email_service listening",
        extra={"url": f"http://{args.host}:{args.port}", "server": "gunicorn" if gunicorn else "waitress"},
    )
    if gunicorn:
        return serve_gunicorn(settings, lambda: _build_app(settings), sock, threads=threads)
    from email_service.api.uploads import MULTIPART_OVERHEAD
    from email_service.app import create_app
    from email_service.tasks.runtime import start_job_runtime

    runtime = start_job_runtime(settings, owns_all_runs=not settings.is_postgres)
    push = _push_supervisor(runtime.ctx) if settings.push_in_process and settings.push_max_connections else None
    try:
        # Uploads are streamed to the app; waitress refuses a larger body itself (413) before buffering it.
        max_body = settings.max_attachment_size + MULTIPART_OVERHEAD
        serve_waitress(create_app(context=runtime.ctx), sock, threads=threads, max_request_body_size=max_body)
    finally:
        if push is not None:
            push.stop()
        runtime.shutdown()
    return 0


def _build_app(settings: Settings) -> Any:
    """The app of one gunicorn worker, with its own context and job queue (built after the fork)."""
    from email_service.app import create_app
    from email_service.tasks.runtime import start_job_runtime

    return create_app(context=start_job_runtime(settings).ctx)


def _worker(settings: Settings, args: argparse.Namespace) -> int:
    _start(settings, multiprocess=True)
    from email_service.tasks.processes import run_worker

    _prepare_database(settings)
    run_worker(settings, concurrency=args.concurrency or settings.job_workers, pool=args.pool)
    return 0


def _beat(settings: Settings) -> int:
    _start(settings)
    from email_service.tasks.processes import run_beat

    run_beat(settings)
    return 0


def _push_supervisor(ctx: ServiceContext) -> PushSupervisor:
    """The started IDLE push supervisor of this process (:mod:`email_service.sync.push_supervisor`)."""
    from email_service.sync.push_supervisor import push_supervisor

    supervisor = push_supervisor(ctx)
    supervisor.start()
    return supervisor


def _push(settings: Settings) -> int:
    """IDLE watchers under leases shared with the other ``push`` processes, until SIGTERM or Ctrl-C.  The syncs they
    trigger go to the job runtime of the settings (Celery workers in production, this process's in-process runner
    otherwise); periodic work is left to ``beat`` (or ``serve``)."""
    import logging
    import signal
    import threading

    _start(settings)
    from email_service.tasks.runtime import start_job_runtime

    _prepare_database(settings)
    runtime = start_job_runtime(settings, scheduler=False)
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    supervisor = _push_supervisor(runtime.ctx)
    logging.getLogger("email_service").info(
        "push started", extra={"max_connections": settings.push_max_connections, "holder": supervisor.holder}
    )
    try:
        stopping.wait()
    finally:
        supervisor.stop()
        runtime.shutdown()
    return 0


def _token(settings: Settings, args: argparse.Namespace) -> int:
    from email_service.security.tokens import TokenConfig, create_jwt_token

    config = TokenConfig.from_settings(settings)
    print(
        create_jwt_token(config, tenant_id=args.tenant, user_id=args.user, role=args.role, expires_in_hours=args.hours)
    )
    return 0


def _sync(settings: Settings, account_id: str) -> int:
    import json
    import uuid

    from sqlalchemy import select

    from email_service.cli_progress import SyncProgressDisplay
    from email_service.errors import NotFound
    from email_service.models import EmailAccount, SyncRun, Tenant
    from email_service.services import sync_runs
    from email_service.services.context import build_context
    from email_service.sync.account import sync_account

    _start(settings)
    _prepare_database(settings)
    ctx = build_context(settings)
    account_uuid = uuid.UUID(account_id)
    with ctx.db.system_session() as session:
        tenants = list(session.execute(select(Tenant.tenant_id)).scalars())
    for tenant_id in tenants:
        with ctx.db.tenant_session(tenant_id) as session:
            account = session.get(EmailAccount, account_uuid)
            if account is not None and account.deleted_at is None:
                break
    else:
        raise NotFound("Account not found")
    run, _created = sync_runs.enqueue_sync(
        ctx, tenant_id=tenant_id, account_id=account_uuid, trigger="cli", principal=None
    )
    with SyncProgressDisplay() as display:
        state = sync_account(ctx, tenant_id=tenant_id, account_id=account_uuid, run_id=run.id, on_progress=display)
    with ctx.db.tenant_session(tenant_id) as session:
        done = session.get(SyncRun, run.id)
        assert done is not None
        outcome = {
            "syncId": str(done.id),
            "state": done.state,
            "foldersSynced": done.folders_synced,
            "messagesAdded": done.messages_added,
            "messagesUpdated": done.messages_updated,
            "messagesRemoved": done.messages_removed,
            "foldersFailed": done.folders_failed,
            "errorKind": done.error_kind,
            "error": done.error,
        }
    print(json.dumps(outcome))
    return 0 if state == "succeeded" else 1


def _gc_blobs(settings: Settings, args: argparse.Namespace) -> int:
    import json
    from dataclasses import asdict

    from email_service.services.blob_gc import collect_blobs
    from email_service.services.context import build_context

    _prepare_database(settings)
    report = collect_blobs(build_context(settings), grace_seconds=args.grace_seconds, dry_run=args.dry_run)
    print(json.dumps({"dryRun": args.dry_run, **{_camel(k): v for k, v in asdict(report).items()}}))
    return 0


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _dispatch(args: argparse.Namespace) -> int:
    from email_service.config import Settings

    settings = Settings.from_env()
    if args.command == "serve":
        return _serve(settings, args)
    if args.command == "worker":
        return _worker(settings, args)
    if args.command == "beat":
        return _beat(settings)
    if args.command == "push":
        return _push(settings)
    if args.command == "token":
        return _token(settings, args)
    if args.command == "sync":
        return _sync(settings, args.account_id)
    _start(settings)
    if args.command == "db":
        from email_service.db import upgrade_database

        upgrade_database(settings.database_migration_url, app_url=settings.database_url)
        print("database is at the latest revision")
        return 0
    if args.command == "gc-blobs":
        return _gc_blobs(settings, args)
    if args.command in ("rotate-key", "rotate-keys"):
        return _rotate_key(settings)
    return 1


def _rotate_key(settings: Settings) -> int:
    """Re-encrypt the credentials and webhook secrets under the primary key; 1 when some could not be decrypted
    (each named on standard error, by kind, tenant and owner id: they keep the key they were sealed with)."""
    from email_service.services.context import build_context
    from email_service.services.key_rotation import rotate_secrets

    _prepare_database(settings)
    rotation = rotate_secrets(build_context(settings))
    print(f"re-encrypted {rotation.rotated} secret(s) (mail credentials and webhook secrets)")
    for left in rotation.unrotated:
        print(
            f"email-service: {left.kind} of {left.owner_id} (tenant {left.tenant_id}) left as it was: {left.reason}",
            file=sys.stderr,
        )
    if rotation.unrotated:
        print(
            f"email-service: {len(rotation.unrotated)} secret(s) could not be decrypted; keep their key in "
            "CREDENTIAL_ENCRYPTION_KEYS, or set them again (a mail password by PUT on the account, a webhook by "
            "deleting and creating it)",
            file=sys.stderr,
        )
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``email-service`` console script; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.command == "generate-key":
        from email_service.security.credentials import generate_key

        print(generate_key())
        return 0
    from email_service.errors import EmailServiceError

    try:
        return _dispatch(args)
    except EmailServiceError as exc:
        print(f"email-service: {exc.message}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"email-service: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
