"""The host policy of tests that dial their own loopback peers (Dovecot, aiosmtpd, scripted servers).

Production refuses loopback (DESIGN.md section 2); these tests allow exactly the loopback networks, the way an
operator would allow-list an internal server (``MAIL_HOST_ALLOWLIST=127.0.0.0/8,::1``).
"""

from __future__ import annotations

from email_service.protocols.net import HostPolicy

LOOPBACK_PEERS = HostPolicy.from_allowlist(("127.0.0.0/8", "::1"))
