"""Fixtures for the wire-adapter integration tests: endpoints of the session's private Dovecot, and a scripted
IMAP peer for the few cases no real server here produces (no STARTTLS offered, LOGINDISABLED, silence).

``dovecot`` and ``mail_user`` are re-exported here too, so this folder also runs on its own
(``--confcutdir``); the server behind them is one per process either way (reference counted).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from email_service.protocols.imap import ImapEndpoint
from tests.support.dovecot import Dovecot, dovecot, mail_user
from tests.support.hosts import LOOPBACK_PEERS

__all__ = ["dovecot", "mail_user"]

EndpointFactory = Callable[..., ImapEndpoint]


@pytest.fixture
def imap_endpoint(dovecot: Dovecot, mail_user: tuple[str, str]) -> EndpointFactory:
    """``make(encryption="starttls", trust=True, **overrides)`` -> an endpoint of ``mail_user`` on Dovecot.

    ``encryption`` picks the port (``tls`` -> IMAPS); ``trust=False`` leaves out the test CA.
    """

    def make(encryption: str = "starttls", *, trust: bool = True, **overrides: object) -> ImapEndpoint:
        port = dovecot.imaps_port if encryption == "tls" else dovecot.imap_port
        fields: dict[str, object] = {
            "host": "127.0.0.1",
            "port": port,
            "encryption": encryption,
            "username": mail_user[0],
            "password": mail_user[1],
            "ca_bundle": str(dovecot.ca_cert_path) if trust else None,
            "timeout": 10.0,
            "host_policy": LOOPBACK_PEERS,
        }
        fields.update(overrides)
        return ImapEndpoint(**fields)  # type: ignore[arg-type]

    return make


class ScriptedPeer:
    """A one-connection scripted IMAP server: ``port``, and ``verbs`` it received in order.

    It answers CAPABILITY and LOGOUT; LOGIN gets OK when ``accept_login`` else ``NO [PRIVACYREQUIRED]``;
    any other command gets no answer at all (a server that hangs); ``greet=False`` never says hello.
    """

    def __init__(self, capabilities: str, *, greet: bool, accept_login: bool) -> None:
        self.capabilities, self.greet, self.accept_login = capabilities, greet, accept_login
        self.verbs: list[str] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            connection, _ = self.listener.accept()
            with connection, connection.makefile("rwb") as stream:
                if self.greet:
                    stream.write(f"* OK [CAPABILITY {self.capabilities}] scripted peer ready\r\n".encode())
                    stream.flush()
                for line in stream:
                    if self._answer(stream, line.decode(errors="replace").strip()):
                        return

    def _answer(self, stream: Any, line: str) -> bool:
        tag, _, command = line.partition(" ")
        verb = command.split(" ")[0].upper()
        self.verbs.append(verb)
        if verb == "CAPABILITY":
            stream.write(f"* CAPABILITY {self.capabilities}\r\n{tag} OK done\r\n".encode())
        elif verb == "LOGOUT":
            stream.write(f"* BYE bye\r\n{tag} OK done\r\n".encode())
        elif verb == "LOGIN":
            reply = "OK logged in" if self.accept_login else "NO [PRIVACYREQUIRED] scripted peer refuses LOGIN"
            stream.write(f"{tag} {reply}\r\n".encode())
        stream.flush()
        return verb == "LOGOUT"

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self.thread.join(timeout=5)


@pytest.fixture
def scripted_imap() -> Iterator[Callable[..., ScriptedPeer]]:
    """``start(capabilities="IMAP4rev1", greet=True, accept_login=False) -> ScriptedPeer``."""
    peers: list[ScriptedPeer] = []

    def start(capabilities: str = "IMAP4rev1", *, greet: bool = True, accept_login: bool = False) -> ScriptedPeer:
        peers.append(ScriptedPeer(capabilities, greet=greet, accept_login=accept_login))
        return peers[-1]

    yield start
    for peer in peers:
        peer.close()
