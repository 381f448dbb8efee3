"""Encryption of mail credentials (DESIGN.md section 2; replaces the seed's SHA-512 hashing, which cannot log in).

AES-256-GCM with a random 96-bit nonce; the associated data binds a ciphertext to its tenant and account, so a
ciphertext copied to another row does not decrypt.  A keyring holds the primary key (first) and older keys
(decrypt only); :meth:`CredentialCipher.rotate` re-encrypts under the primary key.

Stored form: ``v1:<key id>:<urlsafe base64(nonce || ciphertext || tag)>``, key id = first 8 hex digits of the key's
SHA-256.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import uuid
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from email_service.errors import ConfigurationError, EmailServiceError

_VERSION = "v1"
_NONCE_BYTES = 12


class CredentialDecryptionError(EmailServiceError):
    """A stored credential cannot be decrypted: unknown key id, tampered or moved ciphertext."""

    kind = "Credential error"


def _key_id(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:8]


def _associated_data(tenant_id: uuid.UUID, account_id: uuid.UUID) -> bytes:
    return f"email_service/credential/{tenant_id}/{account_id}".encode()


class CredentialCipher:
    """Keyring-based AES-GCM cipher for passwords.

    Args:
        keys: url-safe base64 32-byte keys (Fernet key format), primary first.

    Raises:
        ConfigurationError: no key, or a key that is not 32 bytes.
    """

    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise ConfigurationError("CREDENTIAL_ENCRYPTION_KEYS must hold at least one key")
        self._keys: dict[str, AESGCM] = {}
        self._primary = ""
        for encoded in keys:
            raw = base64.urlsafe_b64decode(encoded.encode())
            if len(raw) != 32:
                raise ConfigurationError("each CREDENTIAL_ENCRYPTION_KEYS entry must decode to 32 bytes")
            kid = _key_id(raw)
            self._keys.setdefault(kid, AESGCM(raw))
            self._primary = self._primary or kid

    def __repr__(self) -> str:
        return f"CredentialCipher(primary={self._primary!r}, keys={len(self._keys)})"

    @property
    def primary_key_id(self) -> str:
        """Key id new ciphertexts are made with."""
        return self._primary

    def encrypt(self, secret: str, *, tenant_id: uuid.UUID, account_id: uuid.UUID) -> tuple[str, str]:
        """Encrypt ``secret`` for one account.  Returns ``(stored ciphertext, key id)``."""
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._keys[self._primary].encrypt(
            nonce, secret.encode("utf-8"), _associated_data(tenant_id, account_id)
        )
        token = base64.urlsafe_b64encode(nonce + sealed).decode()
        return f"{_VERSION}:{self._primary}:{token}", self._primary

    def decrypt(self, stored: str, *, tenant_id: uuid.UUID, account_id: uuid.UUID) -> str:
        """Decrypt a stored ciphertext of this tenant and account.

        Raises:
            CredentialDecryptionError: malformed, unknown key id, or authentication failed (tampered/moved).
        """
        try:
            version, kid, token = stored.split(":", 2)
            blob = base64.urlsafe_b64decode(token.encode())
        except ValueError:
            raise CredentialDecryptionError("stored credential is malformed") from None
        cipher = self._keys.get(kid)
        if version != _VERSION or cipher is None:
            raise CredentialDecryptionError(f"stored credential uses unknown key {kid!r}")
        try:
            plain = cipher.decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], _associated_data(tenant_id, account_id))
        except InvalidTag:
            raise CredentialDecryptionError("stored credential failed authentication") from None
        return plain.decode("utf-8")

    def verify(self, stored: str, candidate: str, *, tenant_id: uuid.UUID, account_id: uuid.UUID) -> bool:
        """Constant-time check that ``candidate`` is the stored secret (seed 000 ``verify``)."""
        try:
            secret = self.decrypt(stored, tenant_id=tenant_id, account_id=account_id)
        except CredentialDecryptionError:
            return False
        return hmac.compare_digest(secret.encode("utf-8"), candidate.encode("utf-8"))

    def needs_rotation(self, stored: str) -> bool:
        """True when ``stored`` was not made with the primary key."""
        return not stored.startswith(f"{_VERSION}:{self._primary}:")

    def rotate(self, stored: str, *, tenant_id: uuid.UUID, account_id: uuid.UUID) -> tuple[str, str]:
        """Re-encrypt under the primary key.  Returns ``(stored ciphertext, key id)``."""
        secret = self.decrypt(stored, tenant_id=tenant_id, account_id=account_id)
        return self.encrypt(secret, tenant_id=tenant_id, account_id=account_id)


def generate_key() -> str:
    """A new random key in the ``CREDENTIAL_ENCRYPTION_KEYS`` format (url-safe base64 of 32 bytes)."""
    return base64.urlsafe_b64encode(os.urandom(32)).decode()
