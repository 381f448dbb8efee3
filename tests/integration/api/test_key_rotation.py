"""``email-service rotate-key``: every secret sealed by the credential keyring is re-encrypted under the primary key
(mail passwords and webhook signing secrets); one that cannot be decrypted is named and left, the rest still rotate.

The database is the session's: other tests' tenants may hold secrets the keys here cannot open (test_rls stores a
malformed one), so each test checks what rotate-key did to its own tenant, and the exit status only where it
depends on that tenant alone.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select, update

from email_service import cli
from email_service.models import AuditLog, EmailCredential, Webhook
from email_service.security.credentials import CredentialCipher, CredentialDecryptionError, generate_key
from email_service.services.context import ServiceContext
from tests.conftest import Caller
from tests.integration.api.conftest import create_account, stored_credentials, stored_password


@dataclasses.dataclass
class Rotated:
    status: int
    out: str
    err: str


@pytest.fixture
def rotate_key(
    ctx: ServiceContext, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[[str], Rotated]:
    """``rotate_key(keys)``: ``email-service rotate-key`` with ``CREDENTIAL_ENCRYPTION_KEYS=keys`` on the session's
    database; its exit status and what it printed."""

    def run(keys: str) -> Rotated:
        settings = ctx.settings
        monkeypatch.delenv("FLASK_ENV", raising=False)
        monkeypatch.delenv("EMAIL_SERVICE_ENV", raising=False)
        monkeypatch.setenv("CREDENTIAL_ENCRYPTION_KEYS", keys)
        monkeypatch.setenv("DATABASE_URL", settings.database_url)
        monkeypatch.setenv("DATABASE_MIGRATION_URL", settings.database_migration_url)
        monkeypatch.setenv("JWT_SECRET_KEY", settings.jwt_secret_key)
        monkeypatch.setenv("EMAIL_SERVICE_DATA_DIR", str(settings.data_dir))
        capsys.readouterr()
        status = cli.main(["rotate-key"])
        captured = capsys.readouterr()
        return Rotated(status, captured.out, captured.err)

    return run


def _own_lines(rotated: Rotated, caller: Caller) -> list[str]:
    """The lines of standard error about the caller's tenant."""
    return [line for line in rotated.err.splitlines() if f"(tenant {caller.tenant_id})" in line]


def test_rotate_key_re_encrypts_and_the_account_keeps_working(
    client: FlaskClient,
    ctx: ServiceContext,
    caller: Caller,
    app_with: Any,
    rotate_key: Callable[[str], Rotated],
) -> None:
    old = ctx.settings.credential_keys[0]
    new = generate_key()
    account_id = create_account(
        client, caller, password="rotate-me-123", hostname="127.0.0.1", port=1, encryption="none"
    )["id"]
    [before] = stored_credentials(ctx, caller, account_id)
    try:
        rotated = rotate_key(f"{new},{old}")
        assert int(rotated.out.split()[1]) >= 1 and _own_lines(rotated, caller) == []

        [after] = stored_credentials(ctx, caller, account_id)
        assert after.ciphertext != before.ciphertext and after.key_id != before.key_id
        only_new = CredentialCipher([new])
        aad = {"tenant_id": caller.tenant_id, "account_id": uuid.UUID(account_id)}
        assert only_new.decrypt(after.ciphertext, **aad) == "rotate-me-123"
        with pytest.raises(CredentialDecryptionError):
            CredentialCipher([old]).decrypt(after.ciphertext, **aad)
        assert stored_password(dataclasses.replace(ctx, cipher=only_new), caller, account_id) == "rotate-me-123"

        app = app_with(CREDENTIAL_ENCRYPTION_KEYS=f"{new},{old}").test_client()
        tested = app.post(f"/api/v1/accounts/{account_id}/test", headers=caller.headers)
        assert tested.status_code == 200, tested.get_json()
        assert tested.get_json()["errorKind"] == "ConnectionFailed", "decrypted, then refused by the port"
    finally:
        rotate_key(f"{old},{new}")  # the session's context knows only the old key
    assert stored_password(ctx, caller, account_id) == "rotate-me-123"


def test_webhook_secrets_are_rotated_and_an_undecryptable_credential_is_named_and_left(
    client: FlaskClient,
    ctx: ServiceContext,
    caller: Caller,
    rotate_key: Callable[[str], Rotated],
) -> None:
    old = ctx.settings.credential_keys[0]
    new = generate_key()
    good = create_account(client, caller, password="good-password-1", username="good@example.com")["id"]
    bad = create_account(client, caller, password="bad-password-1", username="bad@example.com")["id"]
    # The bad account's password sealed with a key nobody configured any more (a key dropped too early).
    lost, _ = CredentialCipher([generate_key()]).encrypt(
        "bad-password-1", tenant_id=caller.tenant_id, account_id=uuid.UUID(bad)
    )
    with ctx.db.tenant_session(caller.tenant_id) as session:
        session.execute(
            update(EmailCredential).where(EmailCredential.account_id == uuid.UUID(bad)).values(ciphertext=lost)
        )
    created = client.post(
        "/api/v1/webhooks",
        headers=caller.headers,
        json={"url": "https://hooks.example.com/x", "events": ["*"], "secret": "webhook-secret-0123456789"},
    )
    assert created.status_code == 201, created.get_json()
    webhook_id = uuid.UUID(created.get_json()["id"])
    try:
        rotated = rotate_key(f"{new},{old}")
        assert rotated.status != 0, "a secret was left behind: the old key must stay"
        [named] = _own_lines(rotated, caller)
        assert named.startswith(f"email-service: credential of {bad} ") and "unknown key" in named
        assert "could not be decrypted" in rotated.err

        only_new = CredentialCipher([new])
        assert stored_password(dataclasses.replace(ctx, cipher=only_new), caller, good) == "good-password-1"
        [left] = stored_credentials(ctx, caller, bad)
        assert left.ciphertext == lost, "left as it was"
        with ctx.db.tenant_session(caller.tenant_id) as session:
            webhook = session.get(Webhook, webhook_id)
            assert webhook is not None
            sealed = webhook.secret_ciphertext
            [entry] = session.execute(
                select(AuditLog).where(AuditLog.tenant_id == caller.tenant_id, AuditLog.action == "credentials.rotate")
            ).scalars()
            assert entry.details == {"count": 1, "webhookSecrets": 1}
        aad = {"tenant_id": caller.tenant_id, "account_id": webhook_id}
        assert only_new.decrypt(sealed, **aad) == "webhook-secret-0123456789"
        with pytest.raises(CredentialDecryptionError):
            CredentialCipher([old]).decrypt(sealed, **aad)
    finally:
        rotate_key(f"{old},{new}")
        assert client.delete(f"/api/v1/accounts/{bad}", headers=caller.headers).status_code == 200
    assert stored_password(ctx, caller, good) == "good-password-1"
