"""``serve`` in production on Linux: each gunicorn worker listens on a socket of its own (``SO_REUSEPORT``), so the
kernel spreads new connections over the workers instead of the first worker to wake accepting a whole burst and
keeping it (issue 11, stop 17, ``bench/README.md``); a port another program holds is still refused in one line."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

from email_service.config import Settings
from tests.conftest import settings_env
from tests.support.services import ServiceProcess, free_port, wait_until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_REUSEPORT spreads connections on Linux only"),
]


def _listeners(port: int) -> int:
    """Listening TCP sockets on ``port`` (``/proc/net/tcp`` and ``tcp6``, state 0A)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                count += 1
    return count


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
            conn.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return conn.recv(12).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def _production_env(data_dir: Path, database_urls: tuple[str, str], settings: Settings) -> dict[str, str]:
    return settings_env(data_dir, database_urls, FLASK_ENV="production", JWT_SECRET_KEY=settings.jwt_secret_key,
                        CORS_ORIGINS="https://mail.example.com", CELERY_BROKER_URL="redis://127.0.0.1:6379/13",
                        WEB_CONCURRENCY="3", WEB_THREADS="2")  # fmt: skip


def test_each_worker_listens_on_its_own_socket(
    data_dir: Path, database_urls: tuple[str, str], settings: Settings, tmp_path: Path
) -> None:
    port = free_port()
    server = ServiceProcess(["serve", "--port", str(port)], _production_env(data_dir, database_urls, settings),
                            tmp_path / "serve.log").start()  # fmt: skip
    try:
        wait_until(lambda: server.running() and _answers(port) and _listeners(port) == 3, 30, "3 workers listening")
        assert all(_answers(port) for _ in range(30))  # the command's own socket holds the port, takes no connection
    finally:
        assert server.stop() == 0


def test_production_serve_on_a_taken_port_says_so_in_one_line(
    data_dir: Path, database_urls: tuple[str, str], settings: Settings, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # even a holder that allows sharing the port
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = ServiceProcess(["serve", "--port", str(port)], _production_env(data_dir, database_urls, settings),
                                tmp_path / "serve.log").start()  # fmt: skip
        try:
            wait_until(lambda: not server.running(), 30, "serve to give up")
        finally:
            server.stop()  # a serve that did start (the port shared) must not outlive the test
    lines = [line for line in server.output().splitlines() if line.strip() and "listening" not in line]
    assert f"email-service: cannot listen on 127.0.0.1:{port}: address already in use" in lines
