"""Flag arithmetic shared by the API, the sync and the write-back, and how the write-back coalesces actions into
one command (no I/O)."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from email_service.models import PendingAction
from email_service.services.flags import apply_flag_delta, flag_columns, same_flags
from email_service.sync.syncback_apply import group_key

FLAGS = st.lists(st.sampled_from(["\\Seen", "\\Flagged", "$A", "$a", "$B", "Junk"]), max_size=5)


def test_a_delta_clears_then_sets_without_regard_to_case() -> None:
    assert apply_flag_delta(["\\Seen", "$Work"], add=["\\Flagged"], remove=["$work"]) == ["\\Flagged", "\\Seen"]
    assert apply_flag_delta(["\\seen"], add=["\\Seen"], remove=[]) == ["\\seen"], "no duplicate in another case"
    assert apply_flag_delta([], add=["$X"], remove=["$x"]) == ["$X"], "in both lists: set"
    columns = flag_columns(["\\SEEN", "$x"])
    assert columns == {
        "is_read": True,
        "is_flagged": False,
        "is_answered": False,
        "is_draft": False,
        "flags": ["$x", "\\SEEN"],
    }


@given(FLAGS, FLAGS, FLAGS)
def test_a_delta_applied_twice_changes_nothing_more(flags: list[str], add: list[str], remove: list[str]) -> None:
    once = apply_flag_delta(flags, add, remove)
    assert same_flags(apply_flag_delta(once, add, remove), once)
    assert {f.lower() for f in add} <= {f.lower() for f in once}
    assert not ({f.lower() for f in remove} - {f.lower() for f in add}) & {f.lower() for f in once}


def _action(kind: str, seq: int, **fields: object) -> PendingAction:
    values: dict[str, object] = {
        "id": uuid.uuid4(), "kind": kind, "seq": seq, "mailbox": "INBOX", "uidvalidity": 7, "uid": seq,
        "details": {}, "state": "pending"}  # fmt: skip
    values.update(fields)
    return PendingAction(**values)


def test_equal_changes_of_one_mailbox_share_a_command() -> None:
    read = {"add": ["\\Seen"], "remove": []}
    same = [_action("flags", n, details=read) for n in (1, 2, 3)]
    assert len({group_key(a) for a in same}) == 1
    assert group_key(_action("flags", 4, details={"add": ["\\Flagged"], "remove": []})) != group_key(same[0])
    assert group_key(_action("flags", 5, details=read, mailbox="Archive")) != group_key(same[0])
    assert group_key(_action("flags", 6, details=read, uidvalidity=8)) != group_key(same[0])
    to_trash = [_action("move", n, target_mailbox="Trash") for n in (7, 8)]
    assert group_key(to_trash[0]) == group_key(to_trash[1])
    assert group_key(_action("move", 9, target_mailbox="Archive")) != group_key(to_trash[0])


def test_an_action_whose_uid_is_not_known_yet_and_folder_actions_go_alone() -> None:
    unknown = [_action("flags", n, uid=None) for n in (1, 2)]
    assert group_key(unknown[0]) != group_key(unknown[1])
    folders = [_action("folder_create", n, details={"name": f"F{n}"}) for n in (3, 4)]
    assert group_key(folders[0]) != group_key(folders[1])
