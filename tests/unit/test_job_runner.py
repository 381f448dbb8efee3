"""The in-process job runner (embedded default): kinds from the registry, delays, retries of transient errors with
backoff, no retry of other errors.  Runner mechanics only: the handlers here are test doubles standing in for a
job kind whose peer fails and then recovers."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from email_service.protocols.errors import AuthenticationFailed, ConnectionFailed
from email_service.services.jobs import JOB_NAMES, JsonScalar, RecordingJobQueue, RetryJob
from email_service.tasks import registry
from email_service.tasks.registry import JOBS, JobSpec
from email_service.tasks.runner import InProcessJobRunner


class Flaky:
    """A handler that raises ``errors`` in turn, then succeeds; records when each attempt ran."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.attempts: list[float] = []
        self.done = threading.Event()

    def __call__(self, ctx: Any, payload: Mapping[str, JsonScalar]) -> None:
        self.attempts.append(time.monotonic())
        if self.errors:
            error = self.errors.pop(0)
            if not self.errors and not isinstance(error, (ConnectionFailed, RetryJob)):
                self.done.set()
            raise error
        self.done.set()


@pytest.fixture
def runner() -> Iterator[InProcessJobRunner]:
    jobs = InProcessJobRunner(workers=2)
    jobs.bind(object())  # type: ignore[arg-type]  # the test handlers ignore the context
    yield jobs
    jobs.shutdown(wait=True)


def _install(monkeypatch: pytest.MonkeyPatch, handler: Flaky, **policy: Any) -> None:
    spec = JobSpec("sync_account", handler, soft_time_limit=10, time_limit=20, **policy)
    monkeypatch.setattr(registry, "JOBS", {**JOBS, "sync_account": spec})


def test_every_job_name_has_a_spec_and_unknown_kinds_are_refused(runner: InProcessJobRunner) -> None:
    assert set(JOBS) == set(JOB_NAMES)
    with pytest.raises(KeyError, match="no_such_job"):
        runner.enqueue("no_such_job", {})  # type: ignore[arg-type]


def test_transient_errors_are_retried_with_growing_backoff(
    runner: InProcessJobRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    handler = Flaky(ConnectionFailed("down"), ConnectionFailed("still down"))
    _install(monkeypatch, handler, backoff_seconds=0.05)
    runner.enqueue("sync_account", {"x": 1})
    assert handler.done.wait(5)
    assert len(handler.attempts) == 3
    first_gap, second_gap = (b - a for a, b in zip(handler.attempts, handler.attempts[1:], strict=False))
    assert first_gap >= 0.05 and second_gap >= 0.1  # doubled


def test_a_retry_job_error_sets_its_own_delay(runner: InProcessJobRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    handler = Flaky(RetryJob("busy", delay_seconds=0.2))
    _install(monkeypatch, handler, backoff_seconds=0.01)
    runner.enqueue("sync_account", {})
    assert handler.done.wait(5)
    assert handler.attempts[1] - handler.attempts[0] >= 0.2


def test_permanent_errors_are_not_retried_and_retries_are_bounded(
    runner: InProcessJobRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    permanent = Flaky(AuthenticationFailed("bad password"))
    _install(monkeypatch, permanent, backoff_seconds=0.01)
    runner.enqueue("sync_account", {})
    assert permanent.done.wait(5)
    time.sleep(0.1)
    assert len(permanent.attempts) == 1

    endless = Flaky(*(ConnectionFailed("down") for _ in range(10)))
    _install(monkeypatch, endless, backoff_seconds=0.01, max_retries=2)
    runner.enqueue("sync_account", {})
    time.sleep(0.5)
    assert len(endless.attempts) == 3  # the first attempt and two retries


def test_a_delayed_job_waits(runner: InProcessJobRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    handler = Flaky()
    _install(monkeypatch, handler)
    queued_at = time.monotonic()
    runner.enqueue("sync_account", {}, delay_seconds=0.3)
    assert handler.done.wait(5)
    assert handler.attempts[0] - queued_at >= 0.3


def test_the_recording_queue_keeps_what_it_was_given() -> None:
    queue = RecordingJobQueue()
    queue.enqueue("sync_account", {"accountId": "a"}, delay_seconds=2)
    assert [(job.name, job.payload, job.delay_seconds) for job in queue.queued] == [
        ("sync_account", {"accountId": "a"}, 2)
    ]
