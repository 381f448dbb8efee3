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

import pytest

from email_service.protocols.imap import ImapEndpoint
from tests.support.dovecot import Dovecot, dovecot, mail_user

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
        }
        fields.update(overrides)
        return ImapEndpoint(**fields)  # type: ignore[arg-type]

    return make


def _serve_script(listener: socket.socket, capabilities: str, greet: bool) -> None:
    with contextlib.suppress(OSError):
        connection, _ = listener.accept()
        with connection, connection.makefile("rwb") as stream:
            if not greet:
                stream.read()  # say nothing until the client gives up
                return
            stream.write(f"* OK [CAPABILITY {capabilities}] scripted peer ready\r\n".encode())
            stream.flush()
            for line in stream:
                tag, _, command = line.decode().strip().partition(" ")
                verb = command.split(" ")[0].upper()
                if verb == "CAPABILITY":
                    stream.write(f"* CAPABILITY {capabilities}\r\n{tag} OK done\r\n".encode())
                elif verb == "LOGOUT":
                    stream.write(f"* BYE bye\r\n{tag} OK done\r\n".encode())
                    stream.flush()
                    return
                else:
                    stream.write(f"{tag} NO [PRIVACYREQUIRED] scripted peer refuses {verb}\r\n".encode())
                stream.flush()


@pytest.fixture
def scripted_imap() -> Iterator[Callable[..., int]]:
    """``start(capabilities="IMAP4rev1", greet=True) -> port`` of a one-connection scripted IMAP peer."""
    listeners: list[socket.socket] = []
    threads: list[threading.Thread] = []

    def start(capabilities: str = "IMAP4rev1", *, greet: bool = True) -> int:
        listener = socket.create_server(("127.0.0.1", 0))
        listeners.append(listener)
        thread = threading.Thread(target=_serve_script, args=(listener, capabilities, greet), daemon=True)
        thread.start()
        threads.append(thread)
        return int(listener.getsockname()[1])

    yield start
    for listener in listeners:
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)
        listener.close()
    for thread in threads:
        thread.join(timeout=5)
