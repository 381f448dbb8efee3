"""Mail server host rules (DESIGN.md section 2): no SSRF into private networks in production."""

from __future__ import annotations

import ipaddress
import socket

from email_service.config import Settings
from email_service.errors import InvalidInput


def check_mail_host(hostname: str, settings: Settings) -> None:
    """Refuse hosts that resolve to loopback, private, link-local, multicast or reserved addresses.

    Allowed anyway when ``ALLOW_PRIVATE_MAIL_HOSTS`` is on (the embedded default) or the host is in
    ``MAIL_HOST_ALLOWLIST``.  An unresolvable host is accepted here (it may resolve later) and fails at connect.

    Raises:
        InvalidInput: the host resolves to a forbidden address.
    """
    host = hostname.strip().lower().rstrip(".").removeprefix("[").removesuffix("]")
    if settings.allow_private_mail_hosts or host in settings.mail_host_allowlist:
        return
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        return
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if not address.is_global or address.is_multicast:
            raise InvalidInput(f"Mail server host {hostname!r} resolves to a non-public address")
