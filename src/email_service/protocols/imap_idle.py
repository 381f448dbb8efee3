"""IMAP IDLE (RFC 2177) on an :class:`~email_service.protocols.imap.ImapSession`: wait for the server to announce
changes of the selected mailbox.

:class:`IdleSession` is an ``ImapSession`` (same guarded connector, TLS verification, login and errors) with three
more steps: :meth:`IdleSession.idle_start` sends ``IDLE`` and waits for the continuation, :meth:`IdleSession.
idle_wait` blocks until the server sends untagged responses (or a timeout, or :meth:`IdleSession.wake` from another
thread), and :meth:`IdleSession.idle_done` sends ``DONE`` and reads the tagged end.  What the caller acts on is the
list of :class:`IdleEvent` (``EXISTS``, ``EXPUNGE``, ``FETCH``, ``VANISHED`` of RFC 7162 section 3.2.10 when
QRESYNC is enabled, ``RECENT``); status lines such as Dovecot's ``* OK Still here`` are not events.

Why not imapclient's ``idle_check``: it polls only the socket, so a response already read into imaplib's buffer
together with the ``+ idling`` continuation waits until the next packet; and it reports a closed connection as "no
responses", which a caller cannot tell from silence.  Here a closed connection raises :class:`ConnectionFailed`
(the caller reconnects), and buffered bytes count as readable.  Responses are read with imaplib's own
``_get_response`` (literals included), through imapclient's ``_imap`` like the rest of the adapter.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from email_service.protocols.errors import ConnectionFailed, ProtocolError
from email_service.protocols.imap import ImapEndpoint, ImapSession

__all__ = ["IDLE_EVENT_KINDS", "IdleEvent", "IdleSession"]

#: Untagged responses during IDLE that mean the selected mailbox changed (RFC 3501 7.3-7.4, RFC 7162 3.2.10).
IDLE_EVENT_KINDS = ("EXISTS", "EXPUNGE", "FETCH", "VANISHED", "RECENT")


@dataclass(frozen=True)
class IdleEvent:
    """One untagged response seen in IDLE: ``kind`` (one of :data:`IDLE_EVENT_KINDS`) and its text, e.g.
    ``IdleEvent("EXISTS", "12")`` or ``IdleEvent("FETCH", "3 (FLAGS (\\\\Seen))")``."""

    kind: str
    data: str


class IdleSession(ImapSession):
    """An :class:`ImapSession` that can IDLE on its selected mailbox (RFC 2177).

    One thread drives it; :meth:`wake` is the only method another thread may call.  Between :meth:`idle_start`
    and :meth:`idle_done` no other command may be sent (RFC 2177 section 3).
    """

    def __init__(self, endpoint: ImapEndpoint) -> None:
        super().__init__(endpoint)
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._wake_reader.setblocking(False)
        self._idle_tag: bytes | None = None

    @property
    def supports_idle(self) -> bool:
        """True when the server announced IDLE after login (RFC 2177 section 1)."""
        return "IDLE" in self.capabilities

    @property
    def idling(self) -> bool:
        """True between :meth:`idle_start` and :meth:`idle_done`."""
        return self._idle_tag is not None

    def close(self) -> None:
        """LOGOUT (after ``DONE`` when idling) and close; never raises, idempotent."""
        if self._idle_tag is not None and self._client is not None:
            with contextlib.suppress(Exception):
                self.idle_done()
        self._idle_tag = None
        super().close()

    def __enter__(self) -> Self:
        """Connect; a failed connection releases the wake-up socket pair too."""
        try:
            self.connect()
        except BaseException:
            self._release_wake()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """:meth:`close`, then release the wake-up socket pair (the session cannot be used again)."""
        self.close()
        self._release_wake()

    def _release_wake(self) -> None:
        for sock in (self._wake_reader, self._wake_writer):
            with contextlib.suppress(OSError):
                sock.close()

    def wake(self) -> None:
        """Make a blocked :meth:`idle_wait` return now (from any thread); never raises."""
        with contextlib.suppress(OSError):
            self._wake_writer.send(b"\0")

    def idle_start(self) -> list[IdleEvent]:
        """Send ``IDLE`` and wait for the server's continuation (RFC 2177 section 3).

        Returns events the server sent before the continuation.  Raises :class:`ProtocolError` when the server
        refuses IDLE (a tagged NO/BAD), :class:`ConnectionFailed` when the connection breaks.
        """
        client = self._require_selected()
        imap = client._imap
        imap.untagged_responses.clear()  # what SELECT reported is the baseline, not news
        with self._errors("starting IDLE"):
            tag = imap._command("IDLE")
            while imap._get_response() is not None:  # untagged lines before "+ idling" are stored by imaplib
                if tag in imap.tagged_commands and imap.tagged_commands[tag] is not None:
                    typ, data = imap.tagged_commands.pop(tag)
                    raise ProtocolError(
                        f"IMAP server {self.endpoint.host} refused IDLE: {typ} {data!r}", server_text=str(data)
                    )
        self._idle_tag = tag
        return self._collect(imap)

    def idle_wait(self, timeout: float) -> list[IdleEvent]:
        """Wait up to ``timeout`` seconds for untagged responses while idling; returns the events read (empty on a
        timeout or a :meth:`wake`).

        Raises :class:`ConnectionFailed` when the server closed the connection (EOF, ``* BYE``) or it broke.
        """
        client = self._require_selected()
        if self._idle_tag is None:
            raise ProtocolError("idle_wait() needs idle_start() first")
        imap = client._imap
        with self._errors("waiting in IDLE"):
            if self._has_buffered(imap) or self._poll(client, timeout):
                imap._get_response()
                while self._has_buffered(imap) or self._poll(client, 0):
                    imap._get_response()
        return self._collect(imap)

    def idle_done(self) -> list[IdleEvent]:
        """Send ``DONE`` and read up to the tagged end of IDLE; returns the events that came meanwhile.

        Raises :class:`ConnectionFailed` when the connection breaks, :class:`ProtocolError` on a NO/BAD end.
        """
        client = self._require_selected()
        tag, self._idle_tag = self._idle_tag, None
        if tag is None:
            return []
        imap = client._imap
        with self._errors("ending IDLE"):
            imap.send(b"DONE\r\n")
            typ, data = imap._command_complete("IDLE", tag)
            client._checkok("idle", typ, data)
        return self._collect(imap)

    def _collect(self, imap: Any) -> list[IdleEvent]:
        """The events imaplib stored since the last call; a ``* BYE`` raises :class:`ConnectionFailed`.

        Every other stored response (``* OK Still here`` ...) is dropped, so that days of idling keep no history.
        """
        bye = imap.untagged_responses.pop("BYE", None)
        if bye:
            client, self._client, self._selected, self._idle_tag = self._client, None, None, None
            if client is not None:
                self._shutdown(client, graceful=False)
            text = bye[-1].decode("utf-8", "replace") if isinstance(bye[-1], bytes) else str(bye[-1])
            raise ConnectionFailed(f"IMAP server {self.endpoint.host} closed the connection: {text}")
        events: list[IdleEvent] = []
        for kind in IDLE_EVENT_KINDS:
            for data in imap.untagged_responses.get(kind, []):
                text = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)
                events.append(IdleEvent(kind, text))
        imap.untagged_responses.clear()
        return events

    @staticmethod
    def _has_buffered(imap: Any) -> bool:
        """True when bytes of a response already sit in imaplib's reader (or the TLS layer) unread.

        A non-blocking ``peek`` takes what is buffered without waiting; the socket's timeout is restored after.
        """
        sock = imap.sock
        timeout = sock.gettimeout()
        sock.setblocking(False)
        try:
            return bool(imap.file.peek(1))
        except (BlockingIOError, ssl.SSLWantReadError):
            return False
        finally:
            sock.settimeout(timeout)

    def _poll(self, client: Any, timeout: float) -> bool:
        """Block up to ``timeout`` s until the connection is readable (True) or a wake-up arrives (False)."""
        poller = select.poll()
        connection = client.socket()
        poller.register(connection.fileno(), select.POLLIN)
        poller.register(self._wake_reader.fileno(), select.POLLIN)
        ready = {fd for fd, _ in poller.poll(max(0.0, timeout) * 1000)}
        if self._wake_reader.fileno() in ready:
            with contextlib.suppress(OSError):
                while self._wake_reader.recv(64):
                    pass
        return connection.fileno() in ready
