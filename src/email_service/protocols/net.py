"""The guarded connector: every TCP connection to a host that a user supplied (DESIGN.md sections 2, 3 and 10).

One mechanism for IMAP, POP3 and SMTP today, and for IDLE and webhooks later:

1. Resolve the host **once** (``getaddrinfo``).  An IP literal resolves to itself and is checked the same way.
2. Refuse the host, before anything is dialled, when **any** of its addresses is not globally routable --
   :data:`NON_PUBLIC` below, for IPv4 and IPv6, with the IPv6 forms that carry an IPv4 address (IPv4-mapped,
   NAT64, 6to4, Teredo) judged by the IPv4 address they carry -- unless the :class:`HostPolicy` allows it.
   Refusal is :class:`~email_service.protocols.errors.HostNotAllowed`, naming the host, the address and why.
3. Connect to those checked addresses in order (each with the timeout), never resolving again, so a name whose
   DNS changes between check and connect (rebinding) cannot lead anywhere else.
4. TLS is always verified (certificate chain and host name) against the host **name** the caller gave: SNI and
   the certificate check use the name, never the address dialled.

:func:`open_tcp` gives a plain checked TCP socket (for protocol libraries' socket factories, and an HTTP adapter
later); :func:`open_tls` adds implicit TLS; :func:`check_host` only resolves and checks (API-side validation at
account create/update), so that there is exactly one address table in the code base.

The policy is a plain value built by the services from the settings (``ALLOW_PRIVATE_MAIL_HOSTS``,
``MAIL_HOST_ALLOWLIST``) and handed down; this module never reads settings.  Its default refuses every
non-public address, so a caller that forgets to pass one gets the production rule.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from email_service.protocols.errors import HostNotAllowed

__all__ = [
    "NON_PUBLIC",
    "PUBLIC_ONLY",
    "HostPolicy",
    "IPAddress",
    "IPNetwork",
    "ResolvedAddress",
    "Resolver",
    "address_refusal",
    "check_host",
    "normalise_host",
    "open_tcp",
    "open_tls",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
#: ``socket.getaddrinfo``'s shape: ``(host, port, family, type) -> [(family, type, proto, canonname, sockaddr)]``.
Resolver = Callable[[str, int | None, int, int], Sequence[tuple[Any, ...]]]


def _table(*rows: tuple[str, str]) -> tuple[tuple[IPNetwork, str], ...]:
    return tuple((ipaddress.ip_network(network), reason) for network, reason in rows)


#: Address blocks that are not globally routable, with the reason given in refusals; first match wins.  Source:
#: the IANA IPv4 and IPv6 Special-Purpose Address Registries (RFC 6890) as of 2025, plus multicast.  IPv6
#: outside 2000::/3 is refused as well (not global unicast, RFC 4291 section 2.4), except the forms that carry an
#: IPv4 address, which :func:`address_refusal` judges by that address first.
NON_PUBLIC: Final = _table(
    ("0.0.0.0/8", "unspecified, 'this network' (RFC 791)"),
    ("10.0.0.0/8", "private (RFC 1918)"),
    ("100.64.0.0/10", "shared address space, carrier-grade NAT (RFC 6598)"),
    ("127.0.0.0/8", "loopback (RFC 1122)"),
    ("169.254.0.0/16", "link-local (RFC 3927)"),
    ("172.16.0.0/12", "private (RFC 1918)"),
    ("192.0.0.0/24", "IETF protocol assignments (RFC 6890)"),
    ("192.0.2.0/24", "documentation (RFC 5737)"),
    ("192.88.99.0/24", "6to4 relay anycast, deprecated (RFC 7526)"),
    ("192.168.0.0/16", "private (RFC 1918)"),
    ("198.18.0.0/15", "benchmarking (RFC 2544)"),
    ("198.51.100.0/24", "documentation (RFC 5737)"),
    ("203.0.113.0/24", "documentation (RFC 5737)"),
    ("224.0.0.0/4", "multicast (RFC 5771)"),
    ("255.255.255.255/32", "limited broadcast (RFC 919)"),
    ("240.0.0.0/4", "reserved (RFC 1112)"),
    ("::/128", "unspecified (RFC 4291)"),
    ("::1/128", "loopback (RFC 4291)"),
    ("::/96", "IPv4-compatible, deprecated (RFC 4291 section 2.5.5.1)"),
    ("64:ff9b:1::/48", "local-use NAT64 (RFC 8215)"),
    ("100::/64", "discard-only (RFC 6666)"),
    ("2001::/23", "IETF protocol assignments (RFC 2928)"),
    ("2001:db8::/32", "documentation (RFC 3849)"),
    ("3fff::/20", "documentation (RFC 9637)"),
    ("5f00::/16", "segment routing SIDs (RFC 9602)"),
    ("fc00::/7", "unique local, private (RFC 4193)"),
    ("fe80::/10", "link-local (RFC 4291)"),
    ("fec0::/10", "site-local, deprecated (RFC 3879)"),
    ("ff00::/8", "multicast (RFC 4291)"),
)

_GLOBAL_UNICAST: Final = ipaddress.IPv6Network("2000::/3")
_NAT64: Final = ipaddress.IPv6Network("64:ff9b::/96")


def normalise_host(host: str) -> str:
    """``host`` as compared and resolved: stripped, lower case, no trailing dot, no ``[...]`` around IPv6."""
    return host.strip().lower().removeprefix("[").removesuffix("]").rstrip(".")


def _ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> tuple[str, tuple[ipaddress.IPv4Address, ...]] | None:
    """The IPv4 address(es) an IPv6 address carries, with the name of the form, or ``None``."""
    if address.ipv4_mapped is not None:
        return "IPv4-mapped (RFC 4291 section 2.5.5.2)", (address.ipv4_mapped,)
    if address in _NAT64:
        return "NAT64 (RFC 6052)", (ipaddress.IPv4Address(int(address) & 0xFFFFFFFF),)
    if address.sixtofour is not None:
        return "6to4 (RFC 3056)", (address.sixtofour,)
    if address.teredo is not None:
        return "Teredo (RFC 4380)", address.teredo
    return None


def address_refusal(address: IPAddress) -> str | None:
    """Why ``address`` is not globally routable (a short phrase citing the RFC), or ``None`` when it is.

    An IPv6 address carrying an IPv4 address (IPv4-mapped ``::ffff:a.b.c.d``, NAT64 ``64:ff9b::/96``, 6to4
    ``2002::/16``, Teredo ``2001::/32``) is judged by the IPv4 address(es) it carries: the packet ends there.
    """
    if isinstance(address, ipaddress.IPv6Address):
        address = ipaddress.IPv6Address(int(address))  # without a %scope
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            form, carried = embedded
            for inner in carried:
                reason = address_refusal(inner)
                if reason is not None:
                    return f"{form} form of {inner}, {reason}"
            return None
    for network, reason in NON_PUBLIC:
        if network.version == address.version and address in network:
            return reason
    if isinstance(address, ipaddress.IPv6Address) and address not in _GLOBAL_UNICAST:
        return "not global unicast, outside 2000::/3 (RFC 4291 section 2.4)"
    return None


@dataclass(frozen=True)
class HostPolicy:
    """Which non-public hosts the connector may dial anyway (a frozen, hashable value).

    Attributes:
        allow_private: dial any address at all (the embedded development default, ``ALLOW_PRIVATE_MAIL_HOSTS``).
        allowed_hosts: host names (as :func:`normalise_host` gives them) dialled whatever they resolve to.
        allowed_networks: address ranges dialled even though they are non-public (an address is a /32 or /128).

    ``HostPolicy()`` refuses every non-public address: the production rule.
    """

    allow_private: bool = False
    allowed_hosts: frozenset[str] = frozenset()
    allowed_networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_allowlist(cls, entries: Iterable[str], *, allow_private: bool = False) -> HostPolicy:
        """Build a policy from allow-list entries: host names, IP addresses or CIDR networks (``10.1.0.0/16``).

        Raises:
            ValueError: an entry with a ``/`` is not an IP network.
        """
        hosts: set[str] = set()
        networks: list[IPNetwork] = []
        for entry in entries:
            item = normalise_host(entry)
            if not item:
                continue
            try:
                networks.append(ipaddress.ip_network(item.split("%", 1)[0], strict=False))
            except ValueError:
                if "/" in item:
                    raise ValueError(f"{entry!r} is not an IP network (address/prefix length)") from None
                hosts.add(item)
        return cls(allow_private, frozenset(hosts), tuple(networks))

    def permits(self, host: str, address: IPAddress) -> bool:
        """True when ``address`` (one of normalised ``host``'s) may be dialled even if it is non-public."""
        return (
            self.allow_private
            or host in self.allowed_hosts
            or any(n.version == address.version and address in n for n in self.allowed_networks)
        )


#: The production rule, and every adapter's default: only globally routable addresses.
PUBLIC_ONLY: Final = HostPolicy()


@dataclass(frozen=True)
class ResolvedAddress:
    """One checked ``getaddrinfo`` entry: socket ``family``/``type``/``proto``, ``sockaddr`` to connect to."""

    family: int
    type: int
    proto: int
    sockaddr: tuple[Any, ...]
    address: IPAddress


def check_host(
    host: str, policy: HostPolicy, *, port: int | None = None, resolver: Resolver = socket.getaddrinfo
) -> tuple[ResolvedAddress, ...]:
    """Resolve ``host`` once and check every address it has against ``policy``; connect to nothing.

    Args:
        host: a DNS name or an IP literal (``[...]`` around IPv6 allowed).
        policy: what may be dialled besides globally routable addresses.
        port: the TCP port put into each ``sockaddr`` (``None`` for a check only).
        resolver: ``socket.getaddrinfo`` or a function of its shape.

    Returns:
        The addresses in resolver order, ready for ``socket.connect``.

    Raises:
        HostNotAllowed: one of the addresses is non-public and the policy does not allow it.
        socket.gaierror: the name does not resolve (or is not a valid IDNA name).
    """
    name = normalise_host(host)
    try:
        infos = resolver(name, port, 0, socket.SOCK_STREAM)
    except UnicodeError as exc:
        raise socket.gaierror(socket.EAI_NONAME, f"not a valid host name ({exc})") from None
    resolved: list[ResolvedAddress] = []
    for family, type_, proto, _canonname, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        reason = None if policy.permits(name, address) else address_refusal(address)
        if reason is not None:
            literal = address == _ip_literal(name)
            raise HostNotAllowed(
                f"Host {host!r} {'is' if literal else f'resolves to {address},'} a non-public address: {reason}",
                host=host,
                address=str(address),
                reason=reason,
            )
        resolved.append(ResolvedAddress(family, type_, proto, tuple(sockaddr), address))
    if not resolved:
        raise socket.gaierror(socket.EAI_NONAME, f"{host!r} has no IPv4 or IPv6 address")
    return tuple(resolved)


def open_tcp(
    host: str,
    port: int,
    *,
    policy: HostPolicy,
    timeout: float | None,
    source_address: tuple[str, int] | None = None,
) -> socket.socket:
    """A connected TCP socket to ``host:port``, through :func:`check_host` (resolved once, checked).

    Each checked address is tried in order with ``timeout`` seconds (``None``: blocking); the socket keeps that
    timeout.  ``source_address`` binds the local end first (as ``socket.create_connection``).

    Raises:
        HostNotAllowed: refused by the policy; nothing was dialled.
        socket.gaierror: the name does not resolve.
        OSError: every address failed (the first address's error: refused, unreachable, ``TimeoutError``).
    """
    errors: list[OSError] = []
    for target in check_host(host, policy, port=port):
        sock = socket.socket(target.family, target.type, target.proto)
        try:
            sock.settimeout(timeout)
            if source_address is not None:
                sock.bind(source_address)
            sock.connect(target.sockaddr)
        except OSError as exc:
            sock.close()
            errors.append(exc)
            continue
        return sock
    raise errors[0]


def open_tls(
    host: str, port: int, *, policy: HostPolicy, timeout: float | None, context: ssl.SSLContext
) -> ssl.SSLSocket:
    """:func:`open_tcp`, then the TLS handshake (implicit TLS, RFC 8314) verified against the name ``host``.

    ``context`` must verify (``CERT_REQUIRED`` and ``check_hostname``), see
    :func:`email_service.protocols.tls.client_ssl_context`.

    Raises:
        ValueError: ``context`` does not verify certificates and host names.
        ssl.SSLError: handshake or verification failed.  And everything :func:`open_tcp` raises.
    """
    if context.verify_mode != ssl.CERT_REQUIRED or not context.check_hostname:
        raise ValueError("TLS to a mail host must verify the certificate and the host name")
    sock = open_tcp(host, port, policy=policy, timeout=timeout)
    try:
        return context.wrap_socket(sock, server_hostname=normalise_host(host))
    except BaseException:
        sock.close()
        raise
