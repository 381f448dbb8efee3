"""A TCP relay in front of an IMAP server that records every command a client sends, and can hold connections.

Point an account at ``relay.port`` instead of the server's: bytes pass through unchanged both ways, and each
client command line is recorded as its verb (``"LOGIN"``, ``"SELECT"``, ``"UID STORE"``, ``"UID MOVE"`` ...)
in ``commands``, so a test can count the commands on the wire.  Literals (``{n}`` / ``{n+}``) are skipped, not
parsed as commands.  Plain IMAP only (a TLS stream would be opaque).

``hold()`` makes new connections wait (accepted, but nothing forwarded, so no greeting arrives) until
``release()``, which drops the held ones: a mail server that is unreachable for a while.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
from types import TracebackType
from typing import Self

_LITERAL = re.compile(rb"\{(\d+)\+?\}\r\n$")


class ImapRelay:
    """Relay ``127.0.0.1:port`` -> ``(host, target_port)``; use as a context manager or call :meth:`close`."""

    def __init__(self, host: str, target_port: int) -> None:
        self.target = (host, target_port)
        self.commands: list[str] = []
        self._lock = threading.Lock()
        self._released = threading.Event()
        self._released.set()
        self._held: list[socket.socket] = []
        self._open: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._thread = threading.Thread(target=self._accept, name="imap-relay", daemon=True)
        self._thread.start()

    def verbs(self, *names: str) -> list[str]:
        """The recorded commands (only those named, when names are given)."""
        with self._lock:
            return [c for c in self.commands if not names or c in names]

    def reset(self) -> None:
        """Forget the commands recorded so far."""
        with self._lock:
            self.commands.clear()

    def hold(self) -> None:
        """From now on, accept connections but forward nothing until :meth:`release`."""
        self._released.clear()

    def release(self) -> None:
        """Forward new connections again; connections held meanwhile are closed."""
        with self._lock:
            held, self._held = self._held, []
        for client in held:
            with contextlib.suppress(OSError):
                client.close()
        self._released.set()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self._released.is_set():
                with self._lock:
                    self._held.append(client)
                continue
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        try:
            server = socket.create_connection(self.target, timeout=10)
        except OSError:
            client.close()
            return
        server.settimeout(None)
        with self._lock:
            self._open += [client, server]
        threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()
        self._pump(client, server, True)

    def _pump(self, source: socket.socket, sink: socket.socket, record: bool) -> None:
        pending = b""
        skip = 0
        try:
            while data := source.recv(65536):
                sink.sendall(data)
                if record:
                    pending, skip = self._record(pending + data, skip)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def _record(self, buffer: bytes, skip: int) -> tuple[bytes, int]:
        """Record the complete command lines in ``buffer``; return what is left and the literal bytes to skip."""
        while True:
            if skip:
                taken = min(skip, len(buffer))
                buffer, skip = buffer[taken:], skip - taken
                if skip:
                    return buffer, skip
            end = buffer.find(b"\r\n")
            if end < 0:
                return buffer, 0
            line, buffer = buffer[: end + 2], buffer[end + 2 :]
            literal = _LITERAL.search(line)
            words = line.split()
            if len(words) >= 2 and not line.startswith((b" ", b"+")):
                verb = words[1].decode("ascii", "replace").upper()
                if verb == "UID" and len(words) >= 3:
                    verb += " " + words[2].decode("ascii", "replace").upper()
                with self._lock:
                    self.commands.append(verb)
            if literal:
                skip = int(literal.group(1))

    def close(self) -> None:
        """Stop accepting and close every connection."""
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        with contextlib.suppress(OSError):
            self._listener.close()
        self.release()
        with self._lock:
            sockets, self._open = self._open, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
