"""Real SMTP peers for the transport tests: aiosmtpd ``Controller`` in-process on a free loopback port.

Fixtures:
    ``tls_material``: a throw-away CA, a server certificate it signs for ``localhost``/``127.0.0.1``, one for
        the name ``localhost`` only, one for another host name, and one from an untrusted CA (made with
        ``cryptography``).
    ``smtp_server``: a factory ``smtp_server(tls="none"|"starttls"|"implicit", cert="good"|"name_only"|
        "untrusted"|"wrong_host", **smtp_kwargs) -> SMTPServer`` whose servers are stopped after the test.

The recording handler keeps what the server actually received (envelope and bytes) and can be scripted to
refuse recipients at RCPT or answer MAIL/DATA with queued replies.  AUTH accepts ``user`` / ``secret`` (PLAIN,
LOGIN) and the XOAUTH2 token ``good-token`` for ``user``.
"""

from __future__ import annotations

import base64
import email
import email.policy
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any, Literal

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.support.certs import make_ca, write_ca, write_server_files

HOST = "127.0.0.1"
USER = "user"
PASSWORD = "secret"
TOKEN = "good-token"


# -- certificates --------------------------------------------------------------------------------


@dataclass(frozen=True)
class TLSMaterial:
    ca_bundle: str
    certs: dict[str, tuple[str, str]]  # name -> (cert path, key path)

    def server_context(self, cert: str) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert_path, key_path = self.certs[cert]
        context.load_cert_chain(cert_path, key_path)
        return context


@pytest.fixture(scope="session")
def tls_material(tmp_path_factory: pytest.TempPathFactory) -> TLSMaterial:
    directory = tmp_path_factory.mktemp("smtp-tls")
    trusted, rogue = make_ca(), make_ca("untrusted CA")
    ca_bundle = write_ca(trusted, directory / "ca.pem")
    signed = {
        "good": (trusted, ("localhost", HOST)),
        "name_only": (trusted, ("localhost",)),
        "wrong_host": (trusted, ("mail.other.example",)),
        "untrusted": (rogue, ("localhost", HOST)),
    }
    certs: dict[str, tuple[str, str]] = {}
    for name, (ca, hosts) in signed.items():
        cert_path, key_path = write_server_files(ca, hosts, directory / f"{name}.pem", directory / f"{name}.key")
        certs[name] = (str(cert_path), str(key_path))
    return TLSMaterial(ca_bundle=str(ca_bundle), certs=certs)


# -- server --------------------------------------------------------------------------------


@dataclass
class Received:
    """One message as the server got it."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    peer: Any

    @property
    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class RecordingHandler:
    """aiosmtpd handler: records deliveries; scriptable RCPT refusals, MAIL and DATA replies."""

    messages: list[Received] = field(default_factory=list)
    refuse_rcpt: dict[str, str] = field(default_factory=dict)
    mail_replies: list[str] = field(default_factory=list)
    data_replies: list[str] = field(default_factory=list)
    auth_logins: list[str] = field(default_factory=list)

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if self.mail_replies:
            reply = self.mail_replies.pop(0)
            if not reply.startswith("250"):
                return reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if address in self.refuse_rcpt:
            return self.refuse_rcpt[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.data_replies:
            reply = self.data_replies.pop(0)
            if not reply.startswith("250"):
                return reply
        self.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.content, session.peer))
        return "250 Message accepted for delivery"

    async def auth_XOAUTH2(self, server: Any, args: list[str]) -> AuthResult:
        # https://developers.google.com/gmail/imap/xoauth2-protocol: initial response only, 535 on failure
        decoded = base64.b64decode(args[1]).decode() if len(args) > 1 else ""
        fields = dict(part.split("=", 1) for part in decoded.split("\x01") if "=" in part)
        ok = fields.get("user") == USER and fields.get("auth") == f"Bearer {TOKEN}"
        if ok:
            self.auth_logins.append(f"XOAUTH2:{fields['user']}")
        return AuthResult(success=ok, handled=False)


def _authenticator(handler: RecordingHandler) -> Callable[..., AuthResult]:
    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        ok = auth_data.login == USER.encode() and auth_data.password == PASSWORD.encode()
        if ok:
            handler.auth_logins.append(f"{mechanism}:{auth_data.login.decode()}")
        return AuthResult(success=ok, handled=False)

    return authenticate


class _CountingController(Controller):
    """Binds port 0 (the OS picks a free port) and counts client connections."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.connections = 0
        self._count_lock = threading.Lock()

    def factory(self) -> Any:
        with self._count_lock:
            self.connections += 1
        return super().factory()

    def _trigger_server(self) -> None:
        assert self.server is not None
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


@dataclass
class SMTPServer:
    host: str
    port: int
    handler: RecordingHandler
    controller: _CountingController
    ca_bundle: str | None

    @property
    def connections(self) -> int:
        """Client connections accepted since the server became ready."""
        return self.controller.connections


Tls = Literal["none", "starttls", "implicit"]


@pytest.fixture
def smtp_server(tls_material: TLSMaterial) -> Iterator[Callable[..., SMTPServer]]:
    started: list[_CountingController] = []

    def start(*, tls: Tls = "none", cert: str = "good", **smtp_kwargs: Any) -> SMTPServer:
        handler = RecordingHandler()
        kwargs: dict[str, Any] = {"authenticator": _authenticator(handler), **smtp_kwargs}
        if tls == "starttls":
            kwargs["tls_context"] = tls_material.server_context(cert)
        elif tls == "implicit":
            kwargs["ssl_context"] = tls_material.server_context(cert)
            kwargs.setdefault("auth_require_tls", False)  # aiosmtpd does not see implicit TLS
        else:
            kwargs.setdefault("auth_require_tls", False)
        controller = _CountingController(handler, hostname=HOST, port=0, **kwargs)
        controller.start()
        started.append(controller)
        controller.connections = 0  # forget the controller's own readiness probe
        return SMTPServer(HOST, controller.port, handler, controller, tls_material.ca_bundle)

    yield start
    for controller in started:
        controller.stop()


@pytest.fixture
def sleeps() -> list[float]:
    """Record of the delays a handler asked to sleep (pass ``sleeps.append`` as ``sleep=``)."""
    return []
