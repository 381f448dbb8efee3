"""``POST /accounts/{id}/test``: log in to the account's server and report what was found.

Dials through the guarded connector under the context's host policy (DESIGN.md section 2: a refused host is
reported as ``HostNotAllowed`` and nothing is dialled) and verifies certificates (``MAIL_CA_BUNDLE`` adds CAs).
The server's refusal comes back as a clean message; the password is never part of it.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from email_service.models import EmailAccount
from email_service.protocols.errors import ProtocolError
from email_service.protocols.imap import ImapEndpoint, ImapSession
from email_service.protocols.pop3 import Pop3Endpoint, pop3_check_login
from email_service.security.tokens import Principal
from email_service.services.accounts import account_password, load_account
from email_service.services.context import ServiceContext


@dataclass(frozen=True)
class ConnectionReport:
    """Outcome of a login test: ``success``, ``folderCount`` (IMAP) or ``messageCount`` (POP3), error text."""

    success: bool
    protocol: str
    folder_count: int | None = None
    message_count: int | None = None
    error: str | None = None
    error_kind: str | None = None
    duration_ms: int = 0


def imap_endpoint(ctx: ServiceContext, account: EmailAccount, password: str) -> ImapEndpoint:
    """The IMAP endpoint of an account with the configured CA bundle, timeout and host policy."""
    return ImapEndpoint(
        host=account.hostname,
        port=account.port,
        encryption=account.encryption,
        username=account.username,
        password=password,
        ca_bundle=ctx.settings.mail_ca_bundle,
        timeout=float(ctx.settings.mail_timeout_seconds),
        host_policy=ctx.host_policy,
    )


def test_account_connection(ctx: ServiceContext, *, principal: Principal, account_id: uuid.UUID) -> ConnectionReport:
    """Log in with the stored credentials; every mail-server failure (``HostNotAllowed`` included) is reported.

    Raises:
        NotFound / Forbidden: account not visible.
    """
    with ctx.db.tenant_session(principal.tenant_id) as session:
        account = load_account(session, principal, account_id)
        password = account_password(ctx, session, account)
    started = time.perf_counter()
    try:
        if account.protocol == "pop3":
            count = pop3_check_login(
                Pop3Endpoint(
                    account.hostname,
                    account.port,
                    account.encryption,
                    account.username,
                    password,
                    ctx.settings.mail_ca_bundle,
                    float(ctx.settings.mail_timeout_seconds),
                    ctx.host_policy,
                )
            )
            report = ConnectionReport(True, "pop3", folder_count=1, message_count=count)
        else:
            with ImapSession(imap_endpoint(ctx, account, password)) as imap:
                report = ConnectionReport(True, "imap", folder_count=len(imap.list_mailboxes()))
    except ProtocolError as exc:
        report = ConnectionReport(False, account.protocol, error=exc.message, error_kind=type(exc).__name__)
    elapsed = int((time.perf_counter() - started) * 1000)
    return ConnectionReport(**{**report.__dict__, "duration_ms": elapsed})
