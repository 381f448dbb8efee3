"""The app's JSON provider (api/json_body.py): orjson bodies with the shape of Flask's default provider."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import json
import uuid

import pytest
from flask import Flask
from flask.json.provider import DefaultJSONProvider

from email_service.api.json_body import OrjsonProvider


@pytest.fixture()
def apps() -> tuple[Flask, Flask]:
    """An app with Flask's default provider and one with ours."""
    ours = Flask("ours")
    ours.json = OrjsonProvider(ours)
    return Flask("flask"), ours


@dataclasses.dataclass
class _Point:
    x: int
    label: str


BODY = {
    "messages": [
        {"id": str(uuid.UUID(int=7)), "subject": "Re: plan", "to": [{"email": "a@example.com", "name": None}],
         "isRead": True, "size": 2048, "receivedAt": 1764547200000, "flags": ["\\Seen"], "score": 0.25}
    ] * 3,
    "pagination": {"total": 3, "limit": 50, "offset": 0, "nextCursor": None},
    "zeta": {}, "alpha": [],
}  # fmt: skip


def _body(app: Flask, value: object) -> bytes:
    with app.test_request_context():
        return app.json.response(value).get_data()


def test_ascii_bodies_are_the_bytes_flask_writes(apps: tuple[Flask, Flask]) -> None:
    flask_app, ours = apps
    typed = {"id": uuid.UUID(int=9), "price": decimal.Decimal("1.50"), "at": dt.datetime(2026, 12, 1, 2, 3, 4),
             "day": dt.date(2026, 12, 1), "point": _Point(1, "p")}  # fmt: skip
    for value in (BODY, typed, {3: "int key"}, [], None, "text", 12):
        assert _body(ours, value) == _body(flask_app, value)
    assert _body(ours, BODY).startswith(b'{"alpha":[],"messages":[{"flags":')  # keys sorted, compact
    assert _body(ours, BODY).endswith(b"}\n")


def test_non_ascii_is_written_as_utf8_and_parses_to_the_same_text(apps: tuple[Flask, Flask]) -> None:
    flask_app, ours = apps
    value = {"subject": "Grüße, 会議 📅", "name": "Zoë"}
    body = _body(ours, value)
    assert "Grüße, 会議 📅".encode() in body
    assert json.loads(body) == json.loads(_body(flask_app, value)) == value


def test_nan_and_infinity_are_written_as_null(apps: tuple[Flask, Flask]) -> None:
    _, ours = apps
    assert json.loads(_body(ours, {"a": float("nan"), "b": float("inf")})) == {"a": None, "b": None}


def test_an_integer_beyond_64_bits_is_written_by_the_standard_library(apps: tuple[Flask, Flask]) -> None:
    _, ours = apps
    assert _body(ours, {"big": 2**70, "text": "é"}) == b'{"big":1180591620717411303424,"text":"\xc3\xa9"}\n'


def test_debug_mode_indents_as_flask_does(apps: tuple[Flask, Flask]) -> None:
    flask_app, ours = apps
    flask_app.debug = ours.debug = True
    assert _body(ours, BODY) == _body(flask_app, BODY)
    assert b'\n  "alpha": []' in _body(ours, BODY)


def test_dumps_takes_flask_arguments_and_leaves_others_to_the_standard_library(apps: tuple[Flask, Flask]) -> None:
    _, ours = apps
    provider = ours.json
    assert isinstance(provider, OrjsonProvider)
    assert provider.dumps({"b": 1, "a": [1, 2]}) == '{"a":[1,2],"b":1}'
    assert provider.dumps({"b": 1}, indent=2) == '{\n  "b": 1\n}'
    assert provider.dumps({"b": 1, "a": 2}, sort_keys=False) == DefaultJSONProvider(ours).dumps(
        {"b": 1, "a": 2}, sort_keys=False
    )
    with pytest.raises(TypeError):
        provider.dumps({"x": object()})
    assert provider.loads('{"a": NaN}')["a"] != provider.loads('{"a": NaN}')["a"]  # input parsing unchanged
