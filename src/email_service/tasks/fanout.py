"""Webhook fan-out on wake-ups (issue 12): a thread that turns new change-log entries into deliveries soon after
their commit, instead of waiting for the periodic ``queue_webhook_deliveries`` tick.

It listens to every change this process hears of (:meth:`ChangeBus.subscribe_all`: in-process commits, and with
``REDIS_URL`` every process's commits through pub/sub), waits :data:`DEBOUNCE_SECONDS` to gather a burst, then runs
:func:`email_service.services.webhooks.queue_deliveries` for the tenants woken.  That function is idempotent (each
webhook's cursor row is locked while its entries become deliveries), so several fan-out threads (every ``serve``
in the embedded default, every ``beat`` in production) never make a delivery twice; the periodic task stays as the
safety net for a lost wake-up.
"""

from __future__ import annotations

import logging
import threading

from email_service.services.change_bus import Subscription
from email_service.services.context import ServiceContext
from email_service.services.webhooks import queue_deliveries

log = logging.getLogger("email_service.webhooks")
#: Pause after a wake-up before the fan-out, seconds: one fan-out for a burst of commits (a sync's batches).
DEBOUNCE_SECONDS = 0.2


class WebhookFanout:
    """The fan-out thread of one process; :meth:`start` and :meth:`stop` it."""

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> WebhookFanout:
        """Subscribe and start the thread (daemon)."""
        subscription = self.ctx.changes.subscribe_all()
        self._thread = threading.Thread(
            target=self._run, args=(subscription,), name="email-webhook-fanout", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread (within a second)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self, subscription: Subscription) -> None:
        try:
            while not self._stop.is_set():
                if not subscription.wait(1.0):
                    continue
                self._stop.wait(DEBOUNCE_SECONDS)
                tenants = subscription.take_tenants()
                if tenants:
                    try:
                        queue_deliveries(self.ctx, sorted(tenants, key=str))
                    except Exception:
                        log.exception("webhook fan-out failed; the periodic task will catch up")
        finally:
            subscription.close()
