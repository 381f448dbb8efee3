"""A small HTTP client for webhook deliveries, on the guarded connector (DESIGN.md section 10; issue 12).

``http.client`` speaks HTTP/1.1; only its ``connect`` is replaced, so that the socket comes from
:func:`email_service.protocols.net.open_tcp` / :func:`~email_service.protocols.net.open_tls`: the host is resolved
once and refused before anything is dialled when an address is not public (unless the policy allows it), and TLS
is verified against the URL's host name.  No redirects are followed (a 3xx is an answer like any other: a redirect
could lead to an address the policy refuses).  Nothing here reads settings or the database.
"""

from __future__ import annotations

import http.client
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

from email_service.protocols.net import HostPolicy, open_tcp, open_tls

#: Most bytes of the answer body kept (for the delivery log); the rest is not read.
MAX_ANSWER_BYTES = 1024


@dataclass(frozen=True)
class Target:
    """Where a URL points: ``scheme`` (http|https), ``host``, ``port`` and the request ``path`` (with query)."""

    scheme: str
    host: str
    port: int
    path: str


def parse_url(url: str) -> Target:
    """The :class:`Target` of an absolute ``http``/``https`` URL.

    Raises:
        ValueError: another scheme, no host, a user-info part, a fragment or a malformed port.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError("the URL must start with http:// or https://")
    if not parts.hostname or parts.username is not None or parts.password is not None:
        raise ValueError("the URL must name a host and carry no user name or password")
    if parts.fragment:
        raise ValueError("the URL must not carry a fragment")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(parts.scheme, parts.hostname, port, path)


@dataclass(frozen=True)
class Answer:
    """The status code, reason and the first :data:`MAX_ANSWER_BYTES` bytes of the body of an answer."""

    status: int
    reason: str
    body: bytes


class _GuardedConnection(http.client.HTTPConnection):
    def __init__(self, target: Target, *, policy: HostPolicy, timeout: float, context: ssl.SSLContext | None):
        super().__init__(target.host, target.port, timeout=timeout)
        self._target, self._policy, self._context = target, policy, context

    def connect(self) -> None:
        if self._target.scheme == "https":
            assert self._context is not None
            self.sock = open_tls(
                self._target.host, self._target.port, policy=self._policy, timeout=self.timeout, context=self._context
            )
        else:
            self.sock = open_tcp(self._target.host, self._target.port, policy=self._policy, timeout=self.timeout)


def post(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    policy: HostPolicy,
    timeout: float,
    context: ssl.SSLContext | None = None,
) -> Answer:
    """POST ``body`` to ``url`` with ``headers`` through the guarded connector; one connection, closed after.

    ``context`` is the verifying TLS context for ``https`` (:func:`email_service.protocols.tls.client_ssl_context`).

    Raises:
        ValueError: a URL :func:`parse_url` refuses; an ``https`` URL without ``context``.
        HostNotAllowed: the host resolves to an address the policy refuses (nothing was dialled).
        OSError: resolution, connection, TLS or timeout failures; ``http.client.HTTPException``: a broken answer.
    """
    target = parse_url(url)
    if target.scheme == "https" and context is None:
        raise ValueError("https needs a TLS context")
    connection = _GuardedConnection(target, policy=policy, timeout=timeout, context=context)
    try:
        connection.request("POST", target.path, body=body, headers={**headers, "Connection": "close"})
        response = connection.getresponse()
        return Answer(response.status, response.reason, response.read(MAX_ANSWER_BYTES))
    finally:
        connection.close()
