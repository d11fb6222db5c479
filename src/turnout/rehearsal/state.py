"""A replay's state file, JSON Lines: the first line is the plan (what is replayed, against what,
and the request ids sampled, fixed once), each further line the result of one request, appended
and synced to disk as it finishes. A run started again on the same file skips the requests with a
result and replays the rest; a last line cut by a kill is dropped (that request is replayed)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

FORMAT = "turnout-rehearsal/1"
MAX_STATE_BYTES = 512 * 1024 * 1024  # a state file beyond this is refused rather than read whole


class StateError(ValueError):
    """The state file cannot be used (another format, another plan, unreadable)."""


@dataclass(slots=True)
class Plan:
    source: str  # --from: an alias or a provider
    target: str  # --to: the candidate deployment
    since: float  # unix seconds
    until: float
    sample: int
    run_id: str
    request_ids: list[str]
    judge: str | None = None

    def document(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "from": self.source,
            "to": self.target,
            "since": self.since,
            "until": self.until,
            "sample": self.sample,
            "run_id": self.run_id,
            "judge": self.judge,
            "request_ids": self.request_ids,
        }

    @classmethod
    def read(cls, document: Any) -> Plan:
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise StateError(f"not a rehearsal state file (its first line is not a {FORMAT} plan)")
        try:
            return cls(
                source=str(document["from"]),
                target=str(document["to"]),
                since=float(document["since"]),
                until=float(document["until"]),
                sample=int(document["sample"]),
                run_id=str(document["run_id"]),
                request_ids=[str(i) for i in document["request_ids"]],
                judge=None if document.get("judge") is None else str(document["judge"]),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise StateError(f"the state file's plan is damaged ({error})") from None


@dataclass(slots=True)
class State:
    path: Path
    plan: Plan
    results: dict[str, dict[str, Any]] = field(default_factory=dict)  # by the logged request's id

    def pending(self) -> list[str]:
        return [i for i in self.plan.request_ids if i not in self.results]

    def record(self, result: dict[str, Any]) -> None:
        """Append one request's result and sync it to disk before returning."""
        line = orjson.dumps(result) + b"\n"
        with self.path.open("ab") as file:
            file.write(line)
            file.flush()
            os.fsync(file.fileno())
        self.results[result["request_id"]] = result

    def ordered(self) -> list[dict[str, Any]]:
        """The results, in the plan's order."""
        return [self.results[i] for i in self.plan.request_ids if i in self.results]


def create(path: Path, plan: Plan) -> State:
    """A new state file, readable by its owner only (it holds answers from the request log)."""
    line = orjson.dumps(plan.document()) + b"\n"
    # never overwrite: an existing file is resumed, not replaced
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as file:
        file.write(line)
        file.flush()
        os.fsync(file.fileno())
    return State(path, plan)


def load(path: Path) -> State:
    if path.stat().st_size > MAX_STATE_BYTES:
        raise StateError(f"{path} is larger than {MAX_STATE_BYTES} bytes")
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):  # a last line cut by a kill: drop it (replayed again)
        data = data[: data.rfind(b"\n") + 1]
        with path.open("r+b") as file:
            file.truncate(len(data))
    lines = [line for line in data.split(b"\n") if line.strip()]
    if not lines:
        raise StateError(f"{path} is empty")
    try:
        plan = Plan.read(orjson.loads(lines[0]))
    except orjson.JSONDecodeError:
        raise StateError(f"{path}: its first line is not JSON") from None
    state = State(path, plan)
    wanted = set(plan.request_ids)
    for number, raw in enumerate(lines[1:], start=2):
        try:
            result = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise StateError(f"{path}: line {number} is not JSON") from None
        if isinstance(result, dict) and result.get("request_id") in wanted:
            state.results[result["request_id"]] = result
    return state
