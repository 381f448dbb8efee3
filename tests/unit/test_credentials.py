"""Credential encryption: AES-GCM bound to tenant+account, keyring rotation, constant-time verify."""

from __future__ import annotations

import uuid

import pytest

from email_service.security.credentials import CredentialCipher, CredentialDecryptionError, generate_key

TENANT, ACCOUNT = uuid.uuid4(), uuid.uuid4()


def test_round_trip_and_ciphertext_hides_the_password() -> None:
    cipher = CredentialCipher([generate_key()])
    stored, key_id = cipher.encrypt("pässwörd-123", tenant_id=TENANT, account_id=ACCOUNT)
    assert "pässwörd" not in stored and "passw" not in stored
    assert stored.startswith(f"v1:{key_id}:")
    assert cipher.decrypt(stored, tenant_id=TENANT, account_id=ACCOUNT) == "pässwörd-123"


def test_same_password_encrypts_differently_each_time() -> None:
    cipher = CredentialCipher([generate_key()])
    a, _ = cipher.encrypt("secret", tenant_id=TENANT, account_id=ACCOUNT)
    b, _ = cipher.encrypt("secret", tenant_id=TENANT, account_id=ACCOUNT)
    assert a != b


def test_ciphertext_moved_to_another_account_or_tenant_does_not_decrypt() -> None:
    cipher = CredentialCipher([generate_key()])
    stored, _ = cipher.encrypt("secret", tenant_id=TENANT, account_id=ACCOUNT)
    with pytest.raises(CredentialDecryptionError):
        cipher.decrypt(stored, tenant_id=TENANT, account_id=uuid.uuid4())
    with pytest.raises(CredentialDecryptionError):
        cipher.decrypt(stored, tenant_id=uuid.uuid4(), account_id=ACCOUNT)


def test_tampered_ciphertext_is_rejected() -> None:
    cipher = CredentialCipher([generate_key()])
    stored, _ = cipher.encrypt("secret", tenant_id=TENANT, account_id=ACCOUNT)
    head, body = stored.rsplit(":", 1)
    flipped = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1]
    with pytest.raises(CredentialDecryptionError):
        cipher.decrypt(f"{head}:{flipped}", tenant_id=TENANT, account_id=ACCOUNT)


def test_verify_is_true_only_for_the_right_password() -> None:
    cipher = CredentialCipher([generate_key()])
    stored, _ = cipher.encrypt("secret", tenant_id=TENANT, account_id=ACCOUNT)
    assert cipher.verify(stored, "secret", tenant_id=TENANT, account_id=ACCOUNT)
    assert not cipher.verify(stored, "Secret", tenant_id=TENANT, account_id=ACCOUNT)


def test_rotation_keeps_old_ciphertexts_readable_and_moves_them_to_the_new_key() -> None:
    old_key, new_key = generate_key(), generate_key()
    old = CredentialCipher([old_key])
    stored, old_id = old.encrypt("secret", tenant_id=TENANT, account_id=ACCOUNT)
    ring = CredentialCipher([new_key, old_key])
    assert ring.needs_rotation(stored)
    assert ring.decrypt(stored, tenant_id=TENANT, account_id=ACCOUNT) == "secret"
    rotated, new_id = ring.rotate(stored, tenant_id=TENANT, account_id=ACCOUNT)
    assert new_id != old_id and not ring.needs_rotation(rotated)
    with pytest.raises(CredentialDecryptionError):
        old.decrypt(rotated, tenant_id=TENANT, account_id=ACCOUNT)
    assert CredentialCipher([new_key]).decrypt(rotated, tenant_id=TENANT, account_id=ACCOUNT) == "secret"
