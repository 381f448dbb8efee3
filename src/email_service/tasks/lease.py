"""A leader lease in Redis (``SET key token NX PX ttl``), so that of several ``email-service beat`` processes only
one schedules at a time (issue 7).

The holder renews the lease on every tick with a compare-and-extend script (only the token's owner can extend or
delete it); a holder that dies stops renewing, and another beat takes over when the lease expires (``ttl``, three
scheduler ticks).  A holder that stalls longer than the lease may overlap with its successor for one tick: the
periodic tasks are idempotent (see :mod:`email_service.tasks.periodic`), so the overlap costs work, not
duplicates.  A Redis error counts as "not the leader" for that tick.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid

import redis

log = logging.getLogger("email_service.scheduler")
DEFAULT_KEY = "email_service:beat:leader"
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


class RedisLease:
    """A lease named ``key`` in the Redis at ``url``, held for ``ttl_seconds`` after each :meth:`hold`."""

    def __init__(self, url: str, *, ttl_seconds: float, key: str = DEFAULT_KEY) -> None:
        self.key = key
        self.token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}"
        self._ttl_ms = max(1000, int(ttl_seconds * 1000))
        self._client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
        self._renew = self._client.register_script(_RENEW)
        self._release = self._client.register_script(_RELEASE)
        self._leader = False

    def hold(self) -> bool:
        """Take the lease if it is free, renew it if it is ours; True while we are the leader."""
        try:
            taken = bool(self._client.set(self.key, self.token, nx=True, px=self._ttl_ms))
            leader = taken or bool(self._renew(keys=[self.key], args=[self.token, self._ttl_ms]))
        except redis.RedisError as exc:
            log.warning("scheduler lease unavailable", extra={"error_kind": type(exc).__name__})
            leader = False
        if leader != self._leader:
            log.info("scheduler leadership " + ("taken" if leader else "lost"), extra={"lease": self.token})
        self._leader = leader
        return leader

    def release(self) -> None:
        """Delete the lease if it is still ours (a clean stop hands over at once)."""
        try:
            self._release(keys=[self.key], args=[self.token])
        except redis.RedisError:
            log.warning("scheduler lease could not be released; it expires by itself")
        self._leader = False
        self._client.close()
