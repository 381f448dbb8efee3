"""SMTPProtocolHandler against a real aiosmtpd server: envelope, headers, MIME, AUTH, replies and retries."""

from __future__ import annotations

import base64
import re
import socket
from collections.abc import Callable
from typing import Any

import pytest

from email_service.protocols.errors import AuthenticationFailed
from email_service.protocols.mime.build import build_message
from email_service.protocols.smtp import (
    SMTPConnectionPool,
    SMTPDeliveryStatus,
    SMTPEncryption,
    SMTPProtocolHandler,
)
from tests.support.hosts import LOOPBACK_PEERS

pytestmark = pytest.mark.integration

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
PDF = b"%PDF-1.4\n" + bytes(range(255, -1, -1)) * 40


def _handler(server: Any, sleeps: list[float] | None = None, **kwargs: Any) -> SMTPProtocolHandler:
    kwargs.setdefault("encryption", SMTPEncryption.NONE)
    kwargs.setdefault("from_address", "Sender <sender@example.com>")
    return SMTPProtocolHandler(
        server.host,
        server.port,
        sleep=(sleeps.append if sleeps is not None else _no_sleep),
        timeout=5,
        local_hostname="client.test",
        host_policy=LOOPBACK_PEERS,
        **kwargs,
    )


def _no_sleep(delay: float) -> None:
    raise AssertionError(f"unexpected sleep({delay})")


def _tree(part: Any, depth: int = 0) -> list[str]:
    lines = ["  " * depth + part.get_content_type()]
    if part.is_multipart():
        for child in part.iter_parts():
            lines += _tree(child, depth + 1)
    return lines


def test_text_message_envelope_and_headers(smtp_server: Callable[..., Any]) -> None:
    server = smtp_server()
    with _handler(server) as handler:
        result = handler.send_message(["Ann <ann@example.com>"], "Hello", text_body="Hi Ann\n")

    assert result.status is SMTPDeliveryStatus.SUCCESS, result
    assert result.retry_count == 0 and result.recipient_failures == {}
    assert result.sent_at is not None and result.message_id and result.message_id.endswith("@example.com>")
    [received] = server.handler.messages
    assert received.mail_from == "sender@example.com"
    assert received.rcpt_tos == ["ann@example.com"]
    message = received.message
    assert message["From"] == "Sender <sender@example.com>"
    assert message["To"] == "Ann <ann@example.com>"
    assert message["Subject"] == "Hello"
    assert message["Message-ID"] == result.message_id
    assert message["Date"] is not None
    assert _tree(message) == ["text/plain"]
    assert message.get_content().replace("\r\n", "\n") == "Hi Ann\n"


def test_full_structure_bcc_and_encodings(smtp_server: Callable[..., Any]) -> None:
    server = smtp_server()
    subject = "Grüße aus Köln € 東京 ✓"
    filename = "résumé 2024 € naïve.pdf"
    with _handler(server) as handler:
        result = handler.send_message(
            to_addresses=["Jörg Müller <joerg@example.com>", "ann@example.com"],
            subject=subject,
            text_body="Plain text ✓\n",
            html_body='<p>HTML <img src="cid:logo@example.com"></p>',
            cc_addresses=["carl@example.com"],
            bcc_addresses=["hidden@example.com", "ann@EXAMPLE.com"],
            reply_to="replies@example.com",
            attachments=[
                {
                    "filename": filename,
                    "contentType": "application/pdf",
                    "data": base64.b64encode(PDF).decode(),
                },
                {
                    "filename": "logo.png",
                    "contentType": "image/png",
                    "content": PNG,
                    "contentId": "logo@example.com",
                },
            ],
            custom_headers={"X-Campaign": "spring ✿", "In-Reply-To": "<parent@example.com>"},
        )

    assert result.status is SMTPDeliveryStatus.SUCCESS, result
    [received] = server.handler.messages
    # envelope: To + Cc + Bcc, duplicates (domain case-insensitive) removed
    assert received.rcpt_tos == [
        "joerg@example.com",
        "ann@example.com",
        "carl@example.com",
        "hidden@example.com",
    ]
    raw_headers = received.data.split(b"\r\n\r\n", 1)[0]
    assert b"Bcc" not in raw_headers and b"hidden@example.com" not in received.data
    assert b"=?utf-8?" in raw_headers  # RFC 2047 encoded words
    assert raw_headers.isascii()
    message = received.message
    assert message["Subject"] == subject
    assert message["To"].addresses[0].display_name == "Jörg Müller"
    assert message["Reply-To"] == "replies@example.com"
    assert message["X-Campaign"] == "spring ✿"
    assert message["In-Reply-To"] == "<parent@example.com>"
    assert _tree(message) == [
        "multipart/mixed",
        "  multipart/alternative",
        "    text/plain",
        "    multipart/related",
        "      text/html",
        "      image/png",
        "  application/pdf",
    ]
    attachments = list(message.iter_attachments())
    assert [part.get_filename() for part in attachments] == [filename]
    assert attachments[0].get_content() == PDF
    assert re.search(rb"filename\*(0\*)?=utf-8''", received.data)  # RFC 2231 (section 4, with continuations)
    [image] = [part for part in message.walk() if part.get_content_type() == "image/png"]
    assert image["Content-ID"] == "<logo@example.com>"
    assert image.get_content_disposition() == "inline"
    assert image.get_content() == PNG
    body = message.get_body(("plain",))
    assert body is not None and body.get_content().replace("\r\n", "\n") == "Plain text ✓\n"


