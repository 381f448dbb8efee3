"""TLS for SMTP against aiosmtpd: STARTTLS and implicit TLS verify the certificate; no plaintext fallback."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from email_service.protocols.errors import TLSError
from email_service.protocols.smtp import SMTPDeliveryStatus, SMTPEncryption, SMTPProtocolHandler
from tests.support.hosts import LOOPBACK_PEERS

pytestmark = pytest.mark.integration


def _handler(server: Any, encryption: SMTPEncryption | str, **kwargs: Any) -> SMTPProtocolHandler:
    kwargs.setdefault("ca_bundle", server.ca_bundle)
    return SMTPProtocolHandler(
        server.host,
        server.port,
        encryption=encryption,
        from_address="sender@example.com",
        timeout=5,
        sleep=_no_sleep,
        local_hostname="client.test",
        host_policy=LOOPBACK_PEERS,
        **kwargs,
    )


def _no_sleep(delay: float) -> None:
    raise AssertionError(f"TLS failures must not be retried (sleep {delay})")


@pytest.mark.parametrize(
    ("tls", "encryption", "vocabulary"),
    [
        ("starttls", "tls", "seed"),
        ("starttls", "starttls", "account"),
        ("implicit", "ssl", "seed"),
        ("implicit", "tls", "account"),
    ],
)
def test_trusted_certificate_with_auth(
    smtp_server: Callable[..., Any], tls: str, encryption: str, vocabulary: Any
) -> None:
    server = smtp_server(tls=tls)
    handler = _handler(server, encryption, encryption_vocabulary=vocabulary, username="user", password="secret")
    with handler:
        result = handler.send_message(["ann@example.com"], f"over {tls}", text_body="secret stuff")
    assert result.status is SMTPDeliveryStatus.SUCCESS, result
    assert server.handler.auth_logins == ["PLAIN:user"]
    assert server.handler.messages[0].rcpt_tos == ["ann@example.com"]


@pytest.mark.parametrize(("tls", "encryption"), [("starttls", "tls"), ("implicit", "ssl")])
@pytest.mark.parametrize("cert", ["untrusted", "wrong_host"])
def test_unverifiable_certificate_is_refused(
    smtp_server: Callable[..., Any], tls: str, encryption: str, cert: str
) -> None:
    server = smtp_server(tls=tls, cert=cert)
    handler = _handler(server, encryption, username="user", password="secret")
    with handler:
        with pytest.raises(TLSError):
            handler.connect()
        assert handler.test_connection() is False
        assert isinstance(handler.last_error, TLSError)
        result = handler.send_message(["ann@example.com"], "x", text_body="x")
    assert result.status is SMTPDeliveryStatus.FAILED and not result.is_retryable
    assert result.retry_count == 0
    assert server.handler.auth_logins == [] and server.handler.messages == []


def test_system_store_does_not_trust_the_test_ca(smtp_server: Callable[..., Any]) -> None:
    server = smtp_server(tls="implicit")
    handler = _handler(server, SMTPEncryption.IMPLICIT_SSL, ca_bundle=None)
    with handler, pytest.raises(TLSError):
        handler.connect()


def test_starttls_not_offered_is_refused(smtp_server: Callable[..., Any]) -> None:
    server = smtp_server(tls="none")  # plaintext server without STARTTLS
    with _handler(server, SMTPEncryption.STARTTLS, username="user", password="secret") as handler:
        with pytest.raises(TLSError, match="STARTTLS"):
            handler.connect()
        result = handler.send_message(["ann@example.com"], "x", text_body="x")
    assert result.status is SMTPDeliveryStatus.FAILED
    assert server.handler.auth_logins == [], "credentials must not be sent in plaintext"
    assert server.handler.messages == []


def test_unreadable_ca_bundle_is_a_tls_error(smtp_server: Callable[..., Any], tmp_path: Any) -> None:
    server = smtp_server(tls="starttls")
    handler = _handler(server, "tls", ca_bundle=str(tmp_path / "missing.pem"))
    with handler, pytest.raises(TLSError, match="CA bundle"):
        handler.connect()
