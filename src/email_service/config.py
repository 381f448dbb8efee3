"""Typed settings, loaded and validated once at start from the environment (DESIGN.md section 4).

Two modes, same code:

* **Embedded default** (nothing set): SQLite and blobs in the data folder (``EMAIL_SERVICE_DATA_DIR``, default
  ``./instance``), in-memory rate limits, in-process jobs, trusted-header auth on, development secrets generated once
  and kept in ``<data dir>/secrets.json`` with mode 0600.
* **Production** (``FLASK_ENV=production`` or ``EMAIL_SERVICE_ENV=production``): refuses to start with a missing or
  default ``JWT_SECRET_KEY`` or ``CREDENTIAL_ENCRYPTION_KEYS``, with ``CORS_ORIGINS`` containing ``*``, and keeps
  header auth off unless ``AUTH_TRUST_HEADERS=true`` is set explicitly.  The error names the setting.

Environment names follow the seeds (000, 001, 004): ``DATABASE_URL``, ``REDIS_URL``, ``JWT_SECRET_KEY``,
``JWT_ALGORITHM``, ``JWT_EXPIRATION_HOURS``, ``CORS_ORIGINS``, ``FLASK_ENV``, ``CELERY_BROKER_URL``,
``BLOB_STORAGE_PATH``, ``MAX_ATTACHMENT_SIZE``, ``MAX_ATTACHMENTS_PER_MESSAGE``, ``ALLOWED_MIME_TYPES``,
``VIRUS_SCAN_ENABLED``, ``VIRUS_SCAN_TIMEOUT``.  The production runtime (issue 7) adds ``JOB_RUNNER`` (celery by
default in production, which then needs ``CELERY_BROKER_URL``), ``WEB_CONCURRENCY``, ``LOG_FORMAT``,
``METRICS_TOKEN`` and others; ``.env.example`` lists every setting with its default and meaning, and a test keeps
it in step with :meth:`Settings.from_env`.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from email_service.errors import ConfigurationError
from email_service.fs import create_private_file, private_dir

#: Secrets that ship in documentation and must never be accepted in production (seed 001 default included).
KNOWN_DEFAULT_SECRETS = frozenset(
    {"", "your-secret-key-change-in-production", "your-secret-key-here", "changeme", "secret", "dev"}
)
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_JWT_ALGORITHMS = {"HS256", "HS384", "HS512"}
_LOG_FORMATS = ("json", "console")
_JOB_RUNNERS = ("inprocess", "celery")
#: Types an upload may have (sniffed from its bytes by libmagic), unless ``ALLOWED_MIME_TYPES`` says otherwise:
#: documents, images, text, calendars, audio/video and mail; not executables, scripts or archives (seed 004).
#: ``type/*`` allows a whole top-level type.
DEFAULT_ALLOWED_MIME_TYPES = (
    "text/plain,text/csv,text/calendar,text/html,application/pdf,application/rtf,text/rtf,"
    "image/jpeg,image/png,image/gif,image/webp,image/bmp,image/tiff,image/heic,image/avif,"
    "application/msword,application/vnd.ms-excel,application/vnd.ms-powerpoint,"
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document,"
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet,"
    "application/vnd.openxmlformats-officedocument.presentationml.presentation,"
    "application/vnd.oasis.opendocument.text,application/vnd.oasis.opendocument.spreadsheet,"
    "application/vnd.oasis.opendocument.presentation,audio/mpeg,audio/ogg,audio/x-wav,video/mp4,video/quicktime,"
    "message/rfc822"
)
BLOB_STORAGE_TYPES = ("filesystem", "s3")
#: Browser origins allowed by default outside production: the usual local dev servers (Create React App / Next.js
#: 3000, Vite 5173, webpack / Vue CLI 8080, Angular 4200), by name and by address.  Production is unchanged: the
#: origins ``CORS_ORIGINS`` lists, seed 000's ``http://localhost:3000`` when it is unset.
DEV_CORS_ORIGINS = ",".join(
    f"http://{host}:{port}" for port in (3000, 5173, 8080, 4200) for host in ("localhost", "127.0.0.1")
)


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigurationError(f"{name} must be true or false, got {raw!r}")


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigurationError(f"{name} must be at least {minimum}, got {value}")
    return value


def _optional_int(env: Mapping[str, str], name: str, *, minimum: int) -> int | None:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return None
    return _int(env, name, minimum, minimum=minimum)


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = (env.get(name) or default).strip().lower()
    if value not in choices:
        raise ConfigurationError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _list(env: Mapping[str, str], name: str, default: str) -> tuple[str, ...]:
    raw = env.get(name, default)
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def _secret_repr(value: str | tuple[str, ...]) -> str:
    return "'***'" if value else "''"


@dataclass(frozen=True)
class Settings:
    """All settings of one process.  Build with :meth:`from_env`; secrets are masked in ``repr``."""

    environment: str = "development"
    data_dir: Path = Path("instance")
    database_url: str = ""
    database_migration_url: str = ""
    redis_url: str | None = None
    celery_broker_url: str | None = None
    jwt_secret_key: str = field(default="", repr=False)
    jwt_algorithm: str = "HS256"
    jwt_expiration_hours: int = 24
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    credential_keys: tuple[str, ...] = field(default=(), repr=False)
    cors_origins: tuple[str, ...] = ("http://localhost:3000",)
    auth_trust_headers: bool = True
    rate_limit: str = "50 per minute"
    mail_ca_bundle: str | None = None
    mail_host_allowlist: tuple[str, ...] = ()
    allow_private_mail_hosts: bool = True
    mail_timeout_seconds: int = 30
    blob_storage_path: Path = Path("instance/blobs")
    blob_storage_type: str = "filesystem"
    s3_bucket: str | None = None
    s3_endpoint_url: str | None = None
    s3_prefix: str = ""
    blob_gc_grace_seconds: int = 3600
    max_attachment_size: int = 25 * 1024 * 1024
    max_attachments_per_message: int = 20
    allowed_mime_types: tuple[str, ...] = tuple(DEFAULT_ALLOWED_MIME_TYPES.split(","))
    virus_scan_enabled: bool = False
    virus_scan_timeout: int = 30
    clamd_socket: str | None = None
    clamd_host: str | None = None
    clamd_port: int = 3310
    sync_batch_size: int = 200
    job_workers: int = 2
    scheduler_enabled: bool = True
    scheduler_tick_seconds: int = 15
    push_max_connections: int = 100
    push_in_process: bool = True
    push_lease_seconds: int = 60
    push_idle_renew_seconds: int = 25 * 60
    auto_upgrade_db: bool = True
    log_level: str = "INFO"
    log_format: str = "console"
    job_runner: str = "inprocess"
    celery_result_backend: str | None = None
    celery_visibility_timeout: int | None = None
    web_concurrency: int = 2
    web_threads: int = 8
    metrics_token: str | None = field(default=None, repr=False)
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = None
    prometheus_multiproc_dir: Path | None = None
    sync_requeue_after_seconds: int = 900
    sync_stalled_after_seconds: int = 120
    send_undo_seconds: int = 5
    send_deadline_seconds: int = 86400
    change_log_max_age_seconds: int = 30 * 24 * 3600
    change_log_max_entries: int = 100_000
    change_log_prune_seconds: int = 3600
    events_heartbeat_seconds: int = 15
    events_max_streams: int = 64
    webhook_max_attempts: int = 8
    webhook_retry_base_seconds: int = 10
    webhook_disable_after_failures: int = 50
    webhook_timeout_seconds: int = 10
    webhook_host_allowlist: tuple[str, ...] = ()
    allow_private_webhook_hosts: bool = True

    @property
    def is_production(self) -> bool:
        """True in production mode (``FLASK_ENV`` or ``EMAIL_SERVICE_ENV`` is ``production``)."""
        return self.environment == "production"

    @property
    def uses_celery(self) -> bool:
        """True when jobs go to Celery workers (``JOB_RUNNER=celery``; the default in production)."""
        return self.job_runner == "celery"

    @property
    def is_postgres(self) -> bool:
        """True when the database is PostgreSQL (RLS, advisory locks and tenant settings apply)."""
        return self.database_url.startswith(("postgresql", "postgres"))

    def __repr__(self) -> str:
        return (
            f"Settings(environment={self.environment!r}, database_url={_mask_url(self.database_url)!r}, "
            f"jwt_secret_key={_secret_repr(self.jwt_secret_key)}, "
            f"credential_keys={_secret_repr(self.credential_keys)}, cors_origins={self.cors_origins!r})"
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read and validate settings from ``environ`` (default ``os.environ``).

        Raises:
            ConfigurationError: a value is malformed, or unsafe in production; the message names the setting.
        """
        env: Mapping[str, str] = os.environ if environ is None else environ
        mode = (env.get("EMAIL_SERVICE_ENV") or env.get("FLASK_ENV") or "development").strip().lower()
        production = mode == "production"
        data_dir = Path(env.get("EMAIL_SERVICE_DATA_DIR") or "instance").expanduser().resolve()
        database_url = env.get("DATABASE_URL") or f"sqlite:///{data_dir / 'email_service.db'}"
        jwt_secret, credential_keys = _secrets(env, data_dir, production)
        algorithm = env.get("JWT_ALGORITHM", "HS256").strip().upper()
        if algorithm not in _JWT_ALGORITHMS:
            raise ConfigurationError(f"JWT_ALGORITHM must be one of {sorted(_JWT_ALGORITHMS)}, got {algorithm!r}")
        settings = cls(
            environment="production" if production else mode,
            data_dir=data_dir,
            database_url=_normalise_db_url(database_url),
            database_migration_url=_normalise_db_url(env.get("DATABASE_MIGRATION_URL") or database_url),
            redis_url=env.get("REDIS_URL") or None,
            celery_broker_url=env.get("CELERY_BROKER_URL") or None,
            jwt_secret_key=jwt_secret,
            jwt_algorithm=algorithm,
            jwt_expiration_hours=_int(env, "JWT_EXPIRATION_HOURS", 24, minimum=1),
            jwt_issuer=env.get("JWT_ISSUER") or None,
            jwt_audience=env.get("JWT_AUDIENCE") or None,
            credential_keys=credential_keys,
            cors_origins=_list(env, "CORS_ORIGINS", "http://localhost:3000" if production else DEV_CORS_ORIGINS),
            auth_trust_headers=_flag(env, "AUTH_TRUST_HEADERS", not production),
            rate_limit=env.get("RATE_LIMIT", "50 per minute"),
            mail_ca_bundle=env.get("MAIL_CA_BUNDLE") or None,
            mail_host_allowlist=_list(env, "MAIL_HOST_ALLOWLIST", ""),
            allow_private_mail_hosts=_flag(env, "ALLOW_PRIVATE_MAIL_HOSTS", not production),
            mail_timeout_seconds=_int(env, "MAIL_TIMEOUT_SECONDS", 30, minimum=1),
            blob_storage_path=Path(env.get("BLOB_STORAGE_PATH") or data_dir / "blobs"),
            blob_storage_type=_choice(env, "BLOB_STORAGE_TYPE", "filesystem", BLOB_STORAGE_TYPES),
            s3_bucket=env.get("S3_BUCKET") or None,
            s3_endpoint_url=env.get("S3_ENDPOINT_URL") or None,
            s3_prefix=env.get("S3_PREFIX", ""),
            blob_gc_grace_seconds=_int(env, "BLOB_GC_GRACE_SECONDS", 3600, minimum=60),
            **_attachment_settings(env),
            sync_batch_size=_int(env, "SYNC_BATCH_SIZE", 200, minimum=1),
            job_workers=_int(env, "JOB_WORKERS", 2, minimum=1),
            scheduler_enabled=_flag(env, "SCHEDULER_ENABLED", True),
            scheduler_tick_seconds=_int(env, "SCHEDULER_TICK_SECONDS", 15, minimum=1),
            auto_upgrade_db=_flag(env, "AUTO_UPGRADE_DB", not production),
            log_level=env.get("LOG_LEVEL", "INFO").upper(),
            **_runtime_settings(env, production),
            **_push_settings(env, production),
            **_send_settings(env),
            **_change_settings(env, production),
        )
        if settings.uses_celery and not settings.celery_broker_url:
            raise ConfigurationError("CELERY_BROKER_URL must be set when jobs run on Celery (JOB_RUNNER=celery)")
        _check_storage_and_scanning(settings)
        if production:
            _check_production(settings, env)
        return settings


