"""Re-encrypting every stored secret under the primary credential key (``email-service rotate-key``; DESIGN.md
section 2: authenticated encryption with a keyring and a command to re-encrypt).

Two kinds of secret are sealed by the keyring of ``CREDENTIAL_ENCRYPTION_KEYS``
(:class:`~email_service.security.credentials.CredentialCipher`, AES-GCM), each bound to its tenant and owner as
associated data:

* ``credential``: a mail account's password (``email_credentials``, owner: the account);
* ``webhook``: a webhook's signing secret (``email_webhooks.secret_ciphertext``, owner: the webhook, issue 12).

Both are re-encrypted, so once a rotation reports nothing left behind the old key can be removed from the setting.

A secret that cannot be decrypted (malformed, sealed with a key that is no longer configured, or failing
authentication: tampered or moved) is left as it is and reported in :attr:`Rotation.unrotated`; every other
secret is still rotated.  One bad row must not keep an operator from rotating the rest.  Each tenant's secrets
change in one transaction of that tenant, with one audit entry (``credentials.rotate``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from email_service.models import EmailCredential, Tenant, Webhook
from email_service.security.credentials import CredentialCipher, CredentialDecryptionError
from email_service.services.accounts import audit
from email_service.services.context import ServiceContext


@dataclass(frozen=True)
class Unrotated:
    """A secret left as it was: ``kind`` (``credential`` or ``webhook``), its tenant, its owner's id (the account or
    the webhook) and why (the decryption error's message; it never holds the secret)."""

    kind: str
    tenant_id: uuid.UUID
    owner_id: uuid.UUID
    reason: str


@dataclass
class Rotation:
    """What a rotation did: ``rotated`` secrets re-encrypted (credentials and webhook secrets), ``unrotated`` left."""

    rotated: int = 0
    unrotated: list[Unrotated] = field(default_factory=list)


def rotate_secrets(ctx: ServiceContext) -> Rotation:
    """Re-encrypt every tenant's credentials and webhook secrets under the primary key (those already under it are
    left alone).  Returns the :class:`Rotation`; a secret that cannot be decrypted is reported there, not raised.

    Raises the database's errors (a tenant's transaction is then rolled back; the tenants before it keep theirs).
    """
    with ctx.db.system_session() as session:
        tenants = list(session.execute(select(Tenant.tenant_id)).scalars())
    rotation = Rotation()
    for tenant_id in tenants:
        with ctx.db.tenant_session(tenant_id) as session:
            counts = _rotate_tenant(session, ctx.cipher, tenant_id, rotation)
            rotation.rotated += sum(counts.values())
            if any(counts.values()):
                audit(
                    session,
                    None,
                    tenant_id=tenant_id,
                    action="credentials.rotate",
                    resource_type="email_credential",
                    resource_id=None,
                    details={"count": counts["credential"], "webhookSecrets": counts["webhook"]},
                )
    return rotation


def _rotate_tenant(
    session: Session, cipher: CredentialCipher, tenant_id: uuid.UUID, rotation: Rotation
) -> dict[str, int]:
    """Rotate one tenant's secrets in ``session``; returns how many of each kind changed."""
    counts = {"credential": 0, "webhook": 0}
    secrets: list[tuple[str, Any, uuid.UUID, str]] = [
        ("credential", credential, credential.account_id, "ciphertext")
        for credential in session.execute(select(EmailCredential).where(EmailCredential.tenant_id == tenant_id))
        .scalars()
        .all()
    ]
    secrets += [
        ("webhook", webhook, webhook.id, "secret_ciphertext")
        for webhook in session.execute(select(Webhook).where(Webhook.tenant_id == tenant_id)).scalars().all()
    ]
    for kind, row, owner_id, column in secrets:
        stored = getattr(row, column)
        if not cipher.needs_rotation(stored):
            continue
        try:
            ciphertext, key_id = cipher.rotate(stored, tenant_id=tenant_id, account_id=owner_id)
        except CredentialDecryptionError as error:
            rotation.unrotated.append(Unrotated(kind, tenant_id, owner_id, str(error)))
            continue
        setattr(row, column, ciphertext)
        if kind == "credential":
            row.key_id = key_id
        counts[kind] += 1
    return counts
