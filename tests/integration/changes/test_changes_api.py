"""``GET /accounts/{id}/changes`` (issue 12): JMAP folding, paging with maxChanges, 410 after pruning, input rules,
both prefixes and isolation; the periodic pruning task."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from flask.testing import FlaskClient

from email_service.services.changes import prune_change_log
from email_service.services.context import ServiceContext
from email_service.tasks.periodic import PERIODIC
from tests.integration.changes.test_change_log_property import Scenario
from tests.support.dovecot import Dovecot

pytestmark = pytest.mark.integration


@pytest.fixture
def scenario(quiet_client: FlaskClient, quiet_ctx: ServiceContext, make_caller: Any, dovecot: Dovecot) -> Scenario:
    return Scenario(quiet_client, quiet_ctx, make_caller(), dovecot)


def _changes(scenario: Scenario, since: str, **params: Any) -> Any:
    query = "&".join(f"{k}={v}" for k, v in {"since": since, **params}.items())
    return scenario.client.get(
        f"/api/v1/accounts/{scenario.account_id}/changes?{query}", headers=scenario.caller.headers
    )


def test_created_then_destroyed_is_left_out_and_created_then_updated_is_created(scenario: Scenario) -> None:
    before = scenario.lists()[0]
    scenario.append(0, 0)  # INBOX
    scenario.sync()
    created = _changes(scenario, before).get_json()["messages"]["created"]
    assert len(created) == 1
    scenario.server_flag(3, 0)  # the 4th INBOX message (the new one) gets \Seen on the server
    scenario.sync()
    body = _changes(scenario, before).get_json()
    assert body["messages"] == {"created": created, "updated": [], "destroyed": []}
    scenario.server_expunge(3, 0)
    scenario.sync()
    body = _changes(scenario, before).get_json()
    assert body["messages"] == {"created": [], "updated": [], "destroyed": []}
    middle = _changes(scenario, before, maxChanges=1).get_json()
    assert middle["hasMoreChanges"] is True and middle["messages"]["created"] == created


def test_a_move_is_an_update_of_the_message_and_of_both_folders_counts(scenario: Scenario) -> None:
    state, messages, folders = scenario.lists()
    message = sorted(messages.values(), key=lambda m: m["id"])[0]
    archive = next(f for f in folders.values() if f["name"] == "Archive")
    moved = scenario.api("PATCH", f"/messages/{message['id']}", json={"folderId": archive["id"]})
    assert moved.status_code == 200
    body = _changes(scenario, state).get_json()
    assert body["messages"] == {"created": [], "updated": [message["id"]], "destroyed": []}
    assert sorted(body["folders"]["updated"]) == sorted([message["folderId"], archive["id"]])
    assert body["oldState"] == state and int(body["newState"]) > int(state)
    assert scenario.lists()[0] == body["newState"]


def test_a_state_older_than_the_pruned_log_answers_410_and_the_current_one_still_works(scenario: Scenario) -> None:
    old = scenario.lists()[0]
    for _ in range(4):
        scenario.api_read(0, 0)
    current = scenario.lists()[0]
    small = dataclasses.replace(
        scenario.ctx, settings=dataclasses.replace(scenario.ctx.settings, change_log_max_entries=3)
    )
    assert prune_change_log(small) >= 1
    gone = _changes(scenario, old)
    assert gone.status_code == 410
    assert gone.get_json()["error"] == "cannotCalculateChanges"
    assert _changes(scenario, current).get_json()["hasMoreChanges"] is False
    assert _changes(scenario, str(int(current) - 3)).status_code == 200  # the newest 3 entries are kept
    assert _changes(scenario, str(int(current) - 4)).status_code == 410
    assert _changes(scenario, str(int(current) + 1)).status_code == 410  # never given out


def test_entries_past_the_age_limit_are_pruned_by_the_periodic_task(scenario: Scenario) -> None:
    old = scenario.lists()[0]
    scenario.api_read(0, 0)
    current = scenario.lists()[0]
    task = next(t for t in PERIODIC if t.name == "prune_change_log")
    assert task.interval(scenario.ctx.settings) == scenario.ctx.settings.change_log_prune_seconds
    aged = dataclasses.replace(scenario.ctx.settings, change_log_max_age_seconds=-1)  # everything is "old"
    assert task.run(dataclasses.replace(scenario.ctx, settings=aged)) >= 1
    assert _changes(scenario, old).status_code == 410
    assert _changes(scenario, current).status_code == 200


def test_input_rules_prefixes_and_isolation(scenario: Scenario, make_caller: Any) -> None:
    state = scenario.lists()[0]
    assert _changes(scenario, "abc").status_code == 400
    assert _changes(scenario, state, maxChanges=0).status_code == 400
    assert _changes(scenario, state, maxChanges=5001).status_code == 400
    assert _changes(scenario, state, isRead="true").status_code == 400  # unknown parameter
    missing = scenario.client.get(f"/api/v1/accounts/{scenario.account_id}/changes", headers=scenario.caller.headers)
    assert missing.status_code == 400
    alias = scenario.client.get(
        f"/api/accounts/{scenario.account_id}/changes?since={state}", headers=scenario.caller.headers
    )
    assert alias.status_code == 200 and alias.get_json()["newState"] == state
    stranger = make_caller()
    assert (
        scenario.client.get(
            f"/api/v1/accounts/{scenario.account_id}/changes?since={state}", headers=stranger.headers
        ).status_code
        == 404
    )
    colleague = scenario.caller.colleague(scenario.ctx)
    other_user = scenario.client.get(
        f"/api/v1/accounts/{scenario.account_id}/changes?since={state}", headers=colleague.headers
    )
    plain = scenario.client.get(f"/api/v1/accounts/{scenario.account_id}", headers=colleague.headers)
    assert other_user.status_code == plain.status_code and other_user.status_code in (403, 404)
