"""Field types of every API schema: they accept exactly what the OpenAPI document says and what the database can
store (DESIGN.md sections 5 and 10, "the API refuses what its document forbids").

* :class:`Text` -- every text field of every request (body or query).  Refuses U+0000 (PostgreSQL ``text`` cannot
  hold it) and lone UTF-16 surrogates U+D800-U+DFFF (JSON's ``"\\ud800"`` escape, RFC 8259 section 8.2: no UTF-8
  encoding exists, so neither the database driver nor the credential cipher can take it).  The field's
  ``pattern`` in the document is :data:`TEXT_PATTERN` unless the field has a stricter pattern of its own.
* :class:`EmailAddress` -- a :class:`Text` that is an e-mail address.
* :class:`Boolean` -- JSON ``true``/``false`` only in bodies (never ``0``, ``1`` or ``"true"``); in a query string
  (a :class:`QuerySchema`) the words ``true``/``false`` only.
* :class:`WholeNumber` -- a JSON integer in bodies (``993`` or ``993.0``, never ``"993"``, ``1.5`` or ``true``).
* :class:`QuerySchema` -- base of query-string schemas, whose values arrive as text.
* :class:`FullMatch` -- a pattern validator that matches the whole value.
"""

from __future__ import annotations

import re
from typing import Any

from apiflask import Schema
from apiflask.fields import Boolean as _Boolean
from apiflask.fields import Email, Integer, String
from marshmallow import ValidationError, pre_load
from marshmallow.validate import Regexp

#: The text rule's ``pattern`` in the document: no NUL, written so that every regex dialect of JSON Schema tools
#: reads it (ECMA-262, Python, Rust, RE2).  Lone surrogates, refused as well, cannot be written portably (Rust and
#: RE2 reject ``\uD800`` in a pattern; their strings cannot hold one anyway): the document's description says so.
TEXT_PATTERN = r"^[^\x00]*$"
_FORBIDDEN = re.compile(r"[\u0000\uD800-\uDFFF]")
TEXT_ERROR = "must not contain NUL characters or lone surrogates (U+D800-U+DFFF)"


def is_storable_text(value: str) -> bool:
    """True when ``value`` holds no NUL and no lone surrogate (the :class:`Text` rule)."""
    return not _FORBIDDEN.search(value)


class Text(String):
    """A string the database can store: no NUL, no lone surrogate (400 naming the field otherwise).

    Documented in the OpenAPI document as ``pattern`` :data:`TEXT_PATTERN` (no NUL), unless a ``Regexp`` validator
    of the field gives a stricter pattern (a hostname's, which admits ASCII only); the document's description
    states the surrogate rule.
    """

    default_error_messages = {"text": TEXT_ERROR}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        has_pattern = any(isinstance(getattr(v, "regex", None), re.Pattern) for v in self.validators)
        if not has_pattern and "pattern" not in self.metadata:
            self.metadata = {**self.metadata, "pattern": TEXT_PATTERN}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        text = super()._deserialize(value, attr, data, **kwargs)
        if _FORBIDDEN.search(text):
            raise self.make_error("text")
        return text


class EmailAddress(Text, Email):
    """An e-mail address (marshmallow's ``Email`` check, ``format: email`` in the document) that is also
    :class:`Text`."""


class Boolean(_Boolean):
    """``true`` or ``false`` and nothing else (not ``0``/``1``, not ``"true"``); "Not a valid boolean." otherwise.

    Query strings carry text: a :class:`QuerySchema` turns the words ``true``/``false`` into booleans first.
    """

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if isinstance(value, bool):
            return value
        raise self.make_error("invalid")


class WholeNumber(Integer):
    """A JSON body integer: ``993`` or ``993.0`` (the same JSON number, and an ``integer`` to JSON Schema and so
    to the OpenAPI document), never ``1.5``, ``"993"`` or ``true``."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(strict=True, **kwargs)

    def _validated(self, value: Any) -> int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return super()._validated(value)


class FullMatch(Regexp):
    """A ``Regexp`` validator that must match the whole value (``re.fullmatch``): with ``match``, a ``$`` at the end
    of the pattern also takes a value with a trailing line feed.  Documented as the field's ``pattern``."""

    def __call__(self, value: Any) -> Any:
        if self.regex.fullmatch(value) is None:
            raise ValidationError(self._format_error(value))
        return value


_WORDS = {"true": True, "false": False}


class QuerySchema(Schema):
    """Base of the query-string schemas: every value is text, so a :class:`Boolean` parameter is the word ``true``
    or ``false`` (OpenAPI 3 ``style: form`` serialisation); any other spelling stays text and is refused.

    Parameter names outside the schema are refused before it is loaded (:mod:`email_service.api.gate`).
    """

    @pre_load
    def _booleans_from_words(self, data: Any, **_: Any) -> Any:
        flags = {field.data_key or name for name, field in self.load_fields.items() if isinstance(field, Boolean)}
        if not flags & set(data):
            return data
        values = {key: data[key] for key in data}
        for key in flags & set(values):
            values[key] = _WORDS.get(values[key], values[key]) if isinstance(values[key], str) else values[key]
        return values
