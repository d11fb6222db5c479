"""Which logged requests a rehearsal replays, on SQLite and PostgreSQL alike: answered chat
requests kept whole, that the alias was asked for or the provider's deployments answered, in
the period; a sample no larger than asked, oldest first; each with the ledger's tokens and cost."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from turnout.domain.ledger_entry import LedgerEntry
from turnout.providers.base import ChatResult
from turnout.rehearsal.sources import read, sample
from turnout.request_logs.capture import Captured
from turnout.request_logs.scrub import Scrubber
from turnout.request_logs.writer import RequestLogWriter
from turnout.spend.ledger_store import LedgerStore
from turnout.storage.database import Database

from support.databases import opened_database

BACKENDS = [pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)]
NOW = dt.datetime(2026, 12, 6, 12, tzinfo=dt.UTC)
ANSWER = {
    "id": "c",
    "object": "chat.completion",
    "created": 1,
    "model": "gpt-4o",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
}


@pytest.fixture(params=BACKENDS)
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async with opened_database(request.param, tmp_path) as database:
        yield database


def _logged(request_id: str, minutes: int, **fields: Any) -> Captured:
    entry: dict[str, Any] = {
        "request_id": request_id,
        "at": (NOW + dt.timedelta(minutes=minutes)).timestamp(),
        "api": "chat",
        "key_id": "key_1",
        "team_id": None,
        "user_id": None,
        "alias": "chat",
        "model": "gpt-4o",
        "deployment": "openai/gpt-4o",
        "stream": False,
        "status": 200,
        "reason": None,
        "latency_ms": 40,
        "request": {"model": "chat", "messages": [{"role": "user", "content": request_id}]},
        "answer": ChatResult(usage=None, raw=orjson.dumps(ANSWER)),
        "usage": None,
        **fields,
    }
    return Captured(**entry)


async def _history(database: Database) -> None:
    writer = RequestLogWriter(database, Scrubber((), 2048), queue_limit=100)
    for entry in (
        _logged("early", -120),  # before the period
        _logged("a", 1),
        _logged("b", 2, alias="other-alias", deployment="openai/gpt-4o"),  # the provider's, not the alias's
        _logged("c", 3),
        _logged("failed", 4, status=502, answer=None),
        _logged("embedding", 5, api="embeddings"),
        _logged("elsewhere", 6, alias="claude", deployment="anthropic/claude"),
        _logged(
            "cut",
            7,
            request={"model": "chat", "messages": [{"role": "user", "content": "many words " * 500}]},
        ),
    ):
        writer.capture(entry)
    assert await writer.flush() == 8
    await LedgerStore(database).insert(
        [
            LedgerEntry(
                request_id="a", attempt=1, at=NOW.timestamp(), api="chat", key_id="key_1", status=502
            ),
            LedgerEntry(
                request_id="a",
                attempt=2,
                at=NOW.timestamp(),
                api="chat",
                key_id="key_1",
                input_tokens=12,
                output_tokens=3,
                cost_micros=60,
            ),
        ]
    )


SINCE, UNTIL = (NOW - dt.timedelta(hours=1)).timestamp(), (NOW + dt.timedelta(hours=1)).timestamp()


async def test_an_alias_or_a_provider_selects_answered_whole_chat_requests_of_the_period(
    database: Database,
) -> None:
    await _history(database)
    assert await sample(database, "chat", (), SINCE, UNTIL, 100) == ["a", "c"]
    assert await sample(database, "openai", {"openai/gpt-4o"}, SINCE, UNTIL, 100) == ["a", "b", "c"]
    two = await sample(database, "openai", {"openai/gpt-4o"}, SINCE, UNTIL, 2)
    assert len(two) == 2 and set(two) <= {"a", "b", "c"} and two == sorted(two)


async def test_each_request_comes_with_what_the_client_got_and_the_ledger_charged(database: Database) -> None:
    await _history(database)
    found = await read(database, ["c", "gone", "a"])
    assert [f.request_id for f in found] == ["c", "a"]  # the plan's order; one no longer logged
    c, a = found
    assert (a.input_tokens, a.output_tokens, a.cost_micros) == (12, 3, 60)  # the attempt that answered
    assert (c.input_tokens, c.cost_micros) == (None, None)  # no ledger entry
    assert a.answer == ANSWER and a.latency_ms == 40 and a.request["messages"][0]["content"] == "a"
    assert a.at == NOW.timestamp() + 60
