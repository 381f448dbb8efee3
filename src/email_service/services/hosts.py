"""Mail server host rules (DESIGN.md section 2): the connector's policy from the settings, and the API-side check.

The rule itself -- resolve once, refuse non-public addresses unless allowed -- and its address table live in
:mod:`email_service.protocols.net`; every connection obeys it when it dials.  This check only refuses, at
account create/update, a host that would be refused at connect time now.
"""

from __future__ import annotations

from email_service.config import Settings
from email_service.errors import ConfigurationError, InvalidInput
from email_service.protocols.errors import HostNotAllowed
from email_service.protocols.net import HostPolicy, check_host


def mail_host_policy(settings: Settings) -> HostPolicy:
    """``ALLOW_PRIVATE_MAIL_HOSTS`` and ``MAIL_HOST_ALLOWLIST`` (names, IP addresses, CIDR networks) as a policy.

    Raises:
        ConfigurationError: an allow-list entry with a ``/`` is not an IP network.
    """
    try:
        return HostPolicy.from_allowlist(settings.mail_host_allowlist, allow_private=settings.allow_private_mail_hosts)
    except ValueError as exc:
        raise ConfigurationError(f"MAIL_HOST_ALLOWLIST: {exc}") from None


def check_mail_host(hostname: str, policy: HostPolicy, *, field: str = "hostname") -> None:
    """Refuse ``hostname`` when the guarded connector would refuse it now (same resolution, same table).

    An unresolvable host is accepted here (it may resolve later; dialling it then fails as ``ConnectionFailed``).

    Args:
        hostname: the host as the caller sent it.
        policy: the context's host policy.
        field: the request field named in the error (``hostname``, ``smtpHostname``).

    Raises:
        InvalidInput: the host resolves to a non-public address (400; message and ``details`` name ``field``).
    """
    try:
        check_host(hostname, policy)
    except HostNotAllowed as exc:
        raise InvalidInput(f"{field}: {exc.message}", details={field: [exc.message]}) from None
    except OSError:
        return
