"""The guarded connector's address table and host policy (protocols/net.py; DESIGN.md sections 2 and 10).

IP literals go through the real ``socket.getaddrinfo`` (a numeric host never touches DNS); names resolve through a
table-driven resolver of the same shape, so a name can point at several addresses without a DNS server.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Sequence
from typing import Any

import pytest

from email_service.config import Settings
from email_service.errors import ConfigurationError
from email_service.protocols.errors import HostNotAllowed
from email_service.protocols.net import PUBLIC_ONLY, HostPolicy, check_host, open_tcp, open_tls
from email_service.services.hosts import mail_host_policy

REFUSED_V4 = [
    ("10.0.0.1", "private"),
    ("10.255.255.255", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.254", "private"),
    ("192.168.1.1", "private"),
    ("127.0.0.1", "loopback"),
    ("127.1.2.3", "loopback"),
    ("169.254.169.254", "link-local"),
    ("100.64.0.1", "carrier-grade NAT"),
    ("100.127.255.254", "carrier-grade NAT"),
    ("0.0.0.0", "unspecified"),  # noqa: S104  (an address to refuse, not to bind)
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "broadcast"),
    ("192.0.2.10", "documentation"),
    ("198.18.0.1", "benchmarking"),
]
REFUSED_V6 = [
    ("::1", "loopback"),
    ("::", "unspecified"),
    ("fe80::1", "link-local"),
    ("febf:ffff::1", "link-local"),
    ("fc00::1", "unique local"),
    ("fd12:3456:789a::1", "unique local"),
    ("ff02::1", "multicast"),
    ("ff0e::1", "multicast"),
    ("2001:db8::1", "documentation"),
    ("::127.0.0.1", "IPv4-compatible"),
    ("4000::1", "outside 2000::/3"),
]
EMBEDDED = [
    ("::ffff:127.0.0.1", "IPv4-mapped", "127.0.0.1, loopback"),
    ("::ffff:10.0.0.1", "IPv4-mapped", "10.0.0.1, private"),
    ("64:ff9b::7f00:1", "NAT64", "127.0.0.1, loopback"),
    ("64:ff9b::a9fe:a9fe", "NAT64", "169.254.169.254, link-local"),
    ("2002:7f00:1::", "6to4", "127.0.0.1, loopback"),
    ("2002:c0a8:101::1", "6to4", "192.168.1.1, private"),
    # Teredo: server 65.54.227.120, client 10.0.0.1 stored inverted (RFC 4380 section 4)
    ("2001:0:4136:e378:8000:63bf:f5ff:fffe", "Teredo", "10.0.0.1, private"),
    # Teredo whose server is internal
    ("2001:0:a00:1:8000:63bf:f7f7:f7f7", "Teredo", "10.0.0.1, private"),
]
PUBLIC = [
    "8.8.8.8",
    "93.184.216.34",
    "172.15.255.255",
    "172.32.0.1",
    "100.63.255.255",
    "100.128.0.1",
    "2606:4700:4700::1111",
    "2a00:1450:4001:80b::200e",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",
    "2002:808:808::1",
    "2001:0:4136:e378:8000:63bf:f7f7:f7f7",  # Teredo, server 65.54.227.120, client 8.8.8.8
]


def table_resolver(table: dict[str, Sequence[str]]) -> Any:
    """A ``getaddrinfo``-shaped resolver answering from ``{name: [address, ...]}`` (``gaierror`` otherwise)."""

    def resolve(host: str, port: int | None, family: int, type_: int) -> list[tuple[Any, ...]]:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        infos: list[tuple[Any, ...]] = []
        for address in table[host]:
            if ":" in address:
                infos.append((socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port or 0, 0, 0)))
            else:
                infos.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port or 0)))
        return infos

    return resolve


@pytest.mark.parametrize(("address", "reason"), REFUSED_V4 + REFUSED_V6)
def test_non_public_literals_are_refused_with_the_reason(address: str, reason: str) -> None:
    with pytest.raises(HostNotAllowed) as caught:
        check_host(address, PUBLIC_ONLY)
    assert reason in caught.value.reason
    assert ipaddress.ip_address(caught.value.address) == ipaddress.ip_address(address)
    assert repr(address) in caught.value.message and reason in caught.value.message


@pytest.mark.parametrize(("address", "form", "carried"), EMBEDDED)
def test_ipv6_forms_are_judged_by_the_ipv4_address_they_carry(address: str, form: str, carried: str) -> None:
    with pytest.raises(HostNotAllowed) as caught:
        check_host(address, PUBLIC_ONLY)
    assert form in caught.value.reason and carried in caught.value.reason


@pytest.mark.parametrize("address", PUBLIC)
def test_public_literals_pass_and_keep_their_address(address: str) -> None:
    (resolved,) = check_host(address, PUBLIC_ONLY, port=993)
    assert resolved.sockaddr[1] == 993
    assert resolved.address == ipaddress.ip_address(address) == ipaddress.ip_address(resolved.sockaddr[0])


def test_bracketed_ipv6_literal_is_checked_like_the_bare_one() -> None:
    with pytest.raises(HostNotAllowed, match="loopback"):
        check_host("[::1]", PUBLIC_ONLY)


def test_a_name_with_one_internal_address_among_public_ones_is_refused() -> None:
    resolver = table_resolver({"mail.example.com": ["93.184.216.34", "2606:4700::1", "10.0.0.5"]})
    with pytest.raises(HostNotAllowed) as caught:
        check_host("mail.example.com", PUBLIC_ONLY, resolver=resolver)
    assert caught.value.address == "10.0.0.5" and caught.value.host == "mail.example.com"
    assert "'mail.example.com' resolves to 10.0.0.5" in caught.value.message


def test_a_name_with_only_public_addresses_gives_them_in_resolver_order() -> None:
    resolver = table_resolver({"mail.example.com": ["2606:4700::1", "93.184.216.34"]})
    resolved = check_host("Mail.Example.COM.", PUBLIC_ONLY, port=587, resolver=resolver)
    assert [(r.family, r.sockaddr) for r in resolved] == [
        (socket.AF_INET6, ("2606:4700::1", 587, 0, 0)),
        (socket.AF_INET, ("93.184.216.34", 587)),
    ]


def test_allow_list_by_name_allows_that_name_only() -> None:
    policy = HostPolicy.from_allowlist(["mail.internal.example", " "])
    resolver = table_resolver({"mail.internal.example": ["10.0.0.5", "::1"], "other.example": ["10.0.0.5"]})
    assert len(check_host("MAIL.internal.example.", policy, resolver=resolver)) == 2
    with pytest.raises(HostNotAllowed):
        check_host("other.example", policy, resolver=resolver)


def test_allow_list_by_network_and_address() -> None:
    policy = HostPolicy.from_allowlist(["10.1.0.0/16", "127.0.0.1", "fd00::/8"])
    resolver = table_resolver({"localhost": ["127.0.0.1"], "dual": ["127.0.0.1", "::1"]})
    for allowed in ("10.1.2.3", "127.0.0.1", "fd00::25"):
        check_host(allowed, policy)
    assert check_host("localhost", policy, resolver=resolver)[0].sockaddr[0] == "127.0.0.1"
    for refused in ("10.2.0.1", "127.0.0.2", "fe80::1"):
        with pytest.raises(HostNotAllowed):
            check_host(refused, policy)
    with pytest.raises(HostNotAllowed, match="::1"):
        check_host("dual", policy, resolver=resolver)


def test_allow_private_mode_allows_every_address() -> None:
    policy = HostPolicy(allow_private=True)
    for address, _reason in REFUSED_V4 + REFUSED_V6:
        check_host(address, policy)


def test_unresolvable_names_are_resolver_errors_not_refusals() -> None:
    with pytest.raises(socket.gaierror):
        check_host("nowhere.example", PUBLIC_ONLY, resolver=table_resolver({}))
    with pytest.raises(socket.gaierror):
        check_host("a" * 64 + ".example", PUBLIC_ONLY)  # an IDNA label over 63 octets


def test_malformed_network_in_the_allow_list() -> None:
    with pytest.raises(ValueError, match=r"10\.0\.0\.0/33"):
        HostPolicy.from_allowlist(["10.0.0.0/33"])
    with pytest.raises(ConfigurationError, match="MAIL_HOST_ALLOWLIST"):
        mail_host_policy(Settings(mail_host_allowlist=("mail.example.com", "10.0.0.0/33")))


def test_policy_from_settings() -> None:
    production = mail_host_policy(Settings(allow_private_mail_hosts=False, mail_host_allowlist=("Mail.Corp.",)))
    assert production == HostPolicy(False, frozenset({"mail.corp"}), ())
    assert mail_host_policy(Settings()).allow_private is True  # the embedded development default


def test_open_tcp_refuses_before_dialling() -> None:
    with pytest.raises(HostNotAllowed, match="loopback"):
        open_tcp("127.0.0.1", 1, policy=PUBLIC_ONLY, timeout=1)


def test_open_tls_needs_a_verifying_context() -> None:
    unverified = ssl.create_default_context()
    unverified.check_hostname = False
    with pytest.raises(ValueError, match="verify"):
        open_tls("mail.example.com", 993, policy=PUBLIC_ONLY, timeout=1, context=unverified)
