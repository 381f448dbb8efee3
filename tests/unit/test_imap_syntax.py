"""Pure IMAP helpers: mailbox roles (RFC 6154 and common names), sequence sets (RFC 3501 section 9), flag
keywords, COPYUID (RFC 4315) and the RFC 5530 codes that mean "try again later"."""

from __future__ import annotations

import imaplib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from email_service.protocols.imap import ImapEndpoint, mailbox_role, sequence_set
from email_service.protocols.imap_syntax import (
    is_flag,
    is_keyword,
    is_transient_refusal,
    parse_copyuid,
    parse_sequence_set,
    server_text,
)


@pytest.mark.parametrize(
    ("name", "flags", "delimiter", "role"),
    [
        ("INBOX", (), "/", "inbox"),
        ("inbox", (), None, "inbox"),
        ("Archive/INBOX", (), "/", "custom"),  # only the whole name INBOX is special (RFC 3501 5.1)
        ("Gesendet", ("\\HasNoChildren", "\\Sent"), "/", "sent"),  # SPECIAL-USE wins over the name
        ("Whatever", ("\\JUNK",), "/", "spam"),  # attributes are case-insensitive
        ("[Gmail]/All Mail", ("\\All",), "/", "custom"),  # a view of every message, not a place
        ("[Gmail]/Starred", ("\\Flagged",), "/", "custom"),
        ("[Gmail]/Sent Mail", (), "/", "sent"),
        ("INBOX.Sent Items", (), ".", "sent"),
        ("INBOX.Sent Items", (), None, "sent"),
        ("Sent Messages", (), "/", "sent"),
        ("Deleted Items", (), "/", "trash"),
        ("Deleted Messages", (), "/", "trash"),
        ("Junk E-mail", (), "/", "spam"),
        ("SPAM", (), "/", "spam"),
        ("Drafts", (), "/", "drafts"),
        ("Archives", (), "/", "archive"),
        ("Projects/Sent", (), "/", "sent"),
        ("Sent.2024", (), "/", "custom"),  # with a known delimiter "." is part of the name
        ("Resent", (), "/", "custom"),
    ],
)
def test_mailbox_role(name: str, flags: tuple[str, ...], delimiter: str | None, role: str) -> None:
    assert mailbox_role(name, flags, delimiter) == role


@pytest.mark.parametrize(
    ("uids", "text"),
    [([], ""), ([5], "5"), ([3, 1, 2, 7, 9, 8, 2], "1:3,7:9"), ([10, 12, 14], "10,12,14")],
)
def test_sequence_set(uids: list[int], text: str) -> None:
    assert sequence_set(uids) == text


@given(st.sets(st.integers(min_value=1, max_value=5000), max_size=300))
def test_sequence_set_round_trips(uids: set[int]) -> None:
    text = sequence_set(uids)
    assert (parse_sequence_set(text) == sorted(uids)) if uids else (text == "")


def test_parse_sequence_set_tolerates_reversed_ranges_and_junk() -> None:
    assert parse_sequence_set("9:7,x,3,4:*") == [7, 8, 9, 3]


def test_server_text_unwraps_imaplib_reprs() -> None:
    assert server_text(imaplib.IMAP4.error("b'[AUTHENTICATIONFAILED] Authentication failed.'")) == (
        "[AUTHENTICATIONFAILED] Authentication failed."
    )
    assert server_text(imaplib.IMAP4.error(b"NO such thing")) == "NO such thing"
    assert server_text(imaplib.IMAP4.error("select failed: Mailbox doesn't exist")) == "Mailbox doesn't exist"
    assert len(server_text(imaplib.IMAP4.error("x" * 5000))) == 300


def test_endpoint_validates_encryption_and_masks_password() -> None:
    endpoint = ImapEndpoint("imap.example.com", 993, "tls", "user@example.com", "hunter2-secret")
    assert "hunter2-secret" not in repr(endpoint) and "password='***'" in repr(endpoint)
    with pytest.raises(ValueError, match="encryption"):
        ImapEndpoint("imap.example.com", 993, "ssl", "user", "pw")


@pytest.mark.parametrize(
    ("value", "keyword", "flag"),
    [
        ("$Important", True, True),
        ("Project-X", True, True),
        ("$label1", True, True),
        ("\\Seen", False, True),  # a system flag, not a keyword
        ("two words", False, False),
        ("a(b", False, False),
        ("x]", False, False),
        ('say"', False, False),
        ("50%", False, False),
        ("all*", False, False),
        ("{3}", False, False),
        ("Ünïcode", False, False),  # atoms are ASCII (RFC 3501 section 9)
        ("x\n", False, False),  # a trailing line feed would end the command line
        ("\\Seen\r\nA1 LOGOUT", False, False),
        ("", False, False),
    ],
)
def test_keywords_and_flags_are_atoms(value: str, keyword: bool, flag: bool) -> None:
    assert is_keyword(value) is keyword
    assert is_flag(value) is flag


def test_copyuid_maps_source_to_destination_uids_in_order() -> None:
    assert parse_copyuid("38505 304,319:320 3956:3958") == (38505, {304: 3956, 319: 3957, 320: 3958})
    assert parse_copyuid("7 5:3 10:12") == (7, {3: 10, 4: 11, 5: 12})  # a range may be written high:low
    assert parse_copyuid("7 1,2 10") is None  # sets of different sizes
    assert parse_copyuid("x 1 2") is None and parse_copyuid("7 1") is None


@given(st.lists(st.integers(1, 10_000), min_size=1, max_size=50, unique=True))
def test_copyuid_round_trips_with_sequence_sets(uids: list[int]) -> None:
    ordered = sorted(uids)
    targets = [1000 + index for index in range(len(ordered))]
    assert parse_copyuid(f"9 {sequence_set(ordered)} {sequence_set(targets)}") == (
        9,
        dict(zip(ordered, targets, strict=True)),
    )


def test_transient_refusals_are_the_rfc_5530_try_later_codes() -> None:
    assert is_transient_refusal("[UNAVAILABLE] Temporary failure") and is_transient_refusal("[inuse] locked")
    assert not is_transient_refusal("[NONEXISTENT] Mailbox doesn't exist") and not is_transient_refusal("No such")