def _attachment_settings(env: Mapping[str, str]) -> dict[str, Any]:
    """The settings of attachments (seed 004, issue 10): limits, allowed types and virus scanning."""
    return dict(
        max_attachment_size=_int(env, "MAX_ATTACHMENT_SIZE", 25 * 1024 * 1024, minimum=1),
        max_attachments_per_message=_int(env, "MAX_ATTACHMENTS_PER_MESSAGE", 20, minimum=1),
        allowed_mime_types=tuple(t.lower() for t in _list(env, "ALLOWED_MIME_TYPES", DEFAULT_ALLOWED_MIME_TYPES)),
        virus_scan_enabled=_flag(env, "VIRUS_SCAN_ENABLED", False),
        virus_scan_timeout=_int(env, "VIRUS_SCAN_TIMEOUT", 30, minimum=1),
        clamd_socket=env.get("CLAMD_SOCKET") or None,
        clamd_host=env.get("CLAMD_HOST") or None,
        clamd_port=_int(env, "CLAMD_PORT", 3310, minimum=1),
    )


def _runtime_settings(env: Mapping[str, str], production: bool) -> dict[str, Any]:
    """The settings of the production runtime (issue 7): jobs, serving, logs and metrics."""
    multiproc = env.get("PROMETHEUS_MULTIPROC_DIR")
    return dict(
        log_format=_choice(env, "LOG_FORMAT", "json" if production else "console", _LOG_FORMATS),
        job_runner=_choice(env, "JOB_RUNNER", "celery" if production else "inprocess", _JOB_RUNNERS),
        celery_result_backend=env.get("CELERY_RESULT_BACKEND") or None,
        celery_visibility_timeout=_optional_int(env, "CELERY_VISIBILITY_TIMEOUT", minimum=10),
        web_concurrency=_int(env, "WEB_CONCURRENCY", 2, minimum=1),
        web_threads=_int(env, "WEB_THREADS", 8, minimum=1),
        metrics_token=env.get("METRICS_TOKEN") or None,
        metrics_host=env.get("METRICS_HOST") or "127.0.0.1",
        metrics_port=_optional_int(env, "METRICS_PORT", minimum=1),
        prometheus_multiproc_dir=Path(multiproc) if multiproc else None,
        sync_requeue_after_seconds=_int(env, "SYNC_REQUEUE_AFTER_SECONDS", 900, minimum=10),
        sync_stalled_after_seconds=_int(env, "SYNC_STALLED_AFTER_SECONDS", 120, minimum=10),
    )


