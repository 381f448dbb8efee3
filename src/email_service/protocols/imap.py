"""IMAP wire adapter over ``imapclient``: RFC 3501 / 9051, RFC 6154 SPECIAL-USE, RFC 7162 CONDSTORE/QRESYNC.

:class:`ImapSession` is one authenticated connection of one account: it lists mailboxes with their roles,
SELECTs one, and reads UIDs, messages and flags in batches.  It never decides what to store; the sync engine
does (DESIGN.md section 7).  Everything crossing this boundary is plain ``str``/``int``/``bytes`` in frozen
dataclasses; every failure is one of :mod:`email_service.protocols.errors` with the server's text as evidence
and never the password.

Speed: ``imapclient`` parses responses in Python, so messages are fetched many per ``UID FETCH``
(``batch_size``) with a compact UID set (``1:200``).  UID FETCH, and LIST with RETURN, are sent through
imapclient's underlying imaplib object (``_imap``; imapclient is pinned), because ``IMAPClient.fetch`` cannot
take a range and LIST cannot take RETURN options.
"""

from __future__ import annotations

import contextlib
import imaplib
import re
import ssl
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from imapclient.response_parser import parse_fetch_response

from email_service.protocols.errors import (
    AuthenticationFailed,
    ConnectionFailed,
    MailboxError,
    ProtocolError,
    TemporaryFailure,
    TLSError,
)
from email_service.protocols.imap_connect import GuardedIMAPClient
from email_service.protocols.imap_syntax import (
    ROLES,
    decode_atom,
    epoch_ms,
    flag_strings,
    mailbox_role,
    modseq_value,
    parse_sequence_set,
    sequence_set,
    server_text,
    transport_error,
)
from email_service.protocols.imap_types import FetchedMessage, MailboxInfo, MailboxStatus
from email_service.protocols.imap_write import CopyResult, ImapWriteCommands, StoreResult
from email_service.protocols.net import PUBLIC_ONLY, HostPolicy
from email_service.protocols.tls import client_ssl_context

_ESEARCH_ALL = re.compile(r"\bALL\s+([0-9:,]+)", re.IGNORECASE)
_PLAIN_SEARCH_LIMIT = 100_000  # messages; a SEARCH line of 100,000 UIDs stays well under imaplib's 1 MB
#: The largest UID there can be (RFC 3501 section 9: nz-number, 32 bits).
MAX_UID = 4_294_967_295

__all__ = [
    "ENCRYPTIONS",
    "MAX_UID",
    "ROLES",
    "CopyResult",
    "FetchedMessage",
    "ImapEndpoint",
    "ImapSession",
    "MailboxInfo",
    "MailboxStatus",
    "StoreResult",
    "mailbox_role",
    "sequence_set",
]

ENCRYPTIONS = ("none", "tls", "starttls")


@dataclass(frozen=True, repr=False)
class ImapEndpoint:
    """Where and how to log in: ``encryption`` is ``none``, ``tls`` (implicit TLS, RFC 8314) or ``starttls``.

    ``ca_bundle`` is a PEM file of extra trusted CAs; ``timeout`` (seconds) bounds connect and every read;
    ``host_policy`` says which non-public hosts may be dialled (default none, the production rule).
    The password never appears in ``repr``.  Raises ``ValueError`` for an unknown ``encryption``.
    """

    host: str
    port: int
    encryption: str
    username: str
    password: str = field(compare=False)
    ca_bundle: str | None = None
    timeout: float = 30.0
    host_policy: HostPolicy = PUBLIC_ONLY

    def __post_init__(self) -> None:
        if self.encryption not in ENCRYPTIONS:
            raise ValueError(f"encryption must be one of {', '.join(ENCRYPTIONS)}, not {self.encryption!r}")

    def __repr__(self) -> str:
        return (
            f"ImapEndpoint(host={self.host!r}, port={self.port}, encryption={self.encryption!r}, "
            f"username={self.username!r}, password='***', ca_bundle={self.ca_bundle!r}, "
            f"timeout={self.timeout}, host_policy={self.host_policy!r})"
        )


