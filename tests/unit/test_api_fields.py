"""The API's field types and gate on a minimal app of their own: a boolean query parameter (no endpoint of the
service has one yet) is the word ``true`` or ``false`` only, text refuses NUL in a query string too, and the
gate's query-name check reads the same schemas the document is made from."""

from __future__ import annotations

from typing import Any

import pytest
from apiflask import APIBlueprint, APIFlask
from flask.testing import FlaskClient

from email_service.api.errors import install_error_handlers
from email_service.api.fields import Boolean, QuerySchema, Text
from email_service.api.gate import guard


class SearchQuery(QuerySchema):
    unread = Boolean(load_default=None)
    q = Text(load_default="")


@pytest.fixture
def client() -> FlaskClient:
    app = APIFlask(__name__, spec_path="/openapi.json")
    app.config.update(VALIDATION_ERROR_STATUS_CODE=400)
    install_error_handlers(app)
    bp = guard(APIBlueprint("search", __name__), authenticated=False)

    @bp.get("/search")
    @bp.input(SearchQuery, location="query")
    def search(query_data: dict[str, Any]) -> dict[str, Any]:
        return query_data

    app.register_blueprint(bp)
    return app.test_client()


@pytest.mark.parametrize(("word", "value"), [("true", True), ("false", False)])
def test_true_and_false_are_the_boolean_words_of_a_query_string(client: FlaskClient, word: str, value: bool) -> None:
    response = client.get(f"/search?unread={word}&q=invoice")
    assert response.status_code == 200 and response.get_json() == {"unread": value, "q": "invoice"}


@pytest.mark.parametrize("word", ["1", "0", "True", "yes", "on", "", "t"])
def test_other_spellings_of_a_boolean_are_refused(client: FlaskClient, word: str) -> None:
    response = client.get(f"/search?unread={word}")
    assert response.status_code == 400
    assert response.get_json()["message"].startswith("unread: ")


def test_query_text_refuses_nul_and_names_the_parameter(client: FlaskClient) -> None:
    response = client.get("/search?q=a%00b")
    assert response.status_code == 400 and "q: must not contain NUL" in response.get_json()["message"]


def test_documented_parameters_are_the_schema_fields(client: FlaskClient) -> None:
    params = client.get("/openapi.json").get_json()["paths"]["/search"]["get"]["parameters"]
    assert {p["name"]: p["schema"]["type"] for p in params} == {"unread": "boolean", "q": "string"}
    refused = client.get("/search?unread=true&sort=date")
    assert refused.status_code == 400 and refused.get_json()["message"] == "Unknown query parameter 'sort'"
