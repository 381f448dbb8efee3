"""SMTP dials only through the guarded connector (issue 6 item 1; DESIGN.md sections 2 and 10).

The seed-002 handler and pool take the host policy through their connection settings: a refused host fails the
send with ``HostNotAllowed`` and the server never sees a connection.  An allowed host is dialled by name and TLS
(STARTTLS and implicit) is verified against that name, not the address the connector dialled.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from email_service.config import Settings
from email_service.protocols.errors import HostNotAllowed, TLSError
from email_service.protocols.net import HostPolicy
from email_service.protocols.smtp import SMTPConnectionPool, SMTPDeliveryStatus, SMTPEncryption, SMTPProtocolHandler
from email_service.services.hosts import mail_host_policy

pytestmark = pytest.mark.integration

PRODUCTION = mail_host_policy(Settings(environment="production", allow_private_mail_hosts=False))
BY_NAME = HostPolicy.from_allowlist(["localhost"])
ENCRYPTIONS = [
    ("none", SMTPEncryption.NONE),
    ("starttls", SMTPEncryption.STARTTLS),
    ("implicit", SMTPEncryption.IMPLICIT_SSL),
]


def _handler(server: Any, host: str, encryption: SMTPEncryption, policy: HostPolicy) -> SMTPProtocolHandler:
    return SMTPProtocolHandler(
        host,
        server.port,
        "user",
        "secret",
        encryption,
        from_address="sender@example.com",
        ca_bundle=server.ca_bundle,
        timeout=5,
        sleep=_no_sleep,
        local_hostname="client.test",
        host_policy=policy,
    )


def _no_sleep(delay: float) -> None:
    raise AssertionError(f"a refused host or a TLS failure must not be retried (sleep {delay})")


@pytest.mark.parametrize(("tls", "encryption"), ENCRYPTIONS)
def test_send_to_a_refused_host_is_refused_without_a_connection(
    smtp_server: Callable[..., Any], tls: str, encryption: SMTPEncryption
) -> None:
    server = smtp_server(tls=tls)
    for host in (server.host, "localhost"):
        with _handler(server, host, encryption, PRODUCTION) as handler:
            result = handler.send_message(["ann@example.com"], "x", text_body="x")
            assert handler.test_connection() is False
        assert result.status is SMTPDeliveryStatus.FAILED and not result.is_retryable
        assert isinstance(handler.last_error, HostNotAllowed)
        assert f"{host!r}" in (result.smtp_error or "") and "loopback" in (result.smtp_error or "")
    with SMTPConnectionPool() as pool, pytest.raises(HostNotAllowed):
        pool.get_connection(server.host, server.port, encryption=encryption, timeout=5, host_policy=PRODUCTION)
    assert server.connections == 0 and server.handler.messages == []


@pytest.mark.parametrize(("tls", "encryption"), ENCRYPTIONS)
def test_allowed_name_is_dialled_and_tls_verified_against_it(
    smtp_server: Callable[..., Any], tls: str, encryption: SMTPEncryption
) -> None:
    server = smtp_server(tls=tls, cert="name_only")  # the certificate names localhost, not 127.0.0.1
    with _handler(server, "localhost", encryption, BY_NAME) as handler:
        result = handler.send_message(["ann@example.com"], f"by name over {tls}", text_body="x")
    assert result.status is SMTPDeliveryStatus.SUCCESS, result
    assert server.handler.auth_logins == ["PLAIN:user"] and len(server.handler.messages) == 1


@pytest.mark.parametrize(("tls", "encryption"), ENCRYPTIONS[1:])
def test_certificate_not_valid_for_the_dialled_name_is_refused(
    smtp_server: Callable[..., Any], tls: str, encryption: SMTPEncryption
) -> None:
    name_only = smtp_server(tls=tls, cert="name_only")
    by_address = HostPolicy.from_allowlist(["127.0.0.1"])
    with _handler(name_only, "127.0.0.1", encryption, by_address) as handler, pytest.raises(TLSError, match="mismatch"):
        handler.connect()
    other_name = smtp_server(tls=tls, cert="wrong_host")
    with _handler(other_name, "localhost", encryption, BY_NAME) as handler, pytest.raises(TLSError, match="Hostname"):
        handler.connect()
    assert name_only.handler.auth_logins == [] and other_name.handler.auth_logins == []


@pytest.mark.parametrize(("tls", "encryption"), ENCRYPTIONS[1:])
def test_unknown_ca_error_names_mail_ca_bundle(
    smtp_server: Callable[..., Any], tls: str, encryption: SMTPEncryption
) -> None:
    server = smtp_server(tls=tls, cert="untrusted")
    with _handler(server, "localhost", encryption, BY_NAME) as handler, pytest.raises(TLSError) as caught:
        handler.connect()
    assert "MAIL_CA_BUNDLE" in caught.value.message and "localhost" in caught.value.message
    assert server.handler.auth_logins == []
