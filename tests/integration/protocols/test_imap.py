"""ImapSession against a real private Dovecot (RFC 3501/9051, 6154, 7162); see tests/support/dovecot.py."""

from __future__ import annotations

import datetime as dt
import socket
from collections.abc import Callable

import pytest

from email_service.protocols import imap as imap_module
from email_service.protocols.errors import (
    AuthenticationFailed,
    ConnectionFailed,
    HostNotAllowed,
    MailboxError,
    TLSError,
)
from email_service.protocols.imap import ImapEndpoint, ImapSession
from email_service.protocols.net import PUBLIC_ONLY, HostPolicy
from tests.integration.protocols.conftest import ScriptedPeer
from tests.support.dovecot import Dovecot

pytestmark = pytest.mark.integration

EndpointFactory = Callable[..., ImapEndpoint]


def _raw(number: int, extra: bytes = b"") -> bytes:
    return (
        b"From: Alice <alice@example.com>\r\nTo: bob@example.net\r\n"
        b"Subject: message " + str(number).encode() + b"\r\nMessage-ID: <m" + str(number).encode() + b"@example.com>"
        b"\r\n\r\nBody " + str(number).encode() + b"\r\n" + extra
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- connecting and logging in -------------------------------------------------------------------------------


@pytest.mark.parametrize("encryption", ["none", "starttls", "tls"])
def test_login_works_and_enables_qresync(imap_endpoint: EndpointFactory, encryption: str) -> None:
    with ImapSession(imap_endpoint(encryption)) as session:
        assert {"IMAP4REV1", "CONDSTORE", "QRESYNC"} <= session.capabilities
        assert session.condstore and session.qresync
        assert "STARTTLS" not in session.capabilities or encryption != "tls"


def test_wrong_password_is_authentication_failed_with_server_text(imap_endpoint: EndpointFactory) -> None:
    endpoint = imap_endpoint(password="not-the-password-42")
    with pytest.raises(AuthenticationFailed) as caught:
        ImapSession(endpoint).connect()
    assert caught.value.server_text is not None
    assert "AUTHENTICATIONFAILED" in caught.value.server_text
    assert "AUTHENTICATIONFAILED" in str(caught.value)
    assert "not-the-password-42" not in str(caught.value)


def test_password_never_in_repr(imap_endpoint: EndpointFactory, mail_user: tuple[str, str]) -> None:
    endpoint = imap_endpoint()
    assert mail_user[1] not in repr(endpoint)
    assert "password='***'" in repr(endpoint)


def test_non_ascii_password_logs_in_with_auth_plain(dovecot: Dovecot, imap_endpoint: EndpointFactory) -> None:
    dovecot.add_user("unicode@example.test", "pässwörd-Ω")
    endpoint = imap_endpoint(username="unicode@example.test", password="pässwörd-Ω")
    with ImapSession(endpoint) as session:
        assert session.select("INBOX").exists == 0


def test_closed_port_is_connection_failed(imap_endpoint: EndpointFactory) -> None:
    with pytest.raises(ConnectionFailed) as caught:
        ImapSession(imap_endpoint("none", port=_free_port())).connect()
    assert not isinstance(caught.value, TLSError)
    assert "refused" in str(caught.value)


def test_unresolvable_host_is_connection_failed(imap_endpoint: EndpointFactory) -> None:
    with pytest.raises(ConnectionFailed, match="resolved"):
        ImapSession(imap_endpoint("none", host="no-such-host.invalid")).connect()


def test_silent_server_times_out_as_connection_failed(
    imap_endpoint: EndpointFactory, scripted_imap: Callable[..., ScriptedPeer]
) -> None:
    peer = scripted_imap(greet=False)
    with pytest.raises(ConnectionFailed, match=r"did not answer within 0\.5 s"):
        ImapSession(imap_endpoint("none", port=peer.port, timeout=0.5)).connect()


def test_hanging_server_mid_session_is_dropped_without_logout(
    imap_endpoint: EndpointFactory, scripted_imap: Callable[..., ScriptedPeer]
) -> None:
    peer = scripted_imap("IMAP4rev1", accept_login=True)
    session = ImapSession(imap_endpoint("none", port=peer.port, timeout=0.5))
    session.connect()
    with pytest.raises(ConnectionFailed, match=r"did not answer within 0\.5 s while selecting"):
        session.select("INBOX")
    with pytest.raises(ConnectionFailed, match="not connected"):
        session.all_uids()
    session.close()
    peer.close()
    assert peer.verbs[-1] == "EXAMINE"  # no LOGOUT sent into a connection known to hang


@pytest.mark.parametrize("encryption", ["starttls", "tls"])
def test_untrusted_certificate_is_tls_error_naming_mail_ca_bundle(
    imap_endpoint: EndpointFactory, encryption: str
) -> None:
    with pytest.raises(TLSError, match=r"certificate .* could not be verified .* MAIL_CA_BUNDLE"):
        ImapSession(imap_endpoint(encryption, trust=False)).connect()


@pytest.mark.parametrize("encryption", ["none", "starttls", "tls"])
def test_dials_by_name_through_the_guarded_connector(imap_endpoint: EndpointFactory, encryption: str) -> None:
    """The host name is resolved and checked by the connector, and TLS is verified against ``localhost``."""
    by_name = HostPolicy.from_allowlist(["localhost"])
    with ImapSession(imap_endpoint(encryption, host="localhost", host_policy=by_name)) as session:
        assert "IMAP4REV1" in session.capabilities
    with pytest.raises(HostNotAllowed, match=r"'localhost' resolves to 127\.0\.0\.1, a non-public address: loopback"):
        ImapSession(imap_endpoint(encryption, host="localhost", host_policy=PUBLIC_ONLY)).connect()


def test_implicit_tls_against_plain_port_is_tls_error(dovecot: Dovecot, imap_endpoint: EndpointFactory) -> None:
    with pytest.raises(TLSError, match="handshake"):
        ImapSession(imap_endpoint("tls", port=dovecot.imap_port)).connect()


def test_starttls_not_offered_is_refused(
    imap_endpoint: EndpointFactory, scripted_imap: Callable[..., ScriptedPeer]
) -> None:
    peer = scripted_imap("IMAP4rev1 AUTH=PLAIN")
    with pytest.raises(TLSError, match="does not offer STARTTLS"):
        ImapSession(imap_endpoint("starttls", port=peer.port)).connect()
    assert "LOGIN" not in peer.verbs


def test_logindisabled_is_tls_error(imap_endpoint: EndpointFactory, scripted_imap: Callable[..., ScriptedPeer]) -> None:
    peer = scripted_imap("IMAP4rev1 LOGINDISABLED")
    with pytest.raises(TLSError, match="LOGINDISABLED"):
        ImapSession(imap_endpoint("none", port=peer.port)).connect()
    assert "LOGIN" not in peer.verbs


def test_privacyrequired_login_refusal_is_tls_error(
    imap_endpoint: EndpointFactory, scripted_imap: Callable[..., ScriptedPeer]
) -> None:
    peer = scripted_imap("IMAP4rev1")
    with pytest.raises(TLSError, match="requires TLS before LOGIN") as caught:
        ImapSession(imap_endpoint("none", port=peer.port)).connect()
    assert caught.value.server_text is not None and "PRIVACYREQUIRED" in caught.value.server_text


# -- mailboxes -----------------------------------------------------------------------------------------------


def test_list_mailboxes_roles_from_special_use(
    dovecot: Dovecot, mail_user: tuple[str, str], imap_endpoint: EndpointFactory
) -> None:
    user = mail_user[0]
    for name in ("Projects/2024", "Entwürfe & Notizen", "Sent Items"):
        dovecot.create_mailbox(user, name)
    with ImapSession(imap_endpoint()) as session:
        mailboxes = session.list_mailboxes()
    by_name = {m.name: m for m in mailboxes}
    assert mailboxes[0].name == "INBOX" and mailboxes[0].role == "inbox"
    roles = {name: by_name[name].role for name in ("Sent", "Drafts", "Trash", "Junk", "Archive")}
    assert roles == {
        "Sent": "sent",
        "Drafts": "drafts",
        "Trash": "trash",
        "Junk": "spam",
        "Archive": "archive",
    }
    assert "\\Sent" in by_name["Sent"].flags
    # "Sent Items" would be guessed as sent by name, but the server names its Sent folder with SPECIAL-USE.
    assert by_name["Sent Items"].role == "custom"
    assert by_name["Projects/2024"].role == "custom" and by_name["Projects/2024"].delimiter == "/"
    assert by_name["Entwürfe & Notizen"].role == "custom"  # modified UTF-7 decoded to str
    # The parent of Projects/2024 was never created: listed as \NonExistent, not selectable (RFC 5258).
    assert "\\NonExistent" in by_name["Projects"].flags and not by_name["Projects"].selectable
    assert all(m.selectable for m in mailboxes if m.name != "Projects")


def test_select_reports_uidvalidity_uidnext_highestmodseq(
    dovecot: Dovecot, mail_user: tuple[str, str], imap_endpoint: EndpointFactory
) -> None:
    user = mail_user[0]
    for number in range(3):
        dovecot.append(user, "INBOX", _raw(number))
    with ImapSession(imap_endpoint()) as session:
        status = session.select("INBOX")
    assert status.exists == 3
    assert status.uidnext == 4
    assert status.uidvalidity == dovecot.uidvalidity(user, "INBOX")
    assert status.highestmodseq is not None and status.highestmodseq > 0


def test_select_missing_mailbox_is_mailbox_error(imap_endpoint: EndpointFactory) -> None:
    with ImapSession(imap_endpoint()) as session:
        with pytest.raises(MailboxError, match="No-Such-Folder") as caught:
            session.select("No-Such-Folder")
        assert caught.value.server_text
        with pytest.raises(MailboxError, match="select"):
            session.all_uids()  # nothing is selected after a failed SELECT
        assert session.select("INBOX").exists == 0


# -- messages, UIDs, flags -----------------------------------------------------------------------------------


def test_fetch_messages_returns_exact_bytes_in_caller_order(
    dovecot: Dovecot, mail_user: tuple[str, str], imap_endpoint: EndpointFactory
) -> None:
    user = mail_user[0]
    when = dt.datetime(2024, 2, 29, 23, 59, 58, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    raws = [
        _raw(0),
        _raw(1, b"8-bit: Gr\xc3\xbc\xc3\x9fe \xff\xfe\r\n"),
        _raw(2, b"".join(b"line %d\r\n" % i for i in range(2000))),
        _raw(3, b"no final newline"),
        _raw(4, b"\tleading tab, trailing spaces   \r\n.\r\n"),
    ]
    uids = [dovecot.append(user, "INBOX", raw, flags=["\\Flagged"] if i == 1 else [], internaldate=when)
            for i, raw in enumerate(raws)]  # fmt: skip
    wanted = [uids[4], uids[0], 999, uids[2], uids[1], uids[3], uids[0]]
    with ImapSession(imap_endpoint()) as session:
        session.select("INBOX")
        fetched = list(session.fetch_messages(wanted, batch_size=2))
    assert [m.uid for m in fetched] == [uids[4], uids[0], uids[2], uids[1], uids[3]]
    by_uid = {m.uid: m for m in fetched}
    for uid, raw in zip(uids, raws, strict=True):
        message = by_uid[uid]
        assert message.raw == raw
        assert message.size == len(raw)
        assert message.internaldate_ms == int(when.timestamp() * 1000)
        assert message.modseq is not None and message.modseq > 0
    assert by_uid[uids[1]].flags == ("\\Flagged",)
    assert by_uid[uids[0]].flags == ()


def test_fetch_messages_does_not_set_seen(
    dovecot: Dovecot, mail_user: tuple[str, str], imap_endpoint: EndpointFactory
) -> None:
    uid = dovecot.append(mail_user[0], "INBOX", _raw(1))
    with ImapSession(imap_endpoint()) as session:
        session.select("INBOX", readonly=False)
        assert [m.flags for m in session.fetch_messages([uid])] == [()]
        assert session.fetch_flags([uid])[uid][0] == ()


def test_uids_from_filters_the_star_quirk(
    dovecot: Dovecot, mail_user: tuple[str, str], imap_endpoint: EndpointFactory
) -> None:
    user = mail_user[0]
    uids = [dovecot.append(user, "INBOX", _raw(n)) for n in range(4)]
    assert uids == [1, 2, 3, 4]
    dovecot.expunge(user, "INBOX", 4)
    with ImapSession(imap_endpoint()) as session:
        session.select("INBOX")
        assert session.uids_from(2) == [2, 3]
        assert session.uids_from(0) == [1, 2, 3]
        assert session.uids_from(4) == []  # "4:*" matches UID 3, the last message
        assert session.uids_from(10) == []
        assert session.all_uids() == [1, 2, 3]


@pytest.mark.parametrize("path", ["esearch", "plain-search", "uid-fetch"])
def test_uid_listing_paths_agree(
    dovecot: Dovecot,
    mail_user: tuple[str, str],
    imap_endpoint: EndpointFactory,
    monkeypatch: pytest.MonkeyPatch,
    path: str,
) -> None:
    user = mail_user[0]
    dovecot.write_maildir(user, "INBOX", [_raw(n) for n in range(30)])
    for uid in (3, 4, 5, 17, 30):
        dovecot.expunge(user, "INBOX", uid)
    with ImapSession(imap_endpoint()) as session:
        session.select("INBOX")
        expected = [uid for uid in range(1, 31) if uid not in (3, 4, 5, 17, 30)]
        if path != "esearch":  # servers without RFC 4731 ESEARCH (Gmail, many others)
            monkeypatch.setattr(session, "_capabilities", session.capabilities - {"ESEARCH"})
        if path == "uid-fetch":  # a mailbox too big for one SEARCH line
            monkeypatch.setattr(imap_module, "_PLAIN_SEARCH_LIMIT", 0)
        assert session.all_uids() == expected
        assert session.uids_from(17) == [uid for uid in expected if uid >= 17]
        assert session.uids_from(30) == []  # "30:*" matches UID 29, the last one


def test_empty_mailbox_answers_empty(imap_endpoint: EndpointFactory) -> None:
    with ImapSession(imap_endpoint()) as session:
        session.select("Archive")
        assert session.all_uids() == []
        assert session.uids_from(1) == []
        assert session.fetch_flags() == {}
        assert list(session.fetch_messages([])) == []


def test_fetch_flags_changedsince_returns_only_changed(
    dovecot: Dovecot, mail_user: tuple[str, str], imap_endpoint: EndpointFactory
) -> None:
    user = mail_user[0]
    uids = [dovecot.append(user, "INBOX", _raw(n), flags=["\\Seen"]) for n in range(3)]
    with ImapSession(imap_endpoint()) as session:
        before = session.select("INBOX")
        assert before.highestmodseq is not None
        everything = session.fetch_flags()
        assert set(everything) == set(uids)
        assert all(flags == ("\\Seen",) for flags, _ in everything.values())
        dovecot.set_flags(user, "INBOX", uids[1], ["\\Seen", "\\Flagged", "$Important"])
        changed = session.fetch_flags(changedsince=before.highestmodseq)
        assert list(changed) == [uids[1]]
        flags, modseq = changed[uids[1]]
        assert set(flags) == {"\\Seen", "\\Flagged", "$Important"}
        assert modseq is not None and modseq > before.highestmodseq
        assert set(session.fetch_flags([uids[0], 999])) == {uids[0]}
        assert session.fetch_flags(changedsince=modseq) == {}


def test_vanished_reports_expunged_uids(
    dovecot: Dovecot, mail_user: tuple[str, str], imap_endpoint: EndpointFactory
) -> None:
    user = mail_user[0]
    uids = [dovecot.append(user, "INBOX", _raw(n)) for n in range(5)]
    with ImapSession(imap_endpoint()) as session:
        modseq = session.select("INBOX").highestmodseq
        assert modseq is not None
        dovecot.expunge(user, "INBOX", uids[1])  # seen live by this session (unsolicited VANISHED)
    dovecot.expunge(user, "INBOX", uids[3])  # happened while we were away (VANISHED (EARLIER))
    with ImapSession(imap_endpoint()) as session:
        session.select("INBOX")
        assert session.vanished(modseq) == [uids[1], uids[3]]
        assert session.all_uids() == [uids[0], uids[2], uids[4]]


def test_change_uidvalidity_changes_it(
    dovecot: Dovecot, mail_user: tuple[str, str], imap_endpoint: EndpointFactory
) -> None:
    user = mail_user[0]
    dovecot.append(user, "INBOX", _raw(1))
    with ImapSession(imap_endpoint()) as session:
        old = session.select("INBOX").uidvalidity
    new = dovecot.change_uidvalidity(user, "INBOX")
    with ImapSession(imap_endpoint()) as session:
        status = session.select("INBOX")
    assert status.uidvalidity == new != old
    assert status.exists == 1


def test_write_maildir_bulk_seeding_round_trips(
    dovecot: Dovecot, mail_user: tuple[str, str], imap_endpoint: EndpointFactory
) -> None:
    raws = [_raw(n) for n in range(50)]
    assert dovecot.write_maildir(mail_user[0], "Archive/2024", raws, flags=["\\Seen"]) == 50
    with ImapSession(imap_endpoint()) as session:
        status = session.select("Archive/2024")
        assert status.exists == 50 and status.uidnext == 51
        fetched = list(session.fetch_messages(session.all_uids(), batch_size=20))
    assert sorted(m.raw for m in fetched) == sorted(raws)
    assert all(m.flags == ("\\Seen",) for m in fetched)


def test_server_side_disconnect_drops_the_session(
    dovecot: Dovecot, mail_user: tuple[str, str], imap_endpoint: EndpointFactory
) -> None:
    uid = dovecot.append(mail_user[0], "INBOX", _raw(1))
    session = ImapSession(imap_endpoint())
    with session:
        session.select("INBOX")
        dovecot.kick(mail_user[0])
        with pytest.raises(ConnectionFailed, match=r"broke|Network error"):
            session.fetch_flags()
        with pytest.raises(ConnectionFailed, match="not connected"):
            session.list_mailboxes()
        session.connect()  # the caller reconnects and carries on
        session.select("INBOX")
        assert [m.uid for m in session.fetch_messages([uid])] == [uid]


def test_methods_need_connect_and_select(imap_endpoint: EndpointFactory) -> None:
    session = ImapSession(imap_endpoint())
    with pytest.raises(ConnectionFailed, match="not connected"):
        session.list_mailboxes()
    with session, pytest.raises(MailboxError, match="select"):
        session.uids_from(1)
    session.close()  # idempotent