def _push_settings(env: Mapping[str, str], production: bool) -> dict[str, Any]:
    """The settings of IDLE push (issue 8): watchers per process, where they run, leases, IDLE renewal."""
    renew = _int(env, "PUSH_IDLE_RENEW_SECONDS", 25 * 60, minimum=1)
    if renew >= 29 * 60:
        raise ConfigurationError(f"PUSH_IDLE_RENEW_SECONDS must be below 1740 (29 minutes, RFC 2177), got {renew}")
    return dict(
        push_max_connections=_int(env, "PUSH_MAX_CONNECTIONS", 100, minimum=0),
        push_in_process=_flag(env, "PUSH_IN_PROCESS", not production),
        push_lease_seconds=_int(env, "PUSH_LEASE_SECONDS", 60, minimum=2),
        push_idle_renew_seconds=renew,
    )


def _send_settings(env: Mapping[str, str]) -> dict[str, Any]:
    """The settings of sending (issue 9): the undo window before every send and the retry deadline, in seconds."""
    return dict(
        send_undo_seconds=_int(env, "SEND_UNDO_SECONDS", 5, minimum=0),
        send_deadline_seconds=_int(env, "SEND_DEADLINE_SECONDS", 86400, minimum=1),
    )


def _change_settings(env: Mapping[str, str], production: bool) -> dict[str, Any]:
    """The settings of the change log, Server-Sent Events and webhooks (issue 12)."""
    return dict(
        change_log_max_age_seconds=_int(env, "CHANGE_LOG_MAX_AGE_SECONDS", 30 * 24 * 3600, minimum=60),
        change_log_max_entries=_int(env, "CHANGE_LOG_MAX_ENTRIES", 100_000, minimum=10),
        change_log_prune_seconds=_int(env, "CHANGE_LOG_PRUNE_SECONDS", 3600, minimum=1),
        events_heartbeat_seconds=_int(env, "EVENTS_HEARTBEAT_SECONDS", 15, minimum=1),
        events_max_streams=_int(env, "EVENTS_MAX_STREAMS", 64, minimum=1),
        webhook_max_attempts=_int(env, "WEBHOOK_MAX_ATTEMPTS", 8, minimum=1),
        webhook_retry_base_seconds=_int(env, "WEBHOOK_RETRY_BASE_SECONDS", 10, minimum=1),
        webhook_disable_after_failures=_int(env, "WEBHOOK_DISABLE_AFTER_FAILURES", 50, minimum=1),
        webhook_timeout_seconds=_int(env, "WEBHOOK_TIMEOUT_SECONDS", 10, minimum=1),
        webhook_host_allowlist=_list(env, "WEBHOOK_HOST_ALLOWLIST", ""),
        allow_private_webhook_hosts=_flag(env, "ALLOW_PRIVATE_WEBHOOK_HOSTS", not production),
    )


