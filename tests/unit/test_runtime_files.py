"""Production runtime wiring without peers (issue 7): the Celery app mirrors the job registry, the deployment files
stay in step with the settings, and light commands do not import the heavy stack."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from email_service.config import Settings
from email_service.security.credentials import generate_key
from email_service.tasks.celery_app import celery_init_app, task_name, visibility_timeout
from email_service.tasks.registry import JOBS

ROOT = Path(__file__).resolve().parents[2]
#: Names .env.example sets for compose.yaml only (PostgreSQL passwords); the service never reads them.
COMPOSE_ONLY = {"POSTGRES_PASSWORD", "APP_DB_PASSWORD"}
#: Names .env.example sets for the migrations only (migration 0007's optional catalog change).
MIGRATION_ONLY = {"SEARCH_LEAKPROOF_OPERATORS"}


class RecordingEnv(Mapping[str, str]):
    """An environment that remembers every name the settings asked for."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values, self.asked = values, set[str]()

    def __getitem__(self, name: str) -> str:
        self.asked.add(name)
        return self.values[name]

    def get(self, name: str, default: Any = None) -> Any:
        self.asked.add(name)
        return self.values.get(name, default)

    def __contains__(self, name: object) -> bool:
        self.asked.add(str(name))
        return name in self.values

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values)


def _celery_settings(tmp_path: Path, **extra: str) -> Settings:
    env = {
        "EMAIL_SERVICE_DATA_DIR": str(tmp_path),
        "JOB_RUNNER": "celery",
        "CELERY_BROKER_URL": "redis://127.0.0.1:6379/13",
        **extra,
    }
    return Settings.from_env(env)


def test_every_job_kind_is_a_celery_task_acked_late_with_its_limits(tmp_path: Path) -> None:
    app = celery_init_app(_celery_settings(tmp_path))
    visibility = app.conf.broker_transport_options["visibility_timeout"]
    assert app.conf.task_acks_late and app.conf.task_reject_on_worker_lost
    assert app.conf.worker_prefetch_multiplier == 1
    for spec in JOBS.values():
        task = app.tasks[task_name(spec.name)]
        assert task.acks_late and task.reject_on_worker_lost
        assert (task.soft_time_limit, task.time_limit) == (spec.soft_time_limit, spec.time_limit)
        assert visibility > task.time_limit  # a running job is never handed to a second worker
    assert visibility == visibility_timeout(_celery_settings(tmp_path))


def test_a_short_visibility_timeout_caps_the_time_limits_below_it(tmp_path: Path) -> None:
    app = celery_init_app(_celery_settings(tmp_path, CELERY_VISIBILITY_TIMEOUT="60"))
    assert app.conf.broker_transport_options["visibility_timeout"] == 60
    for spec in JOBS.values():
        task = app.tasks[task_name(spec.name)]
        assert task.soft_time_limit < task.time_limit < 60


def test_celery_needs_a_broker(tmp_path: Path) -> None:
    from email_service.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="CELERY_BROKER_URL"):
        Settings.from_env({"EMAIL_SERVICE_DATA_DIR": str(tmp_path), "JOB_RUNNER": "celery"})
    production = {
        "EMAIL_SERVICE_ENV": "production",
        "EMAIL_SERVICE_DATA_DIR": str(tmp_path),
        "JWT_SECRET_KEY": "k" * 40,
        "CREDENTIAL_ENCRYPTION_KEYS": generate_key(),
        "CORS_ORIGINS": "https://mail.example.com",
    }
    with pytest.raises(ConfigurationError, match="CELERY_BROKER_URL"):
        Settings.from_env(production)  # production runs jobs on Celery
    settings = Settings.from_env({**production, "CELERY_BROKER_URL": "redis://redis:6379/1"})
    assert settings.uses_celery and settings.log_format == "json"


def _env_example_names() -> set[str]:
    text = (ROOT / ".env.example").read_text()
    return {match.group(1) for match in re.finditer(r"^#?([A-Z][A-Z0-9_]*)=", text, re.MULTILINE)}


def _names_settings_read(tmp_path: Path) -> set[str]:
    asked: set[str] = set()
    for mode in ({"EMAIL_SERVICE_ENV": "development"}, {"EMAIL_SERVICE_ENV": "production"}, {"FLASK_ENV": "x"}):
        values = {
            **mode,
            "EMAIL_SERVICE_DATA_DIR": str(tmp_path),
            "JWT_SECRET_KEY": "k" * 40,
            "CREDENTIAL_ENCRYPTION_KEYS": generate_key(),
            "CORS_ORIGINS": "https://mail.example.com",
            "CELERY_BROKER_URL": "redis://redis:6379/1",
            "METRICS_TOKEN": "m" * 20,
            "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
        }
        env = RecordingEnv(values)
        Settings.from_env(env)
        asked |= env.asked
    return asked


def test_env_example_lists_every_setting_and_nothing_else(tmp_path: Path) -> None:
    documented = _env_example_names() - COMPOSE_ONLY - MIGRATION_ONLY
    read = _names_settings_read(tmp_path)
    assert read - documented == set(), "settings missing from .env.example"
    assert documented - read == set(), ".env.example names that Settings never reads"


def test_compose_runs_api_worker_beat_push_postgres_redis_from_one_image() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    assert {"api", "worker", "beat", "push", "postgres", "redis"} <= set(services)
    for name, command in (
        ("api", "serve"),
        ("worker", "worker"),
        ("beat", "beat"),
        ("push", "push"),
        ("migrate", "db"),
    ):
        service = services[name]
        assert service["command"][:2] == ["email-service", command]
        assert service["build"] == "." and service["env_file"] == [".env"]
        assert service["environment"]["EMAIL_SERVICE_ENV"] == "production"
        assert service["environment"]["JOB_RUNNER"] == "celery"
    assert services["api"]["ports"] == ["5000:5000"]
    for name in ("api", "worker", "beat", "push"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    for name in ("postgres", "redis"):
        assert services[name]["healthcheck"]["test"]
    referenced = set(re.findall(r"\$\{([A-Z_]+)", (ROOT / "compose.yaml").read_text()))
    assert referenced <= _env_example_names()


def test_dockerfile_is_multi_stage_locked_non_root_with_a_health_check() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", dockerfile, re.MULTILINE)) >= 2
    assert "uv sync --frozen --no-dev" in dockerfile
    assert re.search(r"^USER 10001$", dockerfile, re.MULTILINE)
    assert re.search(r"^HEALTHCHECK .*\n?.*/health", dockerfile, re.MULTILINE)
    assert re.search(r"apt-get install .*\blibmagic1\b", dockerfile)  # python-magic loads it when the app starts


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["token", "--tenant", "550e8400-e29b-41d4-a716-446655440000", "--user", "6ba7b810-9dad-11d1-80b4-00c04fd430c8"],
    ],
)
def test_light_commands_do_not_load_the_database_web_or_job_stack(argv: list[str], tmp_path: Path) -> None:
    code = (
        "import sys\nfrom email_service.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        "heavy = ('sqlalchemy', 'alembic', 'flask', 'apiflask', 'celery', 'structlog', 'prometheus_client', 'boto3',"
        " 'magic')\n"
        "print('LOADED', sorted(name for name in heavy if name in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, *argv],
        env={"EMAIL_SERVICE_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "LOADED []" in result.stdout
