"""Prometheus metrics of the service (issue 7), in multiprocess mode where several processes serve.

Every metric is declared here once.  ``prometheus_client`` picks its storage when it is first imported: with
``PROMETHEUS_MULTIPROC_DIR`` set (gunicorn workers, Celery pool processes) each process writes its samples to
memory-mapped files in that folder and :func:`exposition` merges them; without it (the embedded default, one
process) the samples live in memory.  The command line sets the folder before anything imports this module
(:func:`email_service.observability.multiprocess.prepare_multiprocess_dir`).

Names and labels (units in the name, Prometheus conventions):

* ``email_service_http_requests_total{method,route,status}`` and ``email_service_http_request_duration_seconds``
  (histogram, ``{method,route}``); ``route`` is the URL rule template (``/api/v1/accounts/<uuid:account_id>``),
  never the raw path, so ids do not explode the label set.
* ``email_service_rate_limited_total{route}``: requests refused with 429.
* ``email_service_sync_runs_total{outcome}`` (succeeded, failed, skipped), ``email_service_sync_messages_total
  {change}`` (added, updated, removed) and ``email_service_sync_duration_seconds`` (histogram).
* ``email_service_jobs_queued_total{kind}``, ``email_service_jobs_running{kind}`` (gauge, live processes summed)
  and ``email_service_jobs_finished_total{kind,outcome}`` (succeeded, retried, failed).
"""

from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
)

from email_service.observability.multiprocess import MULTIPROC_ENV

HTTP_REQUESTS = Counter(
    "email_service_http_requests_total", "HTTP requests by route template and status", ["method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "email_service_http_request_duration_seconds",
    "HTTP request duration by route template",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
RATE_LIMITED = Counter("email_service_rate_limited_total", "Requests refused by the rate limit (429)", ["route"])
SYNC_RUNS = Counter("email_service_sync_runs_total", "Finished sync runs by outcome", ["outcome"])
SYNC_MESSAGES = Counter(
    "email_service_sync_messages_total", "Messages changed by sync runs (added, updated, removed)", ["change"]
)
SYNC_DURATION = Histogram(
    "email_service_sync_duration_seconds",
    "Duration of sync runs that ran (not skipped)",
    buckets=(0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0),
)
JOBS_QUEUED = Counter("email_service_jobs_queued_total", "Jobs handed to the job queue", ["kind"])
JOBS_RUNNING = Gauge("email_service_jobs_running", "Jobs running now", ["kind"], multiprocess_mode="livesum")
JOBS_FINISHED = Counter(
    "email_service_jobs_finished_total", "Job attempts by outcome (succeeded, retried, failed)", ["kind", "outcome"]
)


def mark_process_dead(pid: int) -> None:
    """Drop the live gauges of a process that ended (a gunicorn worker or a Celery pool process)."""
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def _registry() -> CollectorRegistry:
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry
    return REGISTRY


def exposition() -> bytes:
    """The metrics in the Prometheus text format (``CONTENT_TYPE``): merged over every process of the multiprocess
    folder when one is configured, else this process's own."""
    return generate_latest(_registry())


def start_metrics_server(host: str, port: int) -> None:
    """Serve :func:`exposition` at ``http://host:port/metrics`` from a daemon thread (workers and beat, which have
    no HTTP API: ``METRICS_PORT``).  Raises :class:`OSError` when the port cannot be bound."""
    start_http_server(port, addr=host, registry=_registry())


__all__ = [
    "CONTENT_TYPE",
    "HTTP_LATENCY",
    "HTTP_REQUESTS",
    "JOBS_FINISHED",
    "JOBS_QUEUED",
    "JOBS_RUNNING",
    "RATE_LIMITED",
    "SYNC_DURATION",
    "SYNC_MESSAGES",
    "SYNC_RUNS",
    "exposition",
    "mark_process_dead",
    "start_metrics_server",
]
