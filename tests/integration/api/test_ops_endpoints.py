"""Operations endpoints (issue 7): ``/ready`` names what is not ready (a private Redis stopped and started again,
a database behind the migrations), ``/metrics`` moves with the work and is closed in production, and production
``serve`` runs gunicorn workers whose metrics are merged and whose request lines are JSON."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from apiflask import APIFlask
from prometheus_client.parser import text_string_to_metric_families

from email_service.app import create_app
from email_service.config import Settings
from email_service.db import upgrade_database
from tests.conftest import Caller, make_settings, settings_env
from tests.support.services import ServiceProcess, free_port, sample, scrape, wait_until

pytestmark = pytest.mark.integration

METRICS_TOKEN = "metrics-" + "t" * 24


class PrivateRedis:
    """A ``redis-server`` of this test on a free loopback port (the shared one at 6379 is never stopped)."""

    def __init__(self, workdir: Path) -> None:
        self.port, self.workdir = free_port(), workdir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is required (Debian package redis-server)"
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        wait_until(self._pings, 10, "the private redis-server")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def _pings(self) -> bool:
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()


def test_ready_answers_503_naming_redis_while_it_is_stopped_and_200_when_it_is_back(
    app_with: Callable[..., APIFlask], private_redis: PrivateRedis
) -> None:
    client = app_with(
        REDIS_URL=private_redis.url, JOB_RUNNER="celery", CELERY_BROKER_URL=private_redis.url
    ).test_client()
    ready = client.get("/ready")
    assert ready.status_code == 200
    assert ready.get_json() == {
        "status": "ready",
        "checks": {"database": "ok", "migrations": "ok", "redis": "ok", "broker": "ok"},
    }

    private_redis.stop()
    down = client.get("/ready")
    assert down.status_code == 503
    body = down.get_json()
    assert body["checks"] == {"database": "ok", "migrations": "ok", "redis": "unavailable", "broker": "unavailable"}
    assert (
        body["error"] == "Service unavailable" and body["message"] == "Not ready: redis unavailable, broker unavailable"
    )
    assert client.get("/health").status_code == 200  # liveness is not readiness

    private_redis.start()
    assert client.get("/ready").status_code == 200


def test_ready_checks_only_what_is_configured(app_with: Callable[..., APIFlask]) -> None:
    ready = app_with().test_client().get("/ready")
    assert ready.status_code == 200 and ready.get_json()["checks"] == {"database": "ok", "migrations": "ok"}


def test_ready_answers_503_while_the_database_is_behind_the_migrations(data_dir: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'behind.db'}"
    upgrade_database(url, revision="0001")
    settings = make_settings(data_dir, (url, url))
    response = create_app(settings=settings).test_client().get("/ready")
    assert response.status_code == 503
    assert response.get_json()["checks"]["migrations"] == "not at head"
    assert response.get_json()["message"] == "Not ready: migrations not at head"


def _metrics(client: Any, **headers: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200 and response.mimetype == "text/plain"
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.get_data(as_text=True))
        for s in family.samples
    }


def test_metrics_count_requests_by_route_template_and_rate_limit_refusals(
    app_with: Callable[..., APIFlask], caller: Caller
) -> None:
    client = app_with(RATE_LIMIT="3 per minute").test_client()
    route = "/api/v1/accounts/<uuid:account_id>"
    before = _metrics(client)
    statuses = [client.get(f"/api/v1/accounts/{uuid.uuid4()}", headers=caller.headers).status_code for _ in range(5)]
    assert statuses == [404, 404, 404, 429, 429]
    after = _metrics(client)

    def delta(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert delta("email_service_http_requests_total", method="GET", route=route, status="404") == 3
    assert delta("email_service_http_requests_total", method="GET", route=route, status="429") == 2
    assert delta("email_service_http_request_duration_seconds_count", method="GET", route=route) == 5
    assert delta("email_service_rate_limited_total", route=route) == 2
    assert not any(str(uuid_label) in str(after) for uuid_label in ("/api/v1/accounts/0", "/api/v1/accounts/f"))


def test_metrics_need_the_token_when_one_is_set_and_are_off_in_production_without_one(
    app_with: Callable[..., APIFlask],
) -> None:
    guarded = app_with(METRICS_TOKEN=METRICS_TOKEN).test_client()
    assert guarded.get("/metrics").status_code == 401
    assert guarded.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert guarded.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).status_code == 200
    production = {
        "FLASK_ENV": "production",
        "JWT_SECRET_KEY": "p" * 48,
        "CORS_ORIGINS": "https://mail.example.com",
        "AUTH_TRUST_HEADERS": "false",
        "CELERY_BROKER_URL": "redis://127.0.0.1:6379/13",
    }
    closed = app_with(**production).test_client().get("/metrics")
    assert closed.status_code == 404 and closed.get_json()["error"] == "Not found"


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, error.read(), dict(error.headers)
    except OSError:  # not listening yet
        return 0, b"", {}


def _sample_file_pids(folder: Path) -> set[str]:
    return {path.stem.rsplit("_", 1)[-1] for path in folder.glob("*.db")}


def test_production_serve_runs_gunicorn_workers_with_merged_metrics_and_json_request_lines(
    data_dir: Path, database_urls: tuple[str, str], settings: Settings, tmp_path: Path
) -> None:
    port = free_port()
    env = settings_env(
        data_dir,
        database_urls,
        FLASK_ENV="production",
        JWT_SECRET_KEY=settings.jwt_secret_key,
        CORS_ORIGINS="https://mail.example.com",
        CELERY_BROKER_URL="redis://127.0.0.1:6379/13",
        METRICS_TOKEN=METRICS_TOKEN,
        WEB_CONCURRENCY="2",
        WEB_THREADS="2",
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"),
    )
    server = ServiceProcess(["serve", "--port", str(port)], env, tmp_path / "serve.log").start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: server.running() and _get(f"{base}/health")[0] == 200, 30, "gunicorn to answer")
        for i in range(40):
            status, _body, headers = _get(f"{base}/health", {"X-Request-ID": f"probe-{i}"})
            assert status == 200 and headers["X-Request-ID"] == f"probe-{i}"
        assert _get(f"{base}/metrics")[0] == 401
        merged = scrape(f"{base}/metrics", token=METRICS_TOKEN)
        served = sample(merged, "email_service_http_requests_total", method="GET", route="/health", status="200")
        assert served >= 40  # every worker's requests, merged (the readiness polls add a few)
        assert len(_sample_file_pids(tmp_path / "metrics")) >= 2  # the master's and the serving workers' files
    finally:
        assert server.stop() == 0
    lines = [line for line in server.json_lines() if line.get("event") == "request"]
    probe = next(line for line in lines if line.get("request_id") == "probe-0")
    assert probe["route"] == "/health" and probe["status"] == 200 and probe["level"] == "info"
    assert json.dumps(probe)  # one JSON object per line
    assert "gunicorn" in server.output().lower()  # served by gunicorn, not waitress
