"""The embedded default's in-memory rate-limit counters under concurrent requests."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator

import pytest

from email_service.api.limits import LockedMemoryStorage


@pytest.fixture
def frequent_thread_switches() -> Iterator[None]:
    """Switch threads every microsecond, so that a check-then-act race shows in a short test."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


def test_hits_arriving_together_after_a_quiet_moment_never_fail(frequent_thread_switches: None) -> None:
    """limits' MemoryStorage restarts its expiry timer unguarded: hits arriving together after the timer ran out
    could start one timer twice (RuntimeError, a 500 for the request).  16 threads x 150 rounds."""
    storage = LockedMemoryStorage()
    errors: list[str] = []
    together = threading.Barrier(16)

    def hits(index: int) -> None:
        for _round in range(150):
            together.wait(30)
            try:
                storage.incr(f"user:{index}", 60)
            except RuntimeError as error:
                errors.append(str(error))
            time.sleep(0.012)  # the expiry timer (10 ms) runs out between rounds

    threads = [threading.Thread(target=hits, args=(index,)) for index in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert all(storage.get(f"user:{index}") == 150 for index in range(16))
