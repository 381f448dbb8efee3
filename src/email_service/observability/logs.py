"""Process-wide logging (issue 7): structlog renders every record, JSON lines in production, readable lines in
development.

The code logs through the standard :mod:`logging` module (``logging.getLogger("email_service.x")``), structured
fields passed as ``extra={...}``; :func:`configure_logging` installs one root handler whose
:class:`structlog.stdlib.ProcessorFormatter` adds the time, level, logger name, the fields bound to the current
context (:func:`bind_context`, e.g. the request id) and the ``extra`` fields, then renders them.  Libraries that
log (Celery, gunicorn, Alembic, waitress) go through the same handler.  Secrets are never passed as fields: the
request line (``api/auth.py``) names the route, never headers, bodies or query strings.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog
from structlog.contextvars import bind_contextvars, clear_contextvars
from structlog.typing import Processor

#: Loggers of libraries that are chatty at INFO on every start.
_QUIET = ("alembic", "celery.redirected", "kombu", "amqp")


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time of each record (it may be replaced after set-up)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def _drop_formatted_message(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """``message`` is the text another formatter may have cached on the record: it is the ``event`` already."""
    event.pop("message", None)
    return event


def _formatter(json_lines: bool) -> structlog.stdlib.ProcessorFormatter:
    pre_chain: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.stdlib.ExtraAdder(),
        _drop_formatted_message,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if json_lines
        else structlog.dev.ConsoleRenderer(colors=False, exception_formatter=structlog.dev.plain_traceback)
    )
    processors: list[Processor] = [structlog.stdlib.ProcessorFormatter.remove_processors_meta]
    if json_lines:
        processors.append(structlog.processors.dict_tracebacks)
    processors.append(renderer)
    return structlog.stdlib.ProcessorFormatter(foreign_pre_chain=pre_chain, processors=processors)


def configure_logging(*, json_lines: bool, level: str = "INFO") -> None:
    """Send every log record of the process to stderr through structlog, one line per record.

    Args:
        json_lines: one JSON object per line (production, ``LOG_FORMAT=json``) instead of readable lines.
        level: the root level name (``LOG_LEVEL``), e.g. ``INFO``.
    """
    handler = _StderrHandler()
    handler.setFormatter(_formatter(json_lines))
    root = logging.getLogger()
    for existing in list(root.handlers):
        if isinstance(existing, _StderrHandler):  # configured before (a command run twice in one process)
            root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    for name in _QUIET:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))


def bind_context(**fields: Any) -> None:
    """Attach ``fields`` to every record logged by this thread/task until :func:`clear_context` (e.g. the request
    id, tenant and user of the request being served)."""
    bind_contextvars(**fields)


def clear_context() -> None:
    """Forget the fields bound by :func:`bind_context` (at the end of a request or job)."""
    clear_contextvars()