def _check_storage_and_scanning(settings: Settings) -> None:
    if settings.blob_storage_type == "s3" and not settings.s3_bucket:
        raise ConfigurationError("S3_BUCKET must be set when BLOB_STORAGE_TYPE is s3")
    if settings.virus_scan_enabled and not (settings.clamd_socket or settings.clamd_host):
        raise ConfigurationError("CLAMD_SOCKET or CLAMD_HOST must be set when VIRUS_SCAN_ENABLED is true")


def _check_production(settings: Settings, env: Mapping[str, str]) -> None:
    if settings.jwt_secret_key in KNOWN_DEFAULT_SECRETS or len(settings.jwt_secret_key) < 32:
        raise ConfigurationError("JWT_SECRET_KEY must be set to a random value of at least 32 characters in production")
    if not settings.credential_keys:
        raise ConfigurationError("CREDENTIAL_ENCRYPTION_KEYS must be set in production")
    if "*" in settings.cors_origins:
        raise ConfigurationError("CORS_ORIGINS must list exact origins in production, not '*'")
    if settings.auth_trust_headers and env.get("AUTH_TRUST_HEADERS", "").strip().lower() != "true":
        raise ConfigurationError("AUTH_TRUST_HEADERS must be explicitly 'true' to use header auth in production")
    if settings.metrics_token is not None and len(settings.metrics_token) < 16:
        raise ConfigurationError("METRICS_TOKEN must be at least 16 characters in production")