def test_html_only_message(smtp_server: Callable[..., Any]) -> None:
    server = smtp_server()
    with _handler(server) as handler:
        result = handler.send_message(["ann@example.com"], "html", html_body="<b>bold</b>")
    assert result.status is SMTPDeliveryStatus.SUCCESS
    assert _tree(server.handler.messages[0].message) == ["text/html"]


def test_invalid_message_does_not_touch_the_network(smtp_server: Callable[..., Any]) -> None:
    server = smtp_server()
    with _handler(server) as handler:
        results = [
            handler.send_message(["not-an-address"], "x", text_body="x"),
            handler.send_message(["ann@example.com"], "bad\r\nBcc: evil@example.com", text_body="x"),
            handler.send_message(["ann@example.com"], "x", text_body="x", custom_headers={"X-A": "a\nb"}),
            handler.send_message(["ann@example.com"], "x", text_body="x", custom_headers={"From": "a@b.example"}),
            handler.send_message(["ann@example.com"], "x"),  # no body
            handler.send_message(["ann@example.com"], "x", text_body="x", attachments=[{"filename": "a"}]),
            handler.send_message(["ann@example.com"], "x", text_body="x", from_address="bad"),
        ]
    assert [r.status for r in results] == [SMTPDeliveryStatus.INVALID] * len(results)
    assert all(r.smtp_error and not r.is_retryable for r in results)
    assert server.connections == 0


def test_auth_plain_over_starttls(smtp_server: Callable[..., Any]) -> None:
    server = smtp_server(tls="starttls")  # aiosmtpd offers AUTH only after STARTTLS here
    handler = _handler(server, encryption="tls", username="user", password="secret", ca_bundle=server.ca_bundle)
    with handler:
        assert handler.test_connection() is True, handler.last_error
        assert handler.authenticate() is True
        result = handler.send_message(["ann@example.com"], "tls", text_body="over TLS")
    assert result.status is SMTPDeliveryStatus.SUCCESS, result
    assert server.handler.auth_logins[-1] == "PLAIN:user"
    assert len(server.handler.messages) == 1


def test_auth_login_when_plain_is_not_offered(smtp_server: Callable[..., Any]) -> None:
    server = smtp_server(auth_exclude_mechanism=["PLAIN"])
    with _handler(server, username="user", password="secret") as handler:
        result = handler.send_message(["ann@example.com"], "login", text_body="x")
    assert result.status is SMTPDeliveryStatus.SUCCESS, result
    assert server.handler.auth_logins == ["LOGIN:user"]


def test_auth_535_is_a_permanent_failure(smtp_server: Callable[..., Any]) -> None:
    server = smtp_server()
    with _handler(server, username="user", password="wrong") as handler:
        with pytest.raises(AuthenticationFailed) as info:
            handler.connect()
        assert info.value.code == 535
        assert handler.test_connection() is False
        assert isinstance(handler.last_error, AuthenticationFailed)
        result = handler.send_message(["ann@example.com"], "x", text_body="x")
    assert result.status is SMTPDeliveryStatus.FAILED
    assert result.smtp_code == 535 and result.retry_count == 0 and not result.is_retryable
    assert "wrong" not in (result.smtp_error or "")
    assert server.handler.messages == []


