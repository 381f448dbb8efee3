"""Row-level access of seed 001 through HTTP, for every endpoint that takes an id: another user of the same
tenant gets 403, anyone of another tenant (admins included) gets 404, never data; an admin of the same tenant
gets the resource.  Lists never show other users' rows."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from flask.testing import FlaskClient

from email_service.services.context import ServiceContext
from tests.conftest import Caller
from tests.integration.api.conftest import SECRET_BODY, SECRET_SUBJECT, Mailbox

pytestmark = pytest.mark.integration

MakeMailbox = Callable[[Caller], Mailbox]


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # {account}, {message} and {folder} are filled in
    ok: int = 200
    json: dict[str, Any] | None = None
    repeatable: bool = True  # False: the owner's call after the admin's would not answer ``ok`` again

    def url(self, mailbox: Mailbox) -> str:
        path = self.path.format(account=mailbox.account_id, message=mailbox.message_id, folder=mailbox.folder_id)
        return "/api/v1" + path

    def call(self, client: FlaskClient, mailbox: Mailbox, headers: dict[str, str]) -> Any:
        return client.open(self.url(mailbox), method=self.method, headers=headers, json=self.json)


UNKNOWN = uuid.uuid4()
ENDPOINTS = [
    Endpoint("GET", "/accounts/{account}"),
    Endpoint("PUT", "/accounts/{account}", json={"accountName": "Renamed by someone"}),
    Endpoint("DELETE", "/accounts/{account}"),
    Endpoint("POST", "/accounts/{account}/test"),
    Endpoint("GET", "/accounts/{account}/sync"),
    Endpoint("POST", "/accounts/{account}/sync", ok=202),
    Endpoint("GET", "/accounts/{account}/folders"),
    Endpoint("GET", "/accounts/{account}/messages"),
    Endpoint("GET", "/messages/{message}"),
    Endpoint("GET", "/messages/{message}/raw"),
    Endpoint("PATCH", "/messages/{message}", json={"isRead": True}),
    Endpoint("PUT", "/messages/{message}", json={"isFlagged": True}),
    Endpoint("DELETE", "/messages/{message}?permanent=true"),
    Endpoint("POST", "/accounts/{account}/messages/batch", json={"messageIds": [str(UNKNOWN)], "isRead": True}),
    Endpoint("GET", "/accounts/{account}/actions"),
    Endpoint("POST", "/accounts/{account}/folders", ok=201, json={"name": "Created"}, repeatable=False),
    Endpoint("GET", "/folders/{folder}"),
    # The seeded folder is the INBOX: past the access check, renaming or deleting it is a 409.
    Endpoint("PATCH", "/folders/{folder}", ok=409, json={"name": "Renamed"}),
    Endpoint("DELETE", "/folders/{folder}", ok=409),
]


@pytest.fixture
def mailbox(make_mailbox: MakeMailbox, caller: Caller) -> Mailbox:
    return make_mailbox(caller)


def _assert_no_data(response: Any, mailbox: Mailbox, *, status: int, error: str) -> None:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"error", "message"} and body["error"] == error
    text = response.get_data(as_text=True)
    for secret in (
        mailbox.account["emailAddress"],
        mailbox.account["hostname"],
        mailbox.account["username"],
        SECRET_SUBJECT,
        SECRET_BODY,
        str(mailbox.folder_id),
    ):
        assert secret not in text


def _assert_owner_state_unchanged(client: FlaskClient, mailbox: Mailbox) -> None:
    headers = mailbox.owner.headers
    account = client.get(f"/api/v1/accounts/{mailbox.account_id}", headers=headers)
    assert account.status_code == 200 and account.get_json()["accountName"] == mailbox.account["accountName"]
    message = client.get(f"/api/v1/messages/{mailbox.message_id}", headers=headers)
    assert message.status_code == 200 and message.get_json()["subject"] == SECRET_SUBJECT


def _assert_granted(response: Any, endpoint: Endpoint, mailbox: Mailbox) -> None:
    assert response.status_code == endpoint.ok, response.get_data(as_text=True)
    if endpoint.ok == 409:
        return
    if endpoint.path.endswith("/raw"):
        assert response.mimetype == "message/rfc822" and SECRET_BODY.encode() in response.data
        return
    body = response.get_json()
    if endpoint.method == "DELETE" and endpoint.path.startswith("/messages"):
        assert body["id"] == str(mailbox.message_id) and body["permanent"] is True
    elif endpoint.path.startswith("/messages"):
        assert body["id"] == str(mailbox.message_id) and body["subject"] == SECRET_SUBJECT
    elif endpoint.path.startswith("/folders"):
        assert body["id"] == str(mailbox.folder_id) and body["accountId"] == mailbox.account_id
    elif endpoint.path.endswith("/folders") and endpoint.method == "POST":
        assert body["name"] == "Created" and body["accountId"] == mailbox.account_id
    elif endpoint.path.endswith("/batch"):
        assert (body["updatedCount"], body["failed"][0]["id"]) == (0, str(UNKNOWN))
    elif endpoint.path.endswith("/actions"):
        assert all(a["accountId"] == mailbox.account_id for a in body["actions"])
    elif endpoint.path.endswith("/folders"):
        assert [f["id"] for f in body["folders"]] == [str(mailbox.folder_id)]
    elif endpoint.path.endswith("/messages"):
        assert [m["id"] for m in body["messages"]] == [str(mailbox.message_id)]
    elif endpoint.path.endswith(("/sync", "/test")):
        assert body.get("accountId", mailbox.account_id) == mailbox.account_id
    else:
        assert body["id"] == mailbox.account_id


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: f"{e.method} {e.path}")
def test_other_users_and_tenants_never_get_the_resource(
    client: FlaskClient,
    ctx: ServiceContext,
    mailbox: Mailbox,
    make_caller: Callable[..., Caller],
    endpoint: Endpoint,
) -> None:
    owner = mailbox.owner
    colleague = owner.colleague(ctx)
    outsider = make_caller()
    outsider_admin = make_caller(role="admin")

    for headers in (colleague.headers, colleague.header_auth):
        _assert_no_data(endpoint.call(client, mailbox, headers), mailbox, status=403, error="Forbidden")
    for headers in (outsider.headers, outsider.header_auth, outsider_admin.headers):
        _assert_no_data(endpoint.call(client, mailbox, headers), mailbox, status=404, error="Not found")
    _assert_owner_state_unchanged(client, mailbox)

    admin = owner.colleague(ctx, "admin")
    _assert_granted(endpoint.call(client, mailbox, admin.headers), endpoint, mailbox)
    if endpoint.method != "DELETE" and endpoint.repeatable:
        _assert_granted(endpoint.call(client, mailbox, owner.headers), endpoint, mailbox)


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: f"{e.method} {e.path}")
def test_alias_prefix_applies_the_same_rules(
    client: FlaskClient,
    ctx: ServiceContext,
    mailbox: Mailbox,
    make_caller: Callable[..., Caller],
    endpoint: Endpoint,
) -> None:
    url = endpoint.url(mailbox).replace("/api/v1/", "/api/", 1)
    colleague = client.open(
        url, method=endpoint.method, headers=mailbox.owner.colleague(ctx).headers, json=endpoint.json
    )
    _assert_no_data(colleague, mailbox, status=403, error="Forbidden")
    outsider = client.open(url, method=endpoint.method, headers=make_caller(role="admin").headers, json=endpoint.json)
    _assert_no_data(outsider, mailbox, status=404, error="Not found")


def test_lists_show_only_the_callers_rows(
    client: FlaskClient,
    ctx: ServiceContext,
    make_mailbox: MakeMailbox,
    caller: Caller,
    make_caller: Callable[..., Caller],
) -> None:
    colleague = caller.colleague(ctx)
    outsider = make_caller()
    mine, theirs, foreign = make_mailbox(caller), make_mailbox(colleague), make_mailbox(outsider)

    for user, own in ((caller, mine), (colleague, theirs), (outsider, foreign)):
        listed = client.get("/api/v1/accounts", headers=user.headers).get_json()
        assert [a["id"] for a in listed["accounts"]] == [own.account_id]
        assert listed["pagination"]["total"] == 1
        assert {a["userId"] for a in listed["accounts"]} == {str(user.user_id)}
    stranger = make_caller(caller.tenant_id)
    assert client.get("/api/v1/accounts", headers=stranger.headers).get_json()["accounts"] == []

    admin = caller.colleague(ctx, "admin")
    messages = client.get(f"/api/v1/accounts/{theirs.account_id}/messages", headers=admin.headers).get_json()
    assert [m["id"] for m in messages["messages"]] == [str(theirs.message_id)]
    foreign_admin = client.get(f"/api/v1/accounts/{foreign.account_id}/messages", headers=admin.headers)
    assert foreign_admin.status_code == 404


@pytest.mark.parametrize("whose", ["colleague", "outsider"])
def test_a_folder_of_another_account_is_not_found(
    client: FlaskClient,
    ctx: ServiceContext,
    make_mailbox: MakeMailbox,
    caller: Caller,
    make_caller: Callable[..., Caller],
    whose: str,
) -> None:
    mine = make_mailbox(caller)
    other = make_mailbox(caller.colleague(ctx) if whose == "colleague" else make_caller())
    response = client.get(
        f"/api/v1/accounts/{mine.account_id}/messages?folderId={other.folder_id}", headers=caller.headers
    )
    _assert_no_data(response, other, status=404, error="Not found")
    own = client.get(
        f"/api/v1/accounts/{mine.account_id}/messages?folderId={mine.folder_id}", headers=caller.headers
    ).get_json()
    assert [m["id"] for m in own["messages"]] == [str(mine.message_id)]


def test_deleted_accounts_mailbox_is_gone_for_everyone(
    client: FlaskClient, ctx: ServiceContext, mailbox: Mailbox
) -> None:
    admin = mailbox.owner.colleague(ctx, "admin")
    assert client.delete(f"/api/v1/accounts/{mailbox.account_id}", headers=mailbox.owner.headers).status_code == 200
    for endpoint in ENDPOINTS:
        for headers in (mailbox.owner.headers, admin.headers):
            _assert_no_data(endpoint.call(client, mailbox, headers), mailbox, status=404, error="Not found")
