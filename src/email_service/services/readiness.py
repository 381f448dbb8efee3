"""Readiness (issue 7, ``GET /ready``): can this process serve requests and hand out jobs right now?

Checks, each ``"ok"`` or a short reason: ``database`` (a ``SELECT 1``), ``migrations`` (the database is at the
head revision of the Alembic scripts), ``redis`` (``REDIS_URL``, when configured: rate limits) and ``broker``
(``CELERY_BROKER_URL``, when jobs run on Celery).  Liveness stays ``GET /health``.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis
from sqlalchemy import text

from email_service.db import schema_revisions
from email_service.services.context import ServiceContext

#: Seconds a check may wait for Redis or the broker: a readiness probe must answer quickly.
PROBE_TIMEOUT_SECONDS = 2.0


@dataclass(frozen=True)
class Readiness:
    """``checks``: part name -> ``"ok"`` or why it is not ready."""

    checks: dict[str, str]

    @property
    def ready(self) -> bool:
        """True when every check says ``ok``."""
        return all(value == "ok" for value in self.checks.values())

    @property
    def failing(self) -> list[str]:
        """The names of the checks that are not ``ok``."""
        return [name for name, value in self.checks.items() if value != "ok"]


def check_readiness(ctx: ServiceContext) -> Readiness:
    """Run every check that applies to the settings; never raises."""
    checks: dict[str, str] = {}
    try:
        with ctx.db.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception:
        checks["database"] = "unavailable"
    if checks["database"] == "ok":
        checks["migrations"] = _migrations(ctx)
    else:
        checks["migrations"] = "unknown"
    if ctx.settings.redis_url:
        checks["redis"] = _redis(ctx.settings.redis_url)
    if ctx.settings.uses_celery and ctx.settings.celery_broker_url:
        checks["broker"] = _redis(ctx.settings.celery_broker_url)
    return Readiness(checks)


def _migrations(ctx: ServiceContext) -> str:
    try:
        current, heads = schema_revisions(ctx.db.engine)
    except Exception:
        return "unknown"
    return "ok" if current == heads else "not at head"


def _redis(url: str) -> str:
    client = redis.Redis.from_url(
        url, socket_connect_timeout=PROBE_TIMEOUT_SECONDS, socket_timeout=PROBE_TIMEOUT_SECONDS
    )
    try:
        client.ping()
    except redis.RedisError:
        return "unavailable"
    finally:
        client.close()
    return "ok"
