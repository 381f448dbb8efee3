"""Mail server connections through the API: verified TLS (MAIL_CA_BUNDLE), STARTTLS, POP3, host rules.

Every IMAP/POP3 TLS connection verifies the server certificate; the private Dovecot's certificate is signed by a
test CA that the service trusts only when ``MAIL_CA_BUNDLE`` names it (issue 2 section 5, DESIGN.md section 2).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from email_service.app import create_app
from email_service.services.context import build_context
from email_service.tasks.runner import InProcessJobRunner
from tests.conftest import Caller, account_body, create_imap_account, make_settings
from tests.support.dovecot import Dovecot
from tests.support.mirror import create_pop3_account, sync_now

pytestmark = pytest.mark.integration


@pytest.fixture
def trusting(data_dir: Path, database_urls: tuple[str, str], dovecot: Dovecot) -> Any:
    """An app (and its context, with its own job runner) that trusts the Dovecot test CA through MAIL_CA_BUNDLE."""
    settings = make_settings(data_dir, database_urls, MAIL_CA_BUNDLE=str(dovecot.ca_cert_path))
    runner = InProcessJobRunner(workers=1)
    ctx = build_context(settings, jobs=runner)
    runner.bind(ctx)
    yield create_app(context=ctx), ctx
    runner.shutdown(wait=True)
    ctx.db.dispose()


def _test(client: FlaskClient, caller: Caller, account_id: str) -> dict[str, Any]:
    response = client.post(f"/api/v1/accounts/{account_id}/test", headers=caller.headers)
    assert response.status_code == 200
    return dict(response.get_json())


@pytest.mark.parametrize(("encryption", "port_attr"), [("tls", "imaps_port"), ("starttls", "imap_port")])
def test_tls_with_the_configured_ca_logs_in_and_syncs(
    trusting: Any, dovecot: Dovecot, mail_user: tuple[str, str], encryption: str, port_attr: str
) -> None:
    app, ctx = trusting
    client = app.test_client()
    caller = Caller(ctx)
    user, password = mail_user
    dovecot.append(user, "INBOX", b"From: a@example.com\r\nSubject: over TLS\r\n\r\nhi\r\n")
    port = getattr(dovecot, port_attr)
    account_id = create_imap_account(client, caller, "localhost", port, user, password, encryption=encryption)
    report = _test(client, caller, account_id)
    assert report["success"] is True, report
    assert sync_now(client, caller, account_id)["state"] == "succeeded"
    messages = client.get(f"/api/v1/accounts/{account_id}/messages", headers=caller.headers).get_json()
    assert [m["subject"] for m in messages["messages"]] == ["over TLS"]


@pytest.mark.parametrize(("encryption", "port_attr"), [("tls", "imaps_port"), ("starttls", "imap_port")])
def test_tls_without_the_ca_is_refused_with_a_clean_error(
    client: FlaskClient, caller: Caller, dovecot: Dovecot, mail_user: tuple[str, str], encryption: str, port_attr: str
) -> None:
    user, password = mail_user
    account_id = create_imap_account(
        client, caller, "localhost", getattr(dovecot, port_attr), user, password, encryption=encryption
    )
    report = _test(client, caller, account_id)
    assert report["success"] is False and report["errorKind"] == "TLSError"
    assert "MAIL_CA_BUNDLE" in report["error"], report
    assert password not in (report["error"] or "")


@pytest.mark.parametrize(("encryption", "port_attr"), [("tls", "pop3s_port"), ("starttls", "pop3_port")])
def test_pop3_over_tls_verifies_the_certificate(
    trusting: Any,
    client: FlaskClient,
    caller: Caller,
    dovecot: Dovecot,
    mail_user: tuple[str, str],
    encryption: str,
    port_attr: str,
) -> None:
    user, password = mail_user
    body = account_body(
        protocol="pop3",
        hostname="localhost",
        port=getattr(dovecot, port_attr),
        encryption=encryption,
        username=user,
        password=password,
        emailAddress=user,
    )
    app, ctx = trusting
    trusted_client, trusted_caller = app.test_client(), Caller(ctx)
    created = trusted_client.post("/api/v1/accounts", headers=trusted_caller.headers, json=body).get_json()
    assert _test(trusted_client, trusted_caller, created["id"])["success"] is True
    untrusted = client.post("/api/v1/accounts", headers=caller.headers, json=body).get_json()
    report = _test(client, caller, untrusted["id"])
    assert report["success"] is False and report["errorKind"] == "TLSError", report
    assert "MAIL_CA_BUNDLE" in report["error"]


def test_pop3_account_login_test(
    client: FlaskClient, caller: Caller, dovecot: Dovecot, mail_user: tuple[str, str]
) -> None:
    user, password = mail_user
    dovecot.append(user, "INBOX", b"From: a@example.com\r\nSubject: pop\r\n\r\nhi\r\n")
    body = account_body(
        protocol="pop3",
        hostname=dovecot.host,
        port=dovecot.pop3_port,
        encryption="none",
        username=user,
        password=password,
        emailAddress=user,
    )
    created = client.post("/api/v1/accounts", headers=caller.headers, json=body).get_json()
    report = _test(client, caller, created["id"])
    assert report == {**report, "success": True, "protocol": "pop3", "messageCount": 1}
    wrong = client.post(
        "/api/v1/accounts",
        headers=caller.headers,
        json={**body, "password": "wrong", "emailAddress": "other-" + user},
    ).get_json()
    failed = _test(client, caller, wrong["id"])
    assert failed["success"] is False and failed["errorKind"] == "AuthenticationFailed"


@pytest.mark.parametrize(("encryption", "port_attr"), [("tls", "pop3s_port"), ("starttls", "pop3_port")])
def test_pop3_mirroring_over_verified_tls(
    trusting: Any, client: FlaskClient, dovecot: Dovecot, mail_user: tuple[str, str], encryption: str, port_attr: str
) -> None:
    """POP3S (RFC 8314) and STLS (RFC 2595): synced when the CA is trusted, a clean TLSError when it is not."""
    user, password = mail_user
    dovecot.append(user, "INBOX", b"From: a@example.com\r\nSubject: pop over TLS\r\n\r\nhi\r\n")
    port = getattr(dovecot, port_attr)
    app, ctx = trusting
    trusted_client, trusted_caller = app.test_client(), Caller(ctx)
    account_id = create_pop3_account(trusted_client, trusted_caller, "localhost", port, user, password, encryption)
    status = sync_now(trusted_client, trusted_caller, account_id)
    assert status["state"] == "succeeded" and status["counts"]["messagesAdded"] == 1, status
    listing = trusted_client.get(f"/api/v1/accounts/{account_id}/messages", headers=trusted_caller.headers)
    assert [m["subject"] for m in listing.get_json()["messages"]] == ["pop over TLS"]

    caller = Caller(ctx)  # the session's app trusts only the system store
    untrusted = create_pop3_account(client, caller, "localhost", port, user, password, encryption)
    status = sync_now(client, caller, untrusted)
    assert status["state"] == "failed" and status["lastError"]["kind"] == "TLSError", status
    assert password not in status["lastError"]["message"]


def test_production_host_rules_refuse_private_addresses_unless_allow_listed(
    data_dir: Path, database_urls: tuple[str, str]
) -> None:
    base = {"ALLOW_PRIVATE_MAIL_HOSTS": "false"}
    refusing = create_app(settings=make_settings(data_dir, database_urls, **base))
    caller = Caller(refusing.extensions["email_service"])
    for host in ("127.0.0.1", "localhost", "10.1.2.3", "169.254.169.254", "127.1.2.3"):
        response = refusing.test_client().post(
            "/api/v1/accounts", headers=caller.headers, json=account_body(hostname=host)
        )
        assert response.status_code == 400, (host, response.get_json())
        assert "non-public" in response.get_json()["message"]
    allowing = create_app(settings=make_settings(data_dir, database_urls, MAIL_HOST_ALLOWLIST="127.0.0.1", **base))
    caller = Caller(allowing.extensions["email_service"])
    response = allowing.test_client().post(
        "/api/v1/accounts", headers=caller.headers, json=account_body(hostname="127.0.0.1")
    )
    assert response.status_code == 201
