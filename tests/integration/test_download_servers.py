"""Downloads through the real HTTP servers (issue 10): the embedded server (waitress) and the production one
(gunicorn, ``sendfile(2)``) send exactly the bytes of a file span (:class:`FileSpan`, a whole file or one range),
and waitress does so without holding big pieces of the file in memory.

waitress's channel reads as many bytes of a ``wsgi.file_wrapper`` file per send attempt as the socket's send
buffer (``SO_SNDBUF``, ~3.9 MB on Linux loopback); :func:`email_service.server.waitress_server` caps that read at
``WAITRESS_SEND_CHUNK``.  Measured with tracemalloc in this process (server thread + client), which counts every
bytes object the reads create.
"""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from email_service.server import WAITRESS_SEND_CHUNK, listen, waitress_server
from tests.support import span_app
from tests.support.services import free_port, wait_until

pytestmark = pytest.mark.integration

SIZE = 16 * 1024 * 1024
PIECE = 65536
#: (start, stop) spans served: the whole file, a middle range, the last byte, the first byte, a range that ends
#: one byte before the end.
SPANS = [(0, SIZE), (1_000_003, 9_500_001), (SIZE - 1, SIZE), (0, 1), (PIECE + 7, SIZE - 1)]


def _content(start: int, stop: int) -> bytes:
    return b"".join(bytes([index % 251]) * PIECE for index in range(SIZE // PIECE))[start:stop]


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("span") / "big.bin"
    path.write_bytes(_content(0, SIZE))
    return path


@pytest.fixture
def waitress_port(big_file: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    monkeypatch.setenv("SPAN_APP_FILE", str(big_file))
    sock = listen("127.0.0.1", 0)
    server = waitress_server(span_app.app, sock, threads=2, max_request_body_size=1024)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    yield sock.getsockname()[1]
    server.task_dispatcher.shutdown(timeout=1)
    server.close()


@pytest.fixture(scope="module")
def gunicorn_port(big_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    port = free_port()
    log = tmp_path_factory.mktemp("gunicorn") / "gunicorn.log"
    command = [sys.executable, "-m", "gunicorn", "--worker-class", "gthread", "--threads", "2", "--workers", "1",
               "--bind", f"127.0.0.1:{port}", "tests.support.span_app:app"]  # fmt: skip
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, env={**os.environ, "SPAN_APP_FILE": str(big_file)}, stdout=output, stderr=subprocess.STDOUT
        )
    try:
        wait_until(lambda: _answers(port), 30, "gunicorn to answer")
        yield port
    finally:
        process.terminate()
        process.wait(timeout=30)


def _answers(port: int) -> bool:
    try:
        return len(_get(port, "/?start=0&stop=1")) == 1
    except OSError:
        return False


def _get(port: int, path: str) -> bytes:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        assert response.status == 200
        return response.read()
    finally:
        connection.close()


@pytest.mark.parametrize(("start", "stop"), SPANS)
def test_waitress_sends_exactly_the_span(waitress_port: int, start: int, stop: int) -> None:
    assert _get(waitress_port, f"/?start={start}&stop={stop}") == _content(start, stop)


@pytest.mark.parametrize(("start", "stop"), SPANS)
def test_gunicorn_sends_exactly_the_span_with_sendfile(gunicorn_port: int, start: int, stop: int) -> None:
    assert _get(gunicorn_port, f"/?start={start}&stop={stop}") == _content(start, stop)


def _slow_download(port: int) -> bytes:
    """Read the body in 64 KiB pieces with pauses, so the server meets a full socket buffer and sends in parts."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", "/")
    response = connection.getresponse()
    pieces = []
    while piece := response.read(PIECE):
        pieces.append(piece[:1])  # keep a byte per piece: the test's own memory stays small
        if len(pieces) % 16 == 0:
            time.sleep(0.005)
    connection.close()
    return b"".join(pieces)


def test_waitress_never_holds_more_than_a_few_send_chunks_of_a_download(waitress_port: int) -> None:
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        first_bytes = _slow_download(waitress_port)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert first_bytes == bytes(index % 251 for index in range(SIZE // PIECE))  # all of it, in order
    # the read being sent and the read that skips what was sent, plus the client's 64 KiB pieces; uncapped this
    # is twice the socket's send buffer (~8 MB on Linux loopback)
    assert peak - before < 4 * WAITRESS_SEND_CHUNK + 1024 * 1024