def _secrets(env: Mapping[str, str], data_dir: Path, production: bool) -> tuple[str, tuple[str, ...]]:
    """JWT secret and credential keys: from the environment, else (development only) the generated file."""
    jwt_secret = env.get("JWT_SECRET_KEY", "")
    keys = _list(env, "CREDENTIAL_ENCRYPTION_KEYS", "")
    for key in keys:
        _check_fernet_key(key)
    if production or (jwt_secret and keys):
        return jwt_secret, keys
    stored = load_or_create_dev_secrets(data_dir)
    return jwt_secret or stored["jwt_secret_key"], keys or (stored["credential_key"],)


def _check_fernet_key(key: str) -> None:
    try:
        raw = base64.urlsafe_b64decode(key.encode())
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise ConfigurationError(
            "CREDENTIAL_ENCRYPTION_KEYS must be comma-separated Fernet keys (32 url-safe base64 bytes each)"
        )


def load_or_create_dev_secrets(data_dir: Path) -> dict[str, str]:
    """Development secrets kept in ``<data_dir>/secrets.json`` (mode 0600), generated on first use.

    Returns ``{"jwt_secret_key": str, "credential_key": str (Fernet key)}``.
    """
    path = data_dir / "secrets.json"
    if path.exists():
        stored: dict[str, str] = json.loads(path.read_text())
        return stored
    private_dir(data_dir)
    created = {
        "jwt_secret_key": secrets.token_urlsafe(48),
        "credential_key": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
    }
    # Write a temporary file, then link it into place: a process starting at the same moment either wins the
    # link or reads the winner's complete file, never a half-written one.
    temporary = data_dir / f".secrets-{os.getpid()}-{secrets.token_hex(4)}.json"
    with os.fdopen(create_private_file(temporary), "w") as handle:
        json.dump(created, handle)
    try:
        os.link(temporary, path)
    except FileExistsError:
        created = json.loads(path.read_text())
    finally:
        temporary.unlink()
    return created


def _normalise_db_url(url: str) -> str:
    """Use psycopg 3 for PostgreSQL URLs given in the common ``postgresql://`` / ``postgres://`` forms."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _mask_url(url: str) -> str:
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"
