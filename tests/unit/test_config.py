"""Settings: embedded defaults and the production refusals of DESIGN.md section 4 (issue 2 section 2)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from email_service.config import Settings
from email_service.errors import ConfigurationError
from email_service.security.credentials import generate_key

STRONG = "s" * 48


def prod_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    env = {
        "FLASK_ENV": "production",
        "EMAIL_SERVICE_DATA_DIR": str(tmp_path),
        "DATABASE_URL": "postgresql://app@db/email",
        "JWT_SECRET_KEY": STRONG,
        "CREDENTIAL_ENCRYPTION_KEYS": generate_key(),
        "CORS_ORIGINS": "https://mail.example.com",
        "CELERY_BROKER_URL": "redis://redis:6379/0",
    }
    env.update(overrides)
    return env


def test_embedded_default_needs_nothing_and_keeps_generated_secrets(tmp_path: Path) -> None:
    first = Settings.from_env({"EMAIL_SERVICE_DATA_DIR": str(tmp_path)})
    second = Settings.from_env({"EMAIL_SERVICE_DATA_DIR": str(tmp_path)})
    assert first.database_url == f"sqlite:///{tmp_path / 'email_service.db'}"
    assert first.auth_trust_headers is True
    assert first.redis_url is None
    assert first.jwt_secret_key == second.jwt_secret_key and len(first.jwt_secret_key) >= 32
    assert first.credential_keys == second.credential_keys
    mode = stat.S_IMODE((tmp_path / "secrets.json").stat().st_mode)
    assert mode == 0o600


def test_secrets_are_masked_in_repr(tmp_path: Path) -> None:
    settings = Settings.from_env(prod_env(tmp_path, DATABASE_URL="postgresql://app:hunter2@db/email"))
    text = repr(settings)
    assert STRONG not in text and "hunter2" not in text
    assert settings.database_url == "postgresql+psycopg://app:hunter2@db/email"


def test_production_with_good_settings_starts(tmp_path: Path) -> None:
    settings = Settings.from_env(prod_env(tmp_path))
    assert settings.is_production
    assert settings.auth_trust_headers is False
    assert settings.allow_private_mail_hosts is False
    assert not (tmp_path / "secrets.json").exists()


@pytest.mark.parametrize(
    ("overrides", "setting"),
    [
        ({"JWT_SECRET_KEY": ""}, "JWT_SECRET_KEY"),
        ({"JWT_SECRET_KEY": "your-secret-key-change-in-production"}, "JWT_SECRET_KEY"),
        ({"JWT_SECRET_KEY": "short"}, "JWT_SECRET_KEY"),
        ({"CREDENTIAL_ENCRYPTION_KEYS": ""}, "CREDENTIAL_ENCRYPTION_KEYS"),
        ({"CORS_ORIGINS": "*"}, "CORS_ORIGINS"),
        ({"CORS_ORIGINS": "https://a.example,*"}, "CORS_ORIGINS"),
        ({"AUTH_TRUST_HEADERS": "1"}, "AUTH_TRUST_HEADERS"),
        ({"JWT_ALGORITHM": "none"}, "JWT_ALGORITHM"),
        ({"JWT_EXPIRATION_HOURS": "soon"}, "JWT_EXPIRATION_HOURS"),
    ],
)
def test_production_refuses_unsafe_settings_and_names_them(
    tmp_path: Path, overrides: dict[str, str], setting: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env(prod_env(tmp_path, **overrides))
    assert setting in caught.value.message


def test_production_header_auth_only_when_explicitly_true(tmp_path: Path) -> None:
    assert Settings.from_env(prod_env(tmp_path, AUTH_TRUST_HEADERS="true")).auth_trust_headers is True


def test_emailservice_env_also_selects_production(tmp_path: Path) -> None:
    env = prod_env(tmp_path)
    env.pop("FLASK_ENV")
    env["EMAIL_SERVICE_ENV"] = "production"
    env["JWT_SECRET_KEY"] = ""
    with pytest.raises(ConfigurationError):
        Settings.from_env(env)


def test_malformed_credential_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="CREDENTIAL_ENCRYPTION_KEYS"):
        Settings.from_env({"EMAIL_SERVICE_DATA_DIR": str(tmp_path), "CREDENTIAL_ENCRYPTION_KEYS": "abc"})


def test_push_runs_in_serve_by_default_and_in_push_processes_in_production(tmp_path: Path) -> None:
    embedded = Settings.from_env({"EMAIL_SERVICE_DATA_DIR": str(tmp_path)})
    assert (embedded.push_in_process, embedded.push_max_connections) == (True, 100)
    assert embedded.push_idle_renew_seconds == 25 * 60 and embedded.push_lease_seconds == 60
    production = Settings.from_env(prod_env(tmp_path, PUSH_MAX_CONNECTIONS="500"))
    assert (production.push_in_process, production.push_max_connections) == (False, 500)


@pytest.mark.parametrize(
    ("name", "value"),
    [("PUSH_IDLE_RENEW_SECONDS", "1740"), ("PUSH_MAX_CONNECTIONS", "-1"), ("PUSH_LEASE_SECONDS", "1")],
)
def test_push_settings_outside_their_range_are_refused_by_name(tmp_path: Path, name: str, value: str) -> None:
    with pytest.raises(ConfigurationError, match=name):
        Settings.from_env({"EMAIL_SERVICE_DATA_DIR": str(tmp_path), name: value})