def test_xoauth2(smtp_server: Callable[..., Any]) -> None:
    server = smtp_server()
    with _handler(server, username="user", oauth2_token="good-token") as handler:
        assert handler.send_message(["ann@example.com"], "x", text_body="x").status is SMTPDeliveryStatus.SUCCESS
    assert server.handler.auth_logins == ["XOAUTH2:user"]
    with _handler(server, username="user", oauth2_token="expired") as handler:
        result = handler.send_message(["ann@example.com"], "x", text_body="x")
    assert result.status is SMTPDeliveryStatus.FAILED and result.smtp_code == 535
    assert "expired" not in repr(handler)


def test_451_then_250_is_retried_once(smtp_server: Callable[..., Any], sleeps: list[float]) -> None:
    server = smtp_server()
    server.handler.data_replies = ["451 4.3.0 Try again later"]
    with _handler(server, sleeps) as handler:
        result = handler.send_message(["ann@example.com"], "retry", text_body="x")
    assert result.status is SMTPDeliveryStatus.SUCCESS, result
    assert result.retry_count == 1
    assert sleeps == [1]
    assert len(server.handler.messages) == 1


def test_421_at_mail_reconnects_and_retries(smtp_server: Callable[..., Any], sleeps: list[float]) -> None:
    server = smtp_server()
    server.handler.mail_replies = ["421 4.7.0 Too busy, closing"]
    with _handler(server, sleeps) as handler:
        result = handler.send_message(["ann@example.com"], "busy", text_body="x")
    assert result.status is SMTPDeliveryStatus.SUCCESS, result
    assert result.retry_count == 1 and sleeps == [1]
    assert server.connections == 2  # the 421 connection was not reused


def test_retries_exhausted_is_temp_failed(smtp_server: Callable[..., Any], sleeps: list[float]) -> None:
    server = smtp_server()
    server.handler.data_replies = ["452 4.3.1 Insufficient storage"] * 4
    with _handler(server, sleeps) as handler:
        result = handler.send_message(["ann@example.com"], "full", text_body="x")
    assert result.status is SMTPDeliveryStatus.TEMP_FAILED
    assert result.smtp_code == 452 and result.retry_count == 3 and result.is_retryable
    assert sleeps == [1, 5, 30]
    assert server.handler.messages == []


def test_retry_false_reports_retry(smtp_server: Callable[..., Any]) -> None:
    server = smtp_server()
    server.handler.data_replies = ["450 4.2.0 Mailbox busy"]
    with _handler(server) as handler:
        result = handler.send_message(["ann@example.com"], "x", text_body="x", retry=False)
    assert result.status is SMTPDeliveryStatus.RETRY
    assert result.smtp_code == 450 and result.retry_count == 0 and result.is_retryable


def test_other_4xx_is_temp_failed_without_retry(smtp_server: Callable[..., Any]) -> None:
    server = smtp_server()
    server.handler.data_replies = ["454 4.7.0 Temporary authentication failure"]
    with _handler(server) as handler:
        result = handler.send_message(["ann@example.com"], "x", text_body="x")
    assert result.status is SMTPDeliveryStatus.TEMP_FAILED
    assert result.smtp_code == 454 and result.retry_count == 0 and result.is_retryable


def test_550_after_data_is_permanent(smtp_server: Callable[..., Any]) -> None:
    server = smtp_server()
    server.handler.data_replies = ["550 5.7.1 Message rejected as spam"]
    with _handler(server) as handler:
        result = handler.send_message(["ann@example.com"], "x", text_body="x")
    assert result.status is SMTPDeliveryStatus.FAILED
    assert result.smtp_code == 550 and result.retry_count == 0 and not result.is_retryable
    assert "spam" in (result.smtp_error or "")


def test_sender_refused_is_rejected(smtp_server: Callable[..., Any]) -> None:
    server = smtp_server()
    server.handler.mail_replies = ["553 5.7.1 Sender not allowed"]
    with _handler(server) as handler:
        result = handler.send_message(["ann@example.com"], "x", text_body="x")
    assert result.status is SMTPDeliveryStatus.REJECTED and result.smtp_code == 553


