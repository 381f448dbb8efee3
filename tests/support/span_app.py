"""A WSGI app that serves bytes ``start``..``stop`` of the file ``$SPAN_APP_FILE`` as downloads do
(:class:`email_service.api.downloads.FileSpan` through ``wsgi.file_wrapper``): for server-level download tests."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

from email_service.api.downloads import FileSpan


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path = os.environ["SPAN_APP_FILE"]
    query = parse_qs(environ.get("QUERY_STRING", ""))
    size = os.path.getsize(path)
    start, stop = int(query.get("start", ["0"])[0]), int(query.get("stop", [str(size)])[0])
    start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(stop - start))])
    span = FileSpan(open(path, "rb"), start, stop)  # noqa: SIM115 (the server closes it)
    wrapper: Callable[..., Iterable[bytes]] = environ["wsgi.file_wrapper"]
    return wrapper(span, 256 * 1024)
