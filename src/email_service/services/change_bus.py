"""Wake-ups for readers of the change log (issue 12): event streams and the webhook fan-out.

A wake-up carries no data a reader trusts: it only says "the log of these accounts grew"; the reader then reads the
log itself from its own cursor.  So a lost, doubled or late wake-up costs latency, never a change, and every reader
also re-reads the log on its own timer (the SSE heartbeat).

* In-process (always): :meth:`ChangeBus.publish` sets the :class:`Subscription` events of the streams of that
  tenant and user (and the tenant-wide streams of admins) in this process at once.
* Redis pub/sub (when ``REDIS_URL`` is set, i.e. production): ``publish`` also sends the keys on the channel
  :data:`CHANNEL`, and one listener thread per process (started with the first subscription) relays what other
  processes -- Celery workers running syncs and write-backs, other API processes -- publish.  Pub/sub is
  fire-and-forget; a message lost while the listener reconnects is covered by the readers' own re-reads.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

log = logging.getLogger("email_service.changes")

#: Redis pub/sub channel of change wake-ups (channels are global across Redis db numbers).
CHANNEL = "email_service:changes"

Key = tuple[uuid.UUID, uuid.UUID | None]  # (tenant, user) or (tenant, None) for tenant-wide listeners


class Subscription:
    """The wake-up of one reader: :meth:`wait` returns True once a change of its keys was published since the last
    :meth:`wait` returned (a wake-up between two waits is kept, never lost)."""

    def __init__(self, bus: ChangeBus, keys: tuple[Key, ...]) -> None:
        self.bus, self.keys = bus, keys
        self._event = threading.Event()
        self._tenants: set[uuid.UUID] = set()
        self._tenants_lock = threading.Lock()

    def wake(self, tenants: Iterable[uuid.UUID] = ()) -> None:
        """Mark a change of ``tenants`` (called by the bus)."""
        with self._tenants_lock:
            self._tenants.update(tenants)
        self._event.set()

    def take_tenants(self) -> set[uuid.UUID]:
        """The tenants woken since the last call (a :meth:`ChangeBus.subscribe_all` subscription)."""
        with self._tenants_lock:
            tenants, self._tenants = self._tenants, set()
        return tenants

    def wait(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds for a wake-up; True when woken (the mark is then cleared)."""
        woken = self._event.wait(timeout)
        self._event.clear()
        return woken

    def close(self) -> None:
        """Stop receiving wake-ups."""
        self.bus.unsubscribe(self)


class ChangeBus:
    """Fan-out of "the log of these accounts grew" to the subscriptions of this process (see the module docstring).

    ``redis_url``: publish on and listen to Redis pub/sub as well (``None``: this process only).
    """

    def __init__(self, redis_url: str | None = None) -> None:
        self.redis_url = redis_url
        self._lock = threading.Lock()
        self._subscriptions: dict[Key, set[Subscription]] = defaultdict(set)
        self._listener: threading.Thread | None = None
        self._client: Any = None
        self._stopped = threading.Event()
        self._generations: dict[Key, int] = defaultdict(int)
        self._everything: set[Subscription] = set()

    def subscribe(self, tenant_id: uuid.UUID, user_id: uuid.UUID | None) -> Subscription:
        """Wake-ups for the changes of one user's accounts (``user_id=None``: every account of the tenant)."""
        subscription = Subscription(self, ((tenant_id, user_id),))
        with self._lock:
            for key in subscription.keys:
                self._subscriptions[key].add(subscription)
            self._start_listener()
        return subscription

    def subscribe_all(self) -> Subscription:
        """Wake-ups for every change this process hears of (the webhook fan-out); :meth:`Subscription.take_tenants`
        says whose."""
        subscription = Subscription(self, ())
        with self._lock:
            self._everything.add(subscription)
            self._start_listener()
        return subscription

    def _start_listener(self) -> None:
        if self.redis_url and self._listener is None:
            self._listener = threading.Thread(target=self._listen, name="email-change-bus", daemon=True)
            self._listener.start()

    def unsubscribe(self, subscription: Subscription) -> None:
        """Forget ``subscription`` (idempotent)."""
        with self._lock:
            self._everything.discard(subscription)
            for key in subscription.keys:
                self._subscriptions[key].discard(subscription)
                if not self._subscriptions[key]:
                    del self._subscriptions[key]

    def subscriber_count(self) -> int:
        """How many subscriptions this process holds."""
        with self._lock:
            return len({s for subs in self._subscriptions.values() for s in subs})

    def publish(self, changed: Iterable[tuple[uuid.UUID, uuid.UUID, uuid.UUID]]) -> None:
        """Wake the readers of these ``(tenant, user, account)`` changes, here and (with Redis) in every process.
        Never raises: a failed Redis publish is logged (the readers' timers still find the change)."""
        keys = {(tenant_id, user_id) for tenant_id, user_id, _account in changed}
        self.deliver(keys)
        if self.redis_url:
            try:
                payload = json.dumps([[str(t), str(u)] for t, u in keys])
                self._redis().publish(CHANNEL, payload)
            except Exception:
                log.warning("change wake-up not published on Redis", exc_info=True)

    def generation(self, tenant_id: uuid.UUID, user_id: uuid.UUID | None) -> int:
        """How many wake-ups this process has seen for the key: readers that share one database read per
        wake-up key it by this (:class:`email_service.services.events.SharedReads`)."""
        with self._lock:
            return self._generations.get((tenant_id, user_id), 0)

    def deliver(self, keys: Iterable[tuple[uuid.UUID, uuid.UUID]]) -> None:
        """Wake the local subscriptions of these ``(tenant, user)`` keys and their tenants' tenant-wide ones (the
        keys' generations move first, so a woken reader never reuses a read made before this wake-up)."""
        keys = list(keys)
        with self._lock:
            woken = set()
            for tenant_id, user_id in keys:
                self._generations[(tenant_id, user_id)] += 1
                self._generations[(tenant_id, None)] += 1
                woken |= self._subscriptions.get((tenant_id, user_id), set())
                woken |= self._subscriptions.get((tenant_id, None), set())
            everything = list(self._everything)
        for subscription in woken:
            subscription.wake()
        tenants = {tenant_id for tenant_id, _user in keys}
        for subscription in everything:
            subscription.wake(tenants)

    def close(self) -> None:
        """Stop the Redis listener (if any)."""
        self._stopped.set()

    def _redis(self) -> Any:
        if self._client is None:
            import redis

            self._client = redis.Redis.from_url(self.redis_url or "", socket_timeout=1, socket_connect_timeout=1)
        return self._client

    def _listen(self) -> None:
        """Relay Redis pub/sub messages to the local subscriptions; reconnect with a pause after an error."""
        import redis

        while not self._stopped.is_set():
            try:
                client = redis.Redis.from_url(self.redis_url or "", socket_connect_timeout=5, health_check_interval=30)
                pubsub = client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
                pubsub.subscribe(CHANNEL)
                while not self._stopped.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message and message.get("type") == "message":
                        self.deliver(_keys(message["data"]))
            except Exception:
                log.warning("change bus: Redis listener failed; reconnecting", exc_info=True)
                time.sleep(1.0)


def _keys(data: bytes | str) -> list[tuple[uuid.UUID, uuid.UUID]]:
    try:
        return [(uuid.UUID(t), uuid.UUID(u)) for t, u in json.loads(data)]
    except (ValueError, TypeError):
        return []