class ImapSession(ImapWriteCommands):
    """One IMAP connection for one :class:`ImapEndpoint`; use as a context manager (connects, then logs out).

    Not thread-safe: one session per worker.  All methods except :meth:`connect` and :meth:`close` need a
    connected session; message methods need a mailbox selected with :meth:`select`.  The commands that change
    the server (flags, move, expunge, mailbox CRUD) come from :class:`ImapWriteCommands`.
    """

    def __init__(self, endpoint: ImapEndpoint) -> None:
        self.endpoint = endpoint
        self._client: Any = None
        self._capabilities: frozenset[str] = frozenset()
        self._enabled: frozenset[str] = frozenset()
        self._selected: str | None = None
        self._exists = 0

    def __enter__(self) -> Self:
        self.connect()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def capabilities(self) -> frozenset[str]:
        """Upper-case capability names after LOGIN (RFC 3501 section 7.2.1), e.g. ``{"QRESYNC", ...}``."""
        return self._capabilities

    @property
    def condstore(self) -> bool:
        """True when MODSEQ/CHANGEDSINCE can be used (RFC 7162 CONDSTORE enabled or implied)."""
        return "CONDSTORE" in self._enabled or "QRESYNC" in self._enabled

    @property
    def qresync(self) -> bool:
        """True when QRESYNC is enabled (RFC 7162 section 3.2): :meth:`vanished` works."""
        return "QRESYNC" in self._enabled

    # -- errors ---------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _errors(self, action: str, *, mailbox: str | None = None) -> Iterator[None]:
        """Translate errors raised while doing ``action``: transport failures drop the connection (the caller
        reconnects); NO/BAD answers become :class:`MailboxError` (with ``mailbox``) or :class:`ProtocolError`."""
        where = f"IMAP server {self.endpoint.host}:{self.endpoint.port}"
        try:
            yield
        except ProtocolError:
            raise
        except (imaplib.IMAP4.abort, OSError) as exc:
            client, self._client, self._selected = self._client, None, None
            if client is not None:
                self._shutdown(client, graceful=False)
            raise transport_error(exc, where, action, self.endpoint.timeout) from exc
        except imaplib.IMAP4.error as exc:  # NO/BAD answers (imapclient's errors derive from it)
            text = server_text(exc)
            kind = MailboxError if mailbox is not None else ProtocolError
            raise kind(f"{where} refused {action}: {text}", server_text=text) from exc

    def _require(self) -> Any:
        if self._client is None:
            raise ConnectionFailed("The IMAP session is not connected; call connect() first.")
        return self._client

    def _require_selected(self) -> Any:
        client = self._require()
        if self._selected is None:
            raise MailboxError("No mailbox is selected; call select() first.")
        return client

    # -- connection -----------------------------------------------------------------------------------------

    def connect(self) -> None:
        """Connect, secure (implicit TLS or STARTTLS), LOGIN and ENABLE CONDSTORE/QRESYNC when offered.

        The socket comes from the guarded connector under ``endpoint.host_policy``; certificates are verified
        against the host name with the system store plus ``endpoint.ca_bundle`` (RFC 8314, RFC 2595).
        Idempotent.  Raises :class:`HostNotAllowed` (refused by the policy, nothing dialled),
        :class:`ConnectionFailed` (DNS, refused, timeout), :class:`TLSError` (certificate, handshake, STARTTLS not
        offered, LOGINDISABLED, CA bundle unreadable), :class:`AuthenticationFailed` (credentials refused, with
        the server's text).
        """
        if self._client is not None:
            return
        endpoint = self.endpoint
        context = client_ssl_context(endpoint.ca_bundle) if endpoint.encryption != "none" else None
        with self._errors("connecting"):
            client = GuardedIMAPClient(
                endpoint.host,
                port=endpoint.port,
                ssl=endpoint.encryption == "tls",
                ssl_context=context,
                timeout=endpoint.timeout,
                policy=endpoint.host_policy,
            )
        try:
            client.normalise_times = False  # keep INTERNALDATE's zone; we convert to UTC epoch ms
            if endpoint.encryption == "starttls":
                self._starttls(client, context)
            self._login(client)
            with self._errors("reading capabilities"):
                self._capabilities = frozenset(decode_atom(c).upper() for c in client.capabilities())
                self._enabled = self._enable(client)
        except BaseException as exc:
            self._shutdown(client, graceful=not isinstance(exc, ConnectionFailed))
            raise
        self._client = client

    def _starttls(self, client: Any, context: ssl.SSLContext | None) -> None:
        with self._errors("starting TLS"):
            offered = {decode_atom(c).upper() for c in client.capabilities()}
            if "STARTTLS" not in offered:
                raise TLSError(
                    f"IMAP server {self.endpoint.host}:{self.endpoint.port} does not offer STARTTLS; "
                    "refusing to log in without encryption."
                )
            client.starttls(context)

    def _login(self, client: Any) -> None:
        endpoint = self.endpoint
        with self._errors("logging in"):
            offered = {decode_atom(c).upper() for c in client.capabilities()}
        if "LOGINDISABLED" in offered:
            raise TLSError(
                f"IMAP server {endpoint.host}:{endpoint.port} does not allow LOGIN without TLS "
                "(LOGINDISABLED); use encryption 'tls' or 'starttls'."
            )
        with self._errors("logging in"):
            try:
                if (endpoint.username + endpoint.password).isascii():
                    client.login(endpoint.username, endpoint.password)
                elif "AUTH=PLAIN" in offered:  # RFC 4616: UTF-8 credentials
                    client.plain_login(endpoint.username, endpoint.password)
                else:
                    raise AuthenticationFailed(
                        f"The credentials for {endpoint.username!r} contain non-ASCII characters and IMAP "
                        f"server {endpoint.host} offers no AUTH=PLAIN to send them."
                    )
            except imaplib.IMAP4.abort:
                raise
            except imaplib.IMAP4.error as exc:
                raise self._login_refused(server_text(exc)) from None

    def _login_refused(self, text: str) -> ProtocolError:
        """Error for a refused LOGIN, by RFC 5530 response code: credentials, TLS needed, or try later."""
        endpoint = self.endpoint
        if "[PRIVACYREQUIRED]" in text.upper():
            return TLSError(f"IMAP server {endpoint.host} requires TLS before LOGIN: {text}", server_text=text)
        if "[UNAVAILABLE]" in text.upper():
            message = f"IMAP server {endpoint.host} cannot log in {endpoint.username!r} right now: {text}"
            return TemporaryFailure(message, server_text=text)
        message = f"IMAP server {endpoint.host} refused the login of {endpoint.username!r}: {text}"
        return AuthenticationFailed(message, server_text=text)

    def _enable(self, client: Any) -> frozenset[str]:
        """ENABLE QRESYNC (implies CONDSTORE) or CONDSTORE (RFC 5161, RFC 7162 section 3.2.3)."""
        caps = self._capabilities
        wanted = [c for c in ("CONDSTORE", "QRESYNC") if c in caps]
        if not wanted:
            return frozenset()
        if "ENABLE" not in caps:
            # Without ENABLE, CONDSTORE is enabled by the first FETCH ... MODSEQ (RFC 7162 section 3.1).
            return frozenset({"CONDSTORE"})
        try:
            enabled = {decode_atom(c).upper() for c in client.enable(*wanted)}
        except imaplib.IMAP4.abort:
            raise
        except imaplib.IMAP4.error:  # a refused ENABLE is not fatal: go on without CONDSTORE/QRESYNC
            return frozenset()
        if "QRESYNC" in enabled:
            enabled.add("CONDSTORE")
        return frozenset(enabled)

    @staticmethod
    def _shutdown(client: Any, *, graceful: bool = True) -> None:
        """LOGOUT (unless the connection is known broken: that could wait a whole timeout) and close."""
        if graceful:
            with contextlib.suppress(Exception):
                client.logout()
        with contextlib.suppress(Exception):
            client.shutdown()

    def close(self) -> None:
        """LOGOUT and close the socket; never raises, idempotent."""
        client, self._client, self._selected = self._client, None, None
        if client is not None:
            self._shutdown(client)

    # -- mailboxes ------------------------------------------------------------------------------------------

    def list_mailboxes(self) -> list[MailboxInfo]:
        """LIST "" "*" (``RETURN (SPECIAL-USE)`` when LIST-EXTENDED and SPECIAL-USE are offered, RFC 6154).

        Returns every mailbox, INBOX first, then by name.  Roles come from :func:`mailbox_role`; a role given
        by a SPECIAL-USE attribute anywhere suppresses guesses of the same role from other mailboxes' names.
        Raises :class:`ProtocolError` if LIST is refused, :class:`ConnectionFailed` if the connection breaks.
        """
        client = self._require()
        caps = self._capabilities
        with self._errors("listing mailboxes"):
            if {"LIST-EXTENDED", "SPECIAL-USE"} <= caps:
                imap = client._imap
                typ, data = imap._simple_command("LIST", b'""', b'"*"', b"RETURN (SPECIAL-USE)")
                client._checkok("list", typ, data)
                typ, data = imap._untagged_response(typ, data, "LIST")
                entries = client._proc_folder_list(data)
            else:
                entries = client.list_folders()
        listed = [(str(name), decode_atom(delim) if delim else None, tuple(decode_atom(f) for f in flags))
                  for flags, delim, name in entries]  # fmt: skip
        flagged_roles = {mailbox_role("", flags) for _, _, flags in listed} - {"custom"}
        infos: list[MailboxInfo] = []
        for name, delimiter, flags in listed:
            role = mailbox_role(name, flags, delimiter)
            if role in flagged_roles and role != mailbox_role("", flags):
                role = "custom"  # a name guess loses to the server's SPECIAL-USE attribute elsewhere
            selectable = not {f.lower() for f in flags} & {"\\noselect", "\\nonexistent"}
            infos.append(MailboxInfo(name, delimiter, flags, role, selectable))
        infos.sort(key=lambda info: (info.role != "inbox", info.name.casefold(), info.name))
        return infos

    def select(self, name: str, readonly: bool = True) -> MailboxStatus:
        """SELECT (or EXAMINE when ``readonly``) ``name`` (RFC 3501 section 6.3.1/6.3.2).

        Returns UIDVALIDITY, UIDNEXT, EXISTS and HIGHESTMODSEQ (RFC 7162; ``None`` without CONDSTORE or with
        NOMODSEQ).  A server that omits UIDNEXT gets ``max(uid) + 1`` (1 when empty).  Raises
        :class:`MailboxError` when the server refuses (no such mailbox, not selectable) or omits UIDVALIDITY.
        """
        client = self._require()
        self._selected = None
        with self._errors(f"selecting mailbox {name!r}", mailbox=name):
            response = client.select_folder(name, readonly=readonly)
        if b"UIDVALIDITY" not in response:
            raise MailboxError(f"IMAP server {self.endpoint.host} sent no UIDVALIDITY for mailbox {name!r}.")
        self._selected = name
        exists = self._exists = int(response.get(b"EXISTS", 0))
        highestmodseq = response.get(b"HIGHESTMODSEQ") if b"NOMODSEQ" not in response else None
        uidnext = response.get(b"UIDNEXT")
        if uidnext is None:
            uids = self.all_uids() if exists else []
            uidnext = max(uids, default=0) + 1
        return MailboxStatus(
            uidvalidity=int(response[b"UIDVALIDITY"]),
            uidnext=int(uidnext),
            exists=exists,
            highestmodseq=int(highestmodseq) if highestmodseq is not None else None,
        )

    def mailbox_exists(self, name: str) -> bool:
        """Whether ``LIST "" <name>`` still shows ``name`` as an existing mailbox (not ``\\NonExistent``).

        Tells a refused SELECT of a mailbox deleted meanwhile from one the server refuses to open (servers do not
        all send RFC 5530 ``[NONEXISTENT]``).  Wildcards in ``name`` are matched literally by comparing names.
        """
        client = self._require()
        with self._errors(f"listing mailbox {name!r}"):
            entries = client.list_folders("", name)
        return any(
            str(listed) == name and "\\nonexistent" not in {decode_atom(f).lower() for f in flags}
            for flags, _delimiter, listed in entries
        )

    # -- UIDs, messages, flags ------------------------------------------------------------------------------

    def uids_in(self, low: int, high: int) -> list[int]:
        """UIDs from ``low`` to ``high`` (inclusive) in the selected mailbox, ascending (``UID SEARCH UID low:high``).

        Both bounds are explicit: ``n:*`` would match the last message even when its UID is below ``n`` (RFC 3501
        section 6.4.8, ``*`` is the largest UID *in use*).  An empty range (``high < max(low, 1)``) sends nothing.
        """
        low = max(1, low)
        if high < low:
            return []
        return [uid for uid in self._search_uids(f"UID {low}:{high}", f"{low}:{high}") if low <= uid <= high]

    def all_uids(self) -> list[int]:
        """Every UID in the selected mailbox, ascending (``UID SEARCH ALL``); used to detect expunges."""
        return self._search_uids("ALL", "1:*")

    def _search_uids(self, criteria: str, uid_set: str) -> list[int]:
        """UIDs matching ``criteria`` (which must select the same messages as ``uid_set``), ascending.

        With ESEARCH (RFC 4731) the answer is a compact sequence-set.  A plain SEARCH answer is one line, and
        imaplib refuses lines over 1 MB (~150,000 UIDs), so big mailboxes without ESEARCH use ``UID FETCH
        <uid_set> (UID)`` instead, one short line per message.
        """
        client = self._require_selected()
        with self._errors("searching UIDs", mailbox=self._selected):
            if "ESEARCH" in self._capabilities:
                imap = client._imap
                imap.untagged_responses.pop("ESEARCH", None)
                typ, data = imap._simple_command("UID", "SEARCH", "RETURN", "(ALL)", criteria)
                client._checkok("search", typ, data)
                lines = imap.untagged_responses.pop("ESEARCH", [])
                found = {uid for line in lines for match in _ESEARCH_ALL.finditer(decode_atom(line))
                         for uid in parse_sequence_set(match.group(1))}  # fmt: skip
                return sorted(found)
            if self._exists <= _PLAIN_SEARCH_LIMIT:
                return sorted(client.search(criteria))
        return sorted(self._uid_fetch(uid_set, "(UID)"))

    def _uid_fetch(self, uids: Sequence[int] | str | None, items: str, modifiers: str | None = None) -> dict[int, Any]:
        """``UID FETCH <set> <items> [<modifiers>]`` -> ``{uid: {item: value}}``; ``uids`` is a list, a
        sequence-set text, or ``None`` for ``1:*``."""
        client = self._require_selected()
        uid_set = "1:*" if uids is None else uids if isinstance(uids, str) else sequence_set(uids)
        args = [uid_set, items] + ([modifiers] if modifiers else [])
        with self._errors("fetching messages", mailbox=self._selected):
            imap = client._imap
            tag = imap._command("UID", "FETCH", *args)
            typ, data = imap._command_complete("FETCH", tag)
            client._checkok("fetch", typ, data)
            typ, data = imap._untagged_response(typ, data, "FETCH")
            response: dict[int, Any] = parse_fetch_response(data, False, True)
        return response

    def fetch_messages(self, uids: Sequence[int], batch_size: int = 200) -> Iterator[FetchedMessage]:
        """Fetch whole messages: ``UID FETCH (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[] [MODSEQ])``.

        ``uids`` are fetched ``batch_size`` per command and yielded in the caller's order (duplicates once);
        UIDs no longer in the mailbox are skipped.  BODY.PEEK leaves ``\\Seen`` alone (RFC 3501 6.4.5).
        Each batch is complete before its messages are yielded, so the caller may run other commands between.
        Raises :class:`MailboxError` (refused) or :class:`ConnectionFailed` (broken connection).
        """
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        items = "(UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[]" + (" MODSEQ)" if self.condstore else ")")
        ordered = list(dict.fromkeys(uids))
        for start in range(0, len(ordered), batch_size):
            batch = ordered[start : start + batch_size]
            response = self._uid_fetch(batch, items)
            for uid in batch:
                data = response.get(uid)
                if data is None or b"RFC822.SIZE" not in data:
                    continue
                raw = data.get(b"BODY[]") or b""
                yield FetchedMessage(
                    uid=uid,
                    flags=flag_strings(data.get(b"FLAGS", ())),
                    internaldate_ms=epoch_ms(data.get(b"INTERNALDATE")),
                    size=int(data[b"RFC822.SIZE"]),
                    modseq=modseq_value(data.get(b"MODSEQ")),
                    raw=bytes(raw),
                )

    def fetch_flags(
        self,
        uids: Sequence[int] | None = None,
        changedsince: int | None = None,
        batch_size: int = 5000,
        *,
        up_to: int | None = None,
    ) -> dict[int, tuple[tuple[str, ...], int | None]]:
        """Flags (and MODSEQ) of ``uids``: ``{uid: (flags, modseq)}``.  ``uids=None`` means every message with a
        UID up to ``up_to`` (``UID FETCH 1:<up_to>``; all of them, ``1:*``, when ``up_to`` is ``None``).

        With ``changedsince`` and CONDSTORE, only messages whose MODSEQ is above it are returned (RFC 7162
        section 3.1.4.1, ``UID FETCH ... (FLAGS MODSEQ) (CHANGEDSINCE n)``).  Without CONDSTORE
        ``changedsince`` is ignored and every requested message is returned (a superset, still correct for
        merging) with ``modseq`` ``None``.  ``\\Recent`` is dropped.
        """
        items = "(UID FLAGS MODSEQ)" if self.condstore else "(UID FLAGS)"
        modifiers = f"(CHANGEDSINCE {int(changedsince)})" if changedsince is not None and self.condstore else None
        if uids is None:
            if up_to is not None and up_to < 1:
                return {}
            batches: list[Sequence[int] | str | None] = [None if up_to is None else f"1:{int(up_to)}"]
        else:
            wanted = sorted(set(uids))
            batches = [wanted[i : i + batch_size] for i in range(0, len(wanted), batch_size)]
        result: dict[int, tuple[tuple[str, ...], int | None]] = {}
        for batch in batches:
            response = self._uid_fetch(batch, items, modifiers)
            allowed = None if batch is None or isinstance(batch, str) else set(batch)
            for uid, data in response.items():
                if b"FLAGS" in data and (allowed is None or uid in allowed):
                    result[uid] = (flag_strings(data[b"FLAGS"]), modseq_value(data.get(b"MODSEQ")))
        return result

    def vanished(self, changedsince: int, up_to: int = MAX_UID) -> list[int]:
        """UIDs up to ``up_to`` expunged since MODSEQ ``changedsince``, ascending (RFC 7162 sections 3.2.6, 3.2.10).

        Sends ``UID FETCH 1:<up_to> (UID) (CHANGEDSINCE n VANISHED)`` and collects its ``VANISHED (EARLIER)``
        answer plus every unsolicited ``VANISHED`` this session received since :meth:`select`.  The upper bound is
        explicit, never ``*``: ``*`` is the largest UID still in use (RFC 3501 section 9), so a server reading it
        strictly would not report an expunged message above the highest remaining one (pass the mailbox's
        ``uidnext - 1``, or keep the default 4294967295).  The server may name UIDs the client never saw; ignore
        those.  Needs QRESYNC (:attr:`qresync`), else :class:`MailboxError`.
        """
        client = self._require_selected()
        if not self.qresync:
            raise MailboxError(f"IMAP server {self.endpoint.host} has no QRESYNC; compare all_uids() instead.")
        if up_to < 1:
            return []
        self._uid_fetch(f"1:{int(up_to)}", "(UID)", f"(CHANGEDSINCE {int(changedsince)} VANISHED)")
        uids: set[int] = set()
        for line in client._imap.untagged_responses.pop("VANISHED", []):
            text = decode_atom(line).strip()
            if text.upper().startswith("(EARLIER)"):
                text = text[len("(EARLIER)") :].strip()
            uids.update(parse_sequence_set(text))
        return sorted(uids)
