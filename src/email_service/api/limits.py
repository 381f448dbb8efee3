"""Rate limiting (seed 000/001): 50 requests per minute per user, Redis storage with in-memory fallback.

The key is the authenticated user (tenant + user id); unauthenticated requests are keyed by client address.
Every rate-limited response carries ``X-RateLimit-Limit``, ``X-RateLimit-Remaining`` and ``X-RateLimit-Reset``
(epoch seconds); only a 429 carries ``Retry-After`` (seconds, RFC 9110 section 10.2.3), since on any other
response it would tell a client to wait when it need not.  Flask-Limiter offers no IETF ``RateLimit-*`` headers.

One storage call per request (:class:`FixedWindowWithStats`): the hit counts and returns the window the headers
report; with Redis that is one script, one round trip, instead of the hit plus a ``GET`` and a ``PTTL``.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Any

from flask import Flask, Response, g, has_request_context, request
from flask_limiter import Limiter, RateLimitExceeded
from limits import RateLimitItem
from limits.storage import MemoryStorage, RedisStorage, Storage
from limits.strategies import STRATEGIES, FixedWindowRateLimiter
from limits.util import WindowStats

from email_service.config import Settings
from email_service.observability import metrics

from .auth import try_principal
from .telemetry import route_template

EXEMPT_PATHS = ("/health", "/ready", "/metrics", "/api/v1/openapi.json", "/api/v1/docs")
log = logging.getLogger("email_service.api")


def rate_limit_key() -> str:
    """``user:<tenant>:<user>`` for authenticated callers, ``ip:<address>`` otherwise."""
    principal = try_principal()
    if principal is not None:
        return f"user:{principal.tenant_id}:{principal.user_id}"
    return f"ip:{request.remote_addr or 'unknown'}"


def _exempt() -> bool:
    return request.method == "OPTIONS" or request.path.startswith(EXEMPT_PATHS)


class LockedMemoryStorage(MemoryStorage):
    """limits' in-memory counters (the embedded default) with the restart of their expiry timer under a lock.

    ``MemoryStorage`` restarts its 10 ms expiry timer on every hit with an unguarded check-then-start, so two
    requests arriving together after a quiet moment can both start the same timer thread: ``RuntimeError: threads
    can only be started once``, a 500.  The timer also waits 1 s instead of 10 ms: its only work is to forget
    expired counters (a read already treats an expired counter as zero), and starting a thread on nearly every
    request cost more CPU than the rest of a small request (issue 11, ``bench/README.md``).  Registered as
    ``email-service-memory://``.
    """

    #: Seconds between the sweeps of expired counters.
    EXPIRY_SWEEP_SECONDS = 1.0

    STORAGE_SCHEME = ["email-service-memory"]

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, **options: str) -> None:
        self._expiry_lock = threading.Lock()
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)

    def _MemoryStorage__schedule_expiry(self) -> None:  # overrides MemoryStorage.__schedule_expiry (name-mangled)
        with self._expiry_lock:
            if not self.timer.is_alive():
                sweep = getattr(self, "_MemoryStorage__expire_events")  # noqa: B009 (name-mangled)
                self.timer = threading.Timer(self.EXPIRY_SWEEP_SECONDS, sweep)
                self.timer.daemon = True  # never holds the process open at exit
                self.timer.start()

    def incr_with_expiry(self, key: str, expiry: int, amount: int = 1) -> tuple[int, float]:
        """``(count, resets)`` as :meth:`OneCallRedisStorage.incr_with_expiry` gives them (in the process)."""
        count = self.incr(key, expiry, amount)
        return count, self.get_expiry(key)


class OneCallRedisStorage(RedisStorage):
    """limits' Redis storage with :meth:`incr_with_expiry`: the counter's increment and its time to live in one
    script, one round trip (production; registered as ``email-service-redis://`` and ``email-service-rediss://``,
    the rest of the URL as for ``redis://``)."""

    STORAGE_SCHEME = ["email-service-redis", "email-service-rediss"]

    #: ``INCRBY``, ``EXPIRE`` when the counter is new (as limits' own ``incr_expire.lua``), then its ``PTTL``.
    SCRIPT_INCR_EXPIRE_TTL = b"""
local current = redis.call("incrby", KEYS[1], ARGV[2])
if tonumber(current) == tonumber(ARGV[2]) then
    redis.call("expire", KEYS[1], ARGV[1])
end
return {current, redis.call("pttl", KEYS[1])}
"""

    def __init__(self, uri: str, **options: Any) -> None:
        super().__init__(uri.removeprefix("email-service-"), **options)

    def initialize_storage(self, _uri: str) -> None:
        super().initialize_storage(_uri)
        self.lua_incr_expire_ttl = self.get_connection().register_script(self.SCRIPT_INCR_EXPIRE_TTL)

    def incr_with_expiry(self, key: str, expiry: int, amount: int = 1) -> tuple[int, float]:
        """``(count, resets)``: the counter of ``key`` after adding ``amount`` (created with ``expiry`` seconds to
        live when new) and the epoch seconds at which it expires.  Raises the storage's errors (redis)."""
        count, ttl_ms = self.lua_incr_expire_ttl([self.prefixed_key(key)], [expiry, amount])
        return int(count), time.time() + max(int(ttl_ms), 0) / 1000


def _incr_with_expiry(storage: Storage, key: str, expiry: int, amount: int) -> tuple[int, float]:
    """The counter after the increment and when it expires (epoch seconds): one call to a storage that has
    ``incr_with_expiry``; otherwise ``incr`` then ``get_expiry`` (limits' own memory storage, the fallback when
    Redis is down: both in the process)."""
    if isinstance(storage, (OneCallRedisStorage, LockedMemoryStorage)):
        return storage.incr_with_expiry(key, expiry, amount)
    count = storage.incr(key, expiry, amount=amount)
    return count, storage.get_expiry(key)


class FixedWindowWithStats(FixedWindowRateLimiter):
    """limits' fixed window (the seed's "N per minute"), whose hit also keeps the window it counted in for the
    request's rate-limit headers: the count after the hit and the counter's expiry, from the hit's own storage call.

    limits' strategy reads the window again for the headers (``get`` and ``get_expiry``: two more calls, two more
    Redis round trips per request).  The kept window is the one this request's hit saw; it lives in ``flask.g``
    (one request), keyed by the limit's storage key; without one (no request, or another key) the window is read
    from the storage as before.  Registered in limits' strategies as ``email-service-fixed-window``.
    """

    def hit(self, item: RateLimitItem, *identifiers: str, cost: int = 1) -> bool:
        key = item.key_for(*identifiers)
        count, resets = _incr_with_expiry(self.storage, key, item.get_expiry(), cost)
        if has_request_context():
            g.setdefault("rate_limit_windows", {})[key] = WindowStats(resets, max(0, item.amount - count))
        return count <= item.amount

    def get_window_stats(self, item: RateLimitItem, *identifiers: str) -> WindowStats:
        if has_request_context():
            kept = g.get("rate_limit_windows", {}).get(item.key_for(*identifiers))
            if kept is not None:
                return kept  # type: ignore[no-any-return]
        return super().get_window_stats(item, *identifiers)


STRATEGY = "email-service-fixed-window"
STRATEGIES[STRATEGY] = FixedWindowWithStats  # limits' table of named strategies (Flask-Limiter's ``strategy``)


def install_rate_limits(app: Flask, settings: Settings) -> Limiter:
    """Attach Flask-Limiter: the configured limit per user, shared by every route but health, spec and preflight."""
    storage = settings.redis_url or "email-service-memory://"
    if storage.startswith(("redis://", "rediss://")):
        storage = f"email-service-{storage}"  # OneCallRedisStorage
    limiter = Limiter(
        key_func=rate_limit_key,
        app=app,
        # One counter per user across every route ("50 requests/minute per user"); default_limits would keep
        # a separate counter per route and let a user make 50 requests to each.
        application_limits=[settings.rate_limit],
        application_limits_exempt_when=_exempt,
        storage_uri=storage,
        storage_options={"socket_connect_timeout": 2, "socket_timeout": 2} if settings.redis_url else {},
        in_memory_fallback_enabled=bool(settings.redis_url),
        headers_enabled=False,  # Flask-Limiter would put Retry-After on every response: see _rate_limit_headers
        strategy=STRATEGY,  # fixed window, one storage call per request (FixedWindowWithStats)
        key_prefix="email_service",
    )

    @app.errorhandler(RateLimitExceeded)
    def _too_many(error: RateLimitExceeded) -> Any:
        metrics.RATE_LIMITED.labels(route=route_template()).inc()
        body = {
            "error": "Rate limit exceeded",
            "message": f"Too many requests ({error.description}). Please try again later.",
        }
        return body, 429

    @app.after_request
    def _rate_limit_headers(response: Response) -> Response:
        current = limiter.current_limit
        if current is None:
            return response
        try:
            resets = current.window[0]  # epoch seconds (float) at which the window's counter starts again
        except Exception:  # storage gone between the check and now: the response goes out without the headers
            log.warning("rate-limit window unavailable; headers left out")
            return response
        response.headers["X-RateLimit-Limit"] = str(current.limit.amount)
        response.headers["X-RateLimit-Remaining"] = str(current.remaining)
        response.headers["X-RateLimit-Reset"] = str(math.ceil(resets))
        if response.status_code == 429:
            response.headers["Retry-After"] = str(max(1, math.ceil(resets - time.time())))
        return response

    return limiter