def test_one_of_three_recipients_refused_is_partial_success(smtp_server: Callable[..., Any]) -> None:
    server = smtp_server()
    server.handler.refuse_rcpt = {"ghost@example.com": "550 5.1.1 No such user"}
    with _handler(server) as handler:
        result = handler.send_message(
            ["ann@example.com", "ghost@example.com"], "x", text_body="x", bcc_addresses=["bob@example.com"]
        )
    assert result.status is SMTPDeliveryStatus.SUCCESS
    assert result.is_partial
    assert result.recipient_failures == {"ghost@example.com": "550 5.1.1 No such user"}
    assert server.handler.messages[0].rcpt_tos == ["ann@example.com", "bob@example.com"]
    assert result.to_dict()["recipientFailures"] == {"ghost@example.com": "550 5.1.1 No such user"}


def test_all_recipients_refused(smtp_server: Callable[..., Any], sleeps: list[float]) -> None:
    server = smtp_server()
    server.handler.refuse_rcpt = {"a@example.com": "550 5.1.1 No", "b@example.com": "551 5.1.6 Moved"}
    with _handler(server, sleeps) as handler:
        result = handler.send_message(["a@example.com", "b@example.com"], "x", text_body="x")
    assert result.status is SMTPDeliveryStatus.REJECTED and result.smtp_code == 550
    assert set(result.recipient_failures) == {"a@example.com", "b@example.com"}
    assert sleeps == [] and server.handler.messages == []


def test_connection_refused_is_retried_then_temp_failed(sleeps: list[float]) -> None:
    with socket.socket() as bound:  # bound, never listening: connections to it are refused
        bound.bind(("127.0.0.1", 0))
        handler = SMTPProtocolHandler(
            "127.0.0.1",
            bound.getsockname()[1],
            encryption="none",
            from_address="s@example.com",
            sleep=sleeps.append,
            timeout=5,
            host_policy=LOOPBACK_PEERS,
        )
        with handler:
            result = handler.send_message(["ann@example.com"], "x", text_body="x")
    assert result.status is SMTPDeliveryStatus.TEMP_FAILED
    assert result.retry_count == 3 and sleeps == [1, 5, 30] and result.is_retryable
    assert result.smtp_code is None and "refused" in (result.smtp_error or "").lower()


def test_send_built_message_strips_bcc(smtp_server: Callable[..., Any]) -> None:
    server = smtp_server()
    message = build_message(from_address="sender@example.com", to=["ann@example.com"], subject="b", text_body="x")
    message["Bcc"] = "hidden@example.com"
    with _handler(server) as handler:
        result = handler.send_built_message(message, rcpt_tos=["ann@example.com", "hidden@example.com"])
    assert result.status is SMTPDeliveryStatus.SUCCESS and result.message_id == message["Message-ID"]
    [received] = server.handler.messages
    assert received.rcpt_tos == ["ann@example.com", "hidden@example.com"]
    assert "Bcc" not in received.message and "Bcc" in message


def test_repr_masks_secrets(smtp_server: Callable[..., Any]) -> None:
    server = smtp_server()
    handler = _handler(server, username="user", password="hunter2", oauth2_token=None)
    pool = SMTPConnectionPool()
    for text in (repr(handler), str(handler), repr(handler._settings), repr(pool)):
        assert "hunter2" not in text
    assert "***" in repr(handler)


def test_send_built_message_validates_the_envelope(smtp_server: Callable[..., Any]) -> None:
    server = smtp_server()
    message = build_message(from_address="sender@example.com", to=["ann@example.com"], subject="b", text_body="x")
    with _handler(server) as handler:
        bad_rcpt = handler.send_built_message(message, rcpt_tos=["ann@example.com\r\nRCPT TO:<x@example.com>"])
        no_rcpt = handler.send_built_message(message, rcpt_tos=[])
        bad_sender = handler.send_built_message(message, rcpt_tos=["ann@example.com"], mail_from="nobody")
    assert {r.status for r in (bad_rcpt, no_rcpt, bad_sender)} == {SMTPDeliveryStatus.INVALID}
    assert server.connections == 0
