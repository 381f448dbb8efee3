"""HTTP helpers of the sync tests: start a sync and wait for it, read folders and messages as a client does."""

from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient

from tests.conftest import Caller, account_body, wait_for_sync


def create_pop3_account(
    client: FlaskClient, caller: Caller, host: str, port: int, username: str, password: str, encryption: str = "none"
) -> str:
    """Register a POP3 account through the API (``encryption``: none, tls = POP3S, starttls = STLS); its id."""
    body = account_body(protocol="pop3", hostname=host, port=port, encryption=encryption, username=username,
                        password=password, emailAddress=username)  # fmt: skip
    response = client.post("/api/v1/accounts", headers=caller.headers, json=body)
    assert response.status_code == 201, response.get_json()
    return str(response.get_json()["id"])


def sync_now(client: FlaskClient, caller: Caller, account_id: str) -> dict[str, Any]:
    """``POST /accounts/{id}/sync`` (202), then the finished status of that run."""
    started = client.post(f"/api/v1/accounts/{account_id}/sync", headers=caller.headers)
    assert started.status_code == 202, started.get_json()
    status: dict[str, Any] = wait_for_sync(client, account_id, caller.headers)
    assert status["syncId"] == started.get_json()["syncId"]
    return status


def folders_by_name(client: FlaskClient, caller: Caller, account_id: str) -> dict[str, Any]:
    """``GET /accounts/{id}/folders`` as ``{name: folder}``."""
    body = client.get(f"/api/v1/accounts/{account_id}/folders", headers=caller.headers).get_json()
    return {f["name"]: f for f in body["folders"]}


def folder_messages(client: FlaskClient, caller: Caller, account_id: str, folder_id: str) -> list[dict[str, Any]]:
    """The first 100 messages of a folder, newest first."""
    body = client.get(
        f"/api/v1/accounts/{account_id}/messages?folderId={folder_id}&limit=100", headers=caller.headers
    ).get_json()
    return list(body["messages"])
