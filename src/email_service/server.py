"""HTTP serving for ``email-service serve`` (issue 7): gunicorn in production, waitress in the embedded default.

Both serve a port the command has already bound (:func:`listen`), so a taken port is one clear line, whatever
the server; on Linux each gunicorn worker then listens on a socket of its own on that port (``SO_REUSEPORT``, the
kernel spreads connections over them).  gunicorn: ``WEB_CONCURRENCY`` worker processes (default 2) of
``WEB_THREADS`` threads each (gthread),
the app built in each worker after the fork (its own database pool and job queue), Prometheus multiprocess files
of a dead worker dropped (``child_exit``), its error log through the process's structured logging and no access
log of its own (the app logs one line per request).  waitress: one process of ``--threads`` threads.  Either way
the command adds ``EVENTS_MAX_STREAMS`` threads per process for Server-Sent Events (one thread per open stream,
see :mod:`email_service.api.events`), and waitress accepts that many connections more than its default 100.
Either way each serving process moves its start-up heap out of the collector's way (:func:`settle_heap`) once the
app is built.
"""

from __future__ import annotations

import gc
import logging
import socket
import sys
from collections.abc import Callable
from typing import Any

from email_service.config import Settings
from email_service.observability import metrics

log = logging.getLogger("email_service")
WsgiApp = Callable[..., Any]


#: Whether gunicorn's workers each listen on a socket of their own (``SO_REUSEPORT``): on Linux, where the kernel
#: spreads new connections over the sockets of a port (other systems accept the option without spreading).
REUSE_PORT = sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def listen(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A listening TCP socket on ``host:port`` (IPv4 or IPv6 by the host's form).  Raises :class:`OSError`.

    ``reuse_port`` (gunicorn on Linux, :data:`REUSE_PORT`): the socket is bound with ``SO_REUSEPORT`` but does not
    listen.  It holds the port against other programs (so a taken port is still found here, before gunicorn starts)
    while each worker listens on a socket of its own on the same port (:func:`serve_gunicorn`).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    if reuse_port:  # first without SO_REUSEPORT: a port another program (or another serve) holds is refused
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
            port = probe.getsockname()[1]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        if not reuse_port:
            sock.listen(1024)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


#: The collector's thresholds once the start-up heap is frozen (:func:`settle_heap`): CPython's defaults for the
#: young generations; a full collection after 100 middle-generation ones instead of 10 (see there).
GC_THRESHOLDS = (700, 10, 100)


def settle_heap() -> None:
    """Freeze the objects alive once the app is built (``gc.freeze``, after a full ``gc.collect``) so that no
    later collection walks them, and set :data:`GC_THRESHOLDS`.  Call once per serving process, before the first
    request.

    The app, its modules, routes, schemas and SQLAlchemy's mappers are ~150,000 container objects that live as
    long as the process.  Unfrozen, every full collection walks all of them while holding the GIL: 50-160 ms during
    which no request of the process moves, one every few seconds under load, which is where a list page's p99 came
    from (issue 11, ``bench/README.md``).  Frozen, a full collection walks only what was made since start-up.
    With nothing old left to compare with, CPython would run a full collection after every 10 middle-generation
    ones (~7,000 allocations) and a request holding many new objects would be walked again and again; 100 keeps
    that bounded.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


#: Bytes waitress reads from a file per send attempt (see :func:`serve_waitress`).
WAITRESS_SEND_CHUNK = 256 * 1024


def serve_waitress(app: WsgiApp, sock: socket.socket, *, threads: int, max_request_body_size: int) -> None:
    """Serve ``app`` on ``sock`` in this process until interrupted (embedded default): :func:`waitress_server`."""
    server = waitress_server(app, sock, threads=threads, max_request_body_size=max_request_body_size)
    settle_heap()
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()


def waitress_server(app: WsgiApp, sock: socket.socket, *, threads: int, max_request_body_size: int) -> Any:
    """A waitress server of ``app`` on the listening ``sock`` (call its ``run()``); it answers 413 to a body over
    ``max_request_body_size`` bytes before buffering it.

    A file body (``wsgi.file_wrapper``: downloads) is sent by waitress's channel, which reads as many bytes of the
    file per send attempt as the socket's ``SO_SNDBUF`` at accept time (~3.9 MB on Linux loopback, where the kernel
    auto-tunes it), then reads them again to skip what was sent.  Ten parallel 25 MB downloads held ~65 MB of
    short-lived reads that way and ran at a third of the speed they reach with reads capped at
    :data:`WAITRESS_SEND_CHUNK` (``bench/attachments.py``).  The channel here caps them; the socket's buffer (and
    TCP auto-tuning) stays as it is.
    """
    from waitress.adjustments import Adjustments
    from waitress.channel import HTTPChannel
    from waitress.server import TcpWSGIServer

    class _Channel(HTTPChannel):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.sendbuf_len = min(self.sendbuf_len, WAITRESS_SEND_CHUNK)

    class _Server(TcpWSGIServer):
        channel_class = _Channel

    adj = Adjustments(
        sockets=[sock],
        threads=threads,
        ident="email_service",
        max_request_body_size=max_request_body_size,
        connection_limit=100 + threads,
    )
    sockinfo = (sock.family, sock.type, sock.proto, sock.getsockname())
    return _Server(app, None, True, sock, adj=adj, bind_socket=False, sockinfo=sockinfo)


def serve_gunicorn(settings: Settings, load_app: Callable[[], WsgiApp], sock: socket.socket, *, threads: int) -> int:
    """Serve the app of ``load_app()`` (called in each worker) on ``sock`` with gunicorn until stopped.

    Returns gunicorn's exit status.
    """
    from gunicorn.app.base import BaseApplication
    from gunicorn.glogging import Logger

    class _StructuredLogger(Logger):  # type: ignore[misc]
        """gunicorn's error log through the root handler (structlog); no access log (the app logs requests)."""

        def setup(self, cfg: Any) -> None:
            super().setup(cfg)
            for handler in list(self.error_log.handlers):
                self.error_log.removeHandler(handler)
            self.error_log.propagate = True

    options: dict[str, Any] = {
        "bind": [f"fd://{sock.fileno()}"],  # one socket all workers accept from; or one per worker, below
        "workers": settings.web_concurrency,
        "threads": threads,
        "worker_class": "gthread",
        "accesslog": None,
        "logger_class": _StructuredLogger,
        "child_exit": lambda _server, worker: metrics.mark_process_dead(worker.pid),
        "proc_name": "email-service",
        "timeout": 120,
        "graceful_timeout": 30,
        "control_socket_disable": True,  # no gunicornc socket in the home folder (read-only in the image)
    }
    if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):  # bound by listen(reuse_port=True)
        # Each worker listens on a socket of its own (gunicorn's reuse_port): the kernel spreads new connections over
        # the workers.  On one shared socket the worker that wakes first accepts a whole burst of connections and
        # keeps them (keep-alive): 3 or 4 of wrk's 4 on one worker in 9 of 9 runs, one GIL serving them while the
        # other worker idled (issue 11, bench/README.md stop 17).
        host, port = sock.getsockname()[:2]
        options.update(bind=[f"[{host}]:{port}" if ":" in host else f"{host}:{port}"], reuse_port=True)

    class _Gunicorn(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for name, value in options.items():
                self.cfg.set(name, value)

        def load(self) -> WsgiApp:
            app = load_app()  # in the worker, after the fork
            settle_heap()
            return app

    try:
        _Gunicorn().run()
    except SystemExit as exit_:
        return int(exit_.code or 0)
    return 0
