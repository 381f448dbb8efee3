"""The long-running job processes of production (issue 7): ``email-service worker`` and ``email-service beat``.

* :func:`run_worker` starts a Celery worker (prefork pool by default) consuming the ``email_service`` queue with
  the app's settings; ``METRICS_PORT`` serves its Prometheus metrics (merged over its pool processes).
* :func:`run_beat` runs the periodic :class:`~email_service.tasks.periodic.Scheduler`, queueing jobs on Celery,
  under a Redis leader lease (``REDIS_URL``, else the broker's Redis) so that several beat processes never tick
  at once.  SIGTERM/SIGINT stop it cleanly and hand the lease over.
"""

from __future__ import annotations

import logging
import os
import signal
import threading

from email_service.config import Settings
from email_service.observability import metrics
from email_service.services.context import build_context
from email_service.tasks.celery_app import QUEUE, CeleryJobQueue, celery_init_app
from email_service.tasks.fanout import WebhookFanout
from email_service.tasks.lease import RedisLease
from email_service.tasks.periodic import Scheduler

log = logging.getLogger("email_service")


def run_worker(settings: Settings, *, concurrency: int, pool: str = "prefork") -> None:
    """Run a Celery worker until it is stopped (SIGTERM: warm shutdown; jobs not acknowledged are redelivered)."""
    app = celery_init_app(settings)
    if settings.metrics_port:
        metrics.start_metrics_server(settings.metrics_host, settings.metrics_port)
    app.worker_main(
        [
            "worker",
            f"--concurrency={concurrency}",
            f"--pool={pool}",
            f"--loglevel={settings.log_level}",
            f"--queues={QUEUE}",
            f"--hostname=email-service-{os.getpid()}@%h",
            "--without-gossip",
            "--without-mingle",
        ]
    )


def run_beat(settings: Settings, *, stop: threading.Event | None = None) -> None:
    """Run the periodic scheduler under the leader lease until SIGTERM/SIGINT (or ``stop``)."""
    lease_url = settings.redis_url or settings.celery_broker_url
    if not lease_url:
        raise ValueError("email-service beat needs REDIS_URL or CELERY_BROKER_URL for its leader lease")
    ctx = build_context(settings, jobs=CeleryJobQueue(celery_init_app(settings)))
    stop = stop or threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    if settings.metrics_port:
        metrics.start_metrics_server(settings.metrics_host, settings.metrics_port)
    lease = RedisLease(lease_url, ttl_seconds=3 * settings.scheduler_tick_seconds)
    log.info("beat started", extra={"tick_seconds": settings.scheduler_tick_seconds, "lease": lease.token})
    try:
        fanout = WebhookFanout(ctx).start()  # webhook deliveries soon after commits (via Redis pub/sub)
        try:
            Scheduler(ctx, lease=lease).run_forever(stop)
        finally:
            fanout.stop()
    finally:
        ctx.db.dispose()
