"""A page row on SQLite holds ``to``/``cc``/``flags`` as the stored JSON text (``message_list.PAGE_COLUMNS``);
the summary built from that text must equal the one built from the parsed values (issue 11, stop 17)."""

from __future__ import annotations

import json

import pytest

from email_service.api.summaries import addresses, flag_list, summary_of_row

CASES = [
    [],
    [{"name": "Jürgen", "email": "j@example.de"}, {"name": "Doe, Jane", "email": "jane@example.org"}],
    [{"email": "no-name@example.com"}, {"name": "Extra", "email": "e@example.com", "group": "team"}],
    [{"name": 7, "email": None}],
]


@pytest.mark.parametrize("value", CASES)
def test_addresses_from_text_equal_addresses_from_values(value: list[dict[str, object]]) -> None:
    text = json.dumps(value)
    assert addresses(text) == addresses(value)
    assert addresses(json.dumps(value, separators=(",", ":"))) == addresses(value)


@pytest.mark.parametrize("value", [[], ["\\Seen"], ["\\Seen", "$Important", "Projekt-X", 3]])
def test_flags_from_text_equal_flags_from_values(value: list[object]) -> None:
    assert flag_list(json.dumps(value)) == flag_list(value) == [None if v is None else str(v) for v in value]


def test_none_stays_none() -> None:
    assert addresses(None) is None and flag_list(None) is None
    assert addresses("null") is None and flag_list("null") is None


def test_a_row_of_text_gives_the_summary_of_the_parsed_row() -> None:
    to = [{"name": "Zoë", "email": "zoe@example.com"}]
    row = ["0" * 32, "1" * 32, "2" * 32, 5, "<m@x>", "3" * 32, "s", "n", "a@x", to, [], 1, 2, "p", ["\\Seen"],
           True, False, False, False, False, 10, None]  # fmt: skip
    as_text = [*row[:9], json.dumps(to), "[]", 1, 2, "p", '["\\\\Seen"]', *row[15:]]
    assert summary_of_row(as_text) == summary_of_row(row)
    assert summary_of_row(as_text)["flags"] == ["\\Seen"]
