"""The embedded server (waitress) sends a file body without holding big pieces of it in memory (issue 10).

waitress's channel reads as many bytes of a ``wsgi.file_wrapper`` file per send attempt as the socket's send
buffer (``SO_SNDBUF``, ~3.9 MB on Linux loopback); :func:`email_service.server.waitress_server` caps that read at
``WAITRESS_SEND_CHUNK``.  Measured with tracemalloc in this process (server thread + client), which counts every
bytes object the reads create.
"""

from __future__ import annotations

import http.client
import threading
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from email_service.server import WAITRESS_SEND_CHUNK, listen, waitress_server

SIZE = 16 * 1024 * 1024


@pytest.fixture
def big_file(tmp_path: Path) -> Path:
    path = tmp_path / "big.bin"
    with path.open("wb") as handle:
        for index in range(SIZE // 65536):
            handle.write(bytes([index % 251]) * 65536)
    return path


@pytest.fixture
def port(big_file: Path) -> Iterator[int]:
    def app(environ: dict[str, Any], start_response: Any) -> Any:
        start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(SIZE))])
        return environ["wsgi.file_wrapper"](big_file.open("rb"), 256 * 1024)

    sock = listen("127.0.0.1", 0)
    server = waitress_server(app, sock, threads=2, max_request_body_size=1024)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    yield sock.getsockname()[1]
    server.task_dispatcher.shutdown(timeout=1)
    server.close()


def _slow_download(port: int) -> bytes:
    """Read the body in 64 KiB pieces with pauses, so the server meets a full socket buffer and sends in parts."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", "/")
    response = connection.getresponse()
    pieces = []
    while piece := response.read(65536):
        pieces.append(piece[:1])  # keep a byte per piece: the test's own memory stays small
        if len(pieces) % 16 == 0:
            time.sleep(0.005)
    connection.close()
    return b"".join(pieces)


def test_a_download_never_holds_more_than_a_few_send_chunks(port: int) -> None:
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        first_bytes = _slow_download(port)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert first_bytes == bytes(index % 251 for index in range(SIZE // 65536))  # all of it, in order
    # the read being sent and the read that skips what was sent, plus the client's 64 KiB pieces; uncapped this
    # is twice the socket's send buffer (~8 MB on Linux loopback)
    assert peak - before < 4 * WAITRESS_SEND_CHUNK + 1024 * 1024
