"""A replay's state file: the plan first, a result a line; a line cut by a kill is dropped (its
request is pending again) and the file stays appendable; another file, or a damaged one, is
refused with a message rather than resumed."""

from __future__ import annotations

from pathlib import Path

import pytest

from turnout.rehearsal.state import Plan, StateError, create, load


def _plan() -> Plan:
    return Plan("chat", "backup/small", 0.0, 10.0, 3, "run1", ["a", "b", "c"])


def test_results_survive_a_restart_and_only_the_rest_is_pending(tmp_path: Path) -> None:
    state = create(tmp_path / "s.jsonl", _plan())
    state.record({"request_id": "b", "x": 1})
    again = load(tmp_path / "s.jsonl")
    assert again.pending() == ["a", "c"]
    assert again.results == {"b": {"request_id": "b", "x": 1}}
    assert (tmp_path / "s.jsonl").stat().st_mode & 0o777 == 0o600


def test_a_line_cut_by_a_kill_is_dropped_and_its_request_replayed(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    create(path, _plan()).record({"request_id": "a"})
    with path.open("ab") as file:
        file.write(b'{"request_id": "b", "candid')  # the process died mid-write
    state = load(path)
    assert state.pending() == ["b", "c"]
    state.record({"request_id": "b"})  # appended after the cut, not glued to it
    assert load(path).pending() == ["c"]


def test_an_existing_file_is_never_overwritten(tmp_path: Path) -> None:
    create(tmp_path / "s.jsonl", _plan())
    with pytest.raises(FileExistsError):
        create(tmp_path / "s.jsonl", _plan())


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty"),
        (b"not json\n", "its first line is not JSON"),
        (b'{"format": "something else"}\n', "not a rehearsal state file"),
        (b'{"format": "turnout-rehearsal/1", "from": "x"}\n', "the state file's plan is damaged"),
    ],
)
def test_a_file_that_is_not_a_plan_is_refused(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "s.jsonl"
    path.write_bytes(content)
    with pytest.raises(StateError, match=message):
        load(path)


def test_a_damaged_line_in_the_middle_is_refused_not_skipped(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    create(path, _plan()).record({"request_id": "a"})
    with path.open("ab") as file:
        file.write(b"garbage\n")
    with pytest.raises(StateError, match="line 3 is not JSON"):
        load(path)
