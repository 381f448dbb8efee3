"""The application's JSON provider: response bodies written by orjson (issue 11, the list's p99).

Every JSON answer (``jsonify``, APIFlask's outputs, :func:`email_service.api.summaries.json_response`) goes through
the app's provider.  Flask's default one writes with the standard library's ``json``: ~0.55 ms of a list page's
~3 ms of CPU for its 45 KB body, all of it holding the GIL; orjson writes the same page in ~0.05 ms
(``bench/README.md``, stop 18).

The bodies keep the shape of Flask's default provider: keys sorted, compact separators, a final newline, dates
as RFC 822 strings (Flask's ``_default``; orjson's own ISO 8601 is passed over), ``Decimal`` and ``UUID`` as strings,
dataclasses as objects.  What differs, by RFC 8259 section 8.1 (JSON is UTF-8):

* non-ASCII text is written as UTF-8 instead of ``\\uXXXX`` escapes (the same string once parsed);
* ``NaN`` and infinities are written as ``null`` (the standard library wrote the non-JSON tokens ``NaN`` and
  ``Infinity``, which ``JSON.parse`` rejects).

A value orjson refuses (an integer beyond 64 bits) is written by the standard library as before.  Request
bodies are still parsed by the standard library (:meth:`loads` unchanged), so what input is accepted is unchanged.
"""

from __future__ import annotations

from typing import Any, cast

import orjson
from flask import Response
from flask.json.provider import DefaultJSONProvider

#: orjson's options for every body: Flask's key order, and keys that are not strings written as strings (as ``json``
#: does); dates and dataclasses handed to :attr:`DefaultJSONProvider.default` (Flask's RFC 822 form, and a dict whose
#: keys are sorted too).
OPTIONS = (
    orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
)

#: Keyword arguments of :meth:`OrjsonProvider.dumps` that orjson can honour; any other goes to ``json.dumps``.
_HANDLED = frozenset({"indent", "separators"})


class OrjsonProvider(DefaultJSONProvider):
    """Flask's default JSON provider with bodies written by orjson (module docstring)."""

    def _bytes(self, obj: Any, *, indent: bool) -> bytes:
        """``obj`` as JSON bytes; raises ``TypeError`` for a value neither orjson nor :attr:`default` can write."""
        options = OPTIONS | orjson.OPT_INDENT_2 if indent else OPTIONS
        try:
            return orjson.dumps(obj, default=self.default, option=options)
        except orjson.JSONEncodeError:  # e.g. an int beyond 64 bits: the standard library writes it
            separators = None if indent else (",", ":")
            text = super().dumps(obj, indent=2 if indent else None, separators=separators, ensure_ascii=False)
            return text.encode()

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        """``obj`` as JSON text (Flask's ``JSONProvider.dumps``).  ``indent`` (any value: 2 spaces) and ``separators``
        are honoured; other ``json.dumps`` arguments make the standard library write it."""
        if not _HANDLED.issuperset(kwargs):
            return super().dumps(obj, **kwargs)
        return self._bytes(obj, indent=bool(kwargs.get("indent"))).decode()

    def response(self, *args: Any, **kwargs: Any) -> Response:
        """``jsonify``: an ``application/json`` response of the arguments (Flask's ``JSONProvider.response``):
        indented in debug mode (or with :attr:`compact` ``False``), compact otherwise, with a final newline."""
        obj = self._prepare_response_obj(args, kwargs)
        indent = (self.compact is None and self._app.debug) or self.compact is False
        body = self._bytes(obj, indent=indent) + b"\n"
        response_class = cast("type[Response]", self._app.response_class)  # the app's (flask.Response by default)
        return response_class(body, mimetype=self.mimetype)
