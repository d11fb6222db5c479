"""Replaying a plan's pending requests against the candidate at a bounded rate (at most `rate`
requests started a second, at most `parallel` at once). Each request's result is written to the
state file once its spend is in the ledger, so a run killed at any point and started again
replays only what has no result, and records no spend twice: the ledger entry's id is derived
from the run and the logged request (an entry already there is left alone).

Rehearsal spend is recorded under the key id and alias `rehearsal` (no team, no customer price):
it counts on the provider and deployment it was spent on, never on a customer's key, team or bill."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from turnout.domain.ledger_entry import REHEARSAL_KEY_ID, LedgerEntry
from turnout.domain.usage import Usage
from turnout.rehearsal import sources
from turnout.rehearsal.answers import Answer, logged_answer
from turnout.rehearsal.candidate import ask
from turnout.rehearsal.compare import Similarity, compare
from turnout.rehearsal.judge import judge
from turnout.rehearsal.pacing import Pacer
from turnout.rehearsal.state import State
from turnout.routing.catalog import Target
from turnout.spend.ledger_store import LedgerStore
from turnout.storage.database import Database

READ_AHEAD = 50  # logged requests read from the database at a time


@dataclass(frozen=True, slots=True)
class Replay:
    database: Database
    target: Target
    similarity: Similarity
    rate: float  # requests started per second, at most
    parallel: int
    judge: Target | None = None
    on_done: Callable[[dict[str, Any]], None] = lambda result: None


def ledger_id(run_id: str, request_id: str, purpose: str = "replay") -> str:
    digest = hashlib.sha256(f"{run_id}\0{request_id}\0{purpose}".encode()).hexdigest()
    return f"rehearsal-{digest[:40]}"


def _entry(request_id: str, target: Target, answer: Answer, usage: Usage | None) -> LedgerEntry:
    usage = usage or Usage()
    return LedgerEntry(
        request_id=request_id,
        at=time.time(),
        api="chat",
        key_id=REHEARSAL_KEY_ID,
        alias=REHEARSAL_KEY_ID,
        deployment=target.label,
        provider=target.provider,
        model=target.model,
        stream=True,
        status=200 if answer.ok else 502,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cached_input_tokens=usage.cached_input_tokens,
        cache_write_tokens=usage.cache_write_tokens,
        reasoning_tokens=usage.reasoning_tokens,
        cost_micros=answer.cost_micros if answer.ok else 0,
        price_version=None if target.price is None else target.price.version,
        latency_ms=answer.latency_ms or 0,
        attempts=1,
        reason=answer.error,
        rehearsal=True,
    )


async def _one(replay: Replay, state: State, logged: sources.Logged, ledger: LedgerStore) -> dict[str, Any]:
    baseline = logged_answer(
        logged.answer, logged.latency_ms, logged.input_tokens, logged.output_tokens, logged.cost_micros
    )
    candidate, usage = await ask(replay.target, logged.request)
    entries = [_entry(ledger_id(state.plan.run_id, logged.request_id), replay.target, candidate, usage)]
    comparison = compare(logged.request, baseline, candidate, replay.similarity)
    comparison["judge"] = None
    if replay.judge is not None and candidate.ok and baseline.readable and baseline.text and candidate.text:
        score, spent = await judge(replay.judge, logged.request, baseline.text, candidate.text)
        comparison["judge"] = score
        if spent is not None:
            cost = None if replay.judge.price is None else replay.judge.price.cost(spent)
            judged = Answer(ok=True, cost_micros=cost)
            entries.append(
                _entry(ledger_id(state.plan.run_id, logged.request_id, "judge"), replay.judge, judged, spent)
            )
    await ledger.insert(entries)
    return {
        "request_id": logged.request_id,
        "at": logged.at,
        "alias": logged.alias,
        "deployment": logged.deployment,
        "baseline": baseline.document(),
        "candidate": candidate.document(),
        "comparison": comparison,
    }


async def run(replay: Replay, state: State) -> int:
    """Replay every pending request of `state`; returns how many were replayed by this run."""
    ledger = LedgerStore(replay.database)
    pending = state.pending()
    gate = asyncio.Semaphore(replay.parallel)
    pacer = Pacer(replay.rate)
    done = 0

    async def one(logged: sources.Logged) -> None:
        nonlocal done
        try:
            result = await _one(replay, state, logged, ledger)
            state.record(result)
            done += 1
            replay.on_done(result)
        finally:
            gate.release()

    try:
        async with asyncio.TaskGroup() as group:
            for start in range(0, len(pending), READ_AHEAD):
                ids = pending[start : start + READ_AHEAD]
                found = await sources.read(replay.database, ids)
                for missing in sorted(set(ids) - {logged.request_id for logged in found}):
                    result = {"request_id": missing, "missing": True}  # deleted since (retention)
                    state.record(result)
                    replay.on_done(result)
                for logged in found:
                    await gate.acquire()  # at most `parallel` at once...
                    await pacer.wait()  # ...and at most `rate` started a second
                    group.create_task(one(logged))
    except ExceptionGroup as failed:  # a task failed (the database away ...): the first one says why
        raise failed.exceptions[0] from None
    return done
