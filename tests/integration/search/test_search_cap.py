"""Search past its count bound (issue 11): with more hits than ``search.COUNT_CAP`` (the real bound, no patching),
``total`` is a lower bound, the first page is still ranked over the newest ``RANK_WINDOW`` hits, and pages by
``offset`` beyond the bound keep coming, each hit exactly once, in the documented order."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from email_service.app import create_app
from email_service.services.context import ServiceContext
from email_service.services.search import COUNT_CAP, RANK_WINDOW
from tests.conftest import Caller
from tests.integration.search.conftest import BASE_MS, Box, new_box, raw_message

pytestmark = pytest.mark.integration
MINUTE_MS = 60_000
#: Hits of ``ping``: the bound and two pages of 30 more.
HITS = COUNT_CAP + 60


@pytest.fixture(scope="module")
def many(ctx: ServiceContext) -> Box:
    """``HITS`` messages with ``ping`` in the body, one a minute (message ``i`` is the ``i``-th oldest); every 5th
    has it in the subject too; one message without it."""
    box = new_box(ctx, create_app(context=ctx).test_client(), Caller(ctx))
    raws = [raw_message(subject=f"ping {i}" if i % 5 == 0 else f"note {i}", body=f"ping number {i}",
                        date_ms=BASE_MS + i * MINUTE_MS) for i in range(HITS)]  # fmt: skip
    ids = box.store("INBOX", [*raws, raw_message(subject="other", body="nothing", date_ms=BASE_MS - MINUTE_MS)])
    box.labels = {str(row_id): index for index, row_id in enumerate(ids)}  # type: ignore[attr-defined]
    return box


def page(client: FlaskClient, box: Box, **params: Any) -> tuple[list[int], dict[str, Any]]:
    """The message indexes of a ``ping`` search's page and its pagination."""
    response = client.get(f"/api/v1/accounts/{box.account_id}/messages/search", query_string={"q": "ping", **params},
                          headers=box.owner.headers)  # fmt: skip
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    return [box.labels[m["id"]] for m in body["messages"]], body["pagination"]  # type: ignore[attr-defined]


def expected_order() -> list[int]:
    """``sort=relevance``: the newest ``RANK_WINDOW`` hits, subject matches first (newest first), then the rest of
    them newest first; after that window every older hit newest first."""
    newest = list(range(HITS - 1, -1, -1))
    window = newest[:RANK_WINDOW]
    ranked = [i for i in window if i % 5 == 0] + [i for i in window if i % 5 != 0]
    return ranked + newest[RANK_WINDOW:]


def test_the_total_is_a_lower_bound_past_the_cap_and_the_first_page_is_ranked(client: FlaskClient, many: Box) -> None:
    hits, pagination = page(client, many, limit=50)
    assert pagination == {"total": COUNT_CAP, "limit": 50, "offset": 0, "totalExact": False}
    assert hits == expected_order()[:50]
    _, by_date = page(client, many, limit=50, sort="date")
    assert (by_date["total"], by_date["totalExact"]) == (COUNT_CAP, False)


@pytest.mark.parametrize("sort", ["relevance", "date"])
def test_offsets_past_the_cap_page_through_every_hit_once(client: FlaskClient, many: Box, sort: str) -> None:
    seen: list[int] = []
    for offset in range(0, HITS + 40, 40):
        hits, pagination = page(client, many, limit=40, offset=offset, sort=sort)
        seen += hits
        reached = offset + len(hits)
        if offset + 40 <= COUNT_CAP:
            assert (pagination["total"], pagination["totalExact"]) == (COUNT_CAP, False)
        elif 0 < len(hits) < 40:  # the last, short page: every hit is known
            assert (pagination["total"], pagination["totalExact"]) == (HITS, True)
        elif hits:  # a full page past the cap: at least the hits up to it
            assert (pagination["total"], pagination["totalExact"]) == (reached, False)
        else:  # past the last hit: nothing claimed beyond the bound
            assert (pagination["total"], pagination["totalExact"]) == (COUNT_CAP, False)
    assert seen == (expected_order() if sort == "relevance" else list(range(HITS - 1, -1, -1)))
