"""``email-service`` commands as real processes for the runtime tests and benchmarks: a worker, beat or serve in its
own process group (so ``kill -9`` takes its pool processes too), output in a log file; Prometheus scraping."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Self

from prometheus_client.parser import text_string_to_metric_families

#: Variables of the caller's environment that must not leak into a service process (the test decides them).
_PRIVATE_PREFIXES = ("DATABASE_", "JWT_", "CREDENTIAL_", "TEST_", "CELERY_", "REDIS_", "PROMETHEUS_", "METRICS_")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServiceProcess:
    """``email-service <args>`` with ``env`` (added to a clean copy of this environment), logging to ``log_path``."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.args, self.log_path = args, log_path
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(_PRIVATE_PREFIXES)} | env
        self.process: subprocess.Popen[bytes] | None = None
        #: Where the process serves its Prometheus metrics, when the caller gave it a METRICS_PORT.
        self.metrics_url = ""

    def start(self) -> Self:
        """Start the command in a new session (process group)."""
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "email_service.cli", *self.args],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """``kill -9`` of the whole process group: the command and every process it started."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM (clean stop), then ``kill -9`` after ``timeout``; returns the exit status."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        with contextlib.suppress(ProcessLookupError):  # pool processes left behind by a killed parent
            os.killpg(self.process.pid, signal.SIGKILL)
        return self.process.returncode

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def json_lines(self) -> list[dict[str, Any]]:
        """The lines of the log that are JSON objects (``LOG_FORMAT=json``)."""
        records = []
        for line in self.output().splitlines():
            if line.startswith("{"):
                try:
                    records.append(json.loads(line))
                except ValueError:
                    continue
        return records


def wait_until(predicate: Any, timeout: float = 30.0, what: str = "a condition", interval: float = 0.05) -> Any:
    """Poll ``predicate()`` every ``interval`` seconds until it returns something true; that value.
    AssertionError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def scrape(url: str, token: str | None = None) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``{(sample name, sorted labels): value}`` of a Prometheus text endpoint."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def sample(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    """The value of sample ``name`` with exactly ``labels`` (0 when absent)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)
