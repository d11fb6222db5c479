"""Rehearsing a move: clients' requests go through a gateway to `primary` and are logged; then
`turnout rehearse replay` sends them to a candidate and `turnout rehearse report` compares. Two
candidates differ from `primary` in known ways — `backup` is slower (same answers), `other` calls
a tool with other (schema-breaking) arguments, answers a JSON-schema request with JSON the
schema refuses, words one answer differently and stops another for length — and the report's
figures are asserted exactly. A replay killed mid-way and run again finishes the plan without
replaying or recording any request twice."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from click.testing import CliRunner

from turnout.cli.main import main
from turnout.rehearsal.similarity import similarity
from turnout.spend.ledger_store import LedgerStore
from turnout.storage.database import Database

from support.answering import AnsweringUpstream, Reply
from support.gateway import MASTER_KEY
from support.rehearsal import (
    ADA,
    BACKUP,
    CAPITAL,
    ENV,
    HELLO,
    OTHER,
    PRIMARY,
    SLOW,
    TIME_Q,
    WEATHER_Q,
    Logged,
    cli,
    replay,
    report_of,
)
from support.upstream import Upstream


@pytest.fixture
def candidates() -> Any:
    backup = AnsweringUpstream(replies=BACKUP).start()
    other = AnsweringUpstream(replies=OTHER, fallback=Reply("8")).start()  # as the judge: "8" (of 10)
    yield backup, other
    backup.stop()
    other.stop()


@pytest.fixture
def history(tmp_path: Path, candidates: tuple[AnsweringUpstream, AnsweringUpstream]) -> Any:
    logged = Logged(tmp_path, *candidates)
    yield logged
    logged.stop()


def _rehearsal_ledger(data: Path) -> list[dict[str, Any]]:
    async def read() -> list[dict[str, Any]]:
        database = await Database.open(f"sqlite+aiosqlite:///{data}/turnout.db")
        try:
            return await LedgerStore(database).entries(key_id="rehearsal")
        finally:
            await database.close()

    return asyncio.run(read())


def _rate(agree: int, of: int) -> dict[str, Any]:
    return {"of": of, "agree": agree, "rate": round(agree / of, 4) if of else None}


BASELINE_SIDE = {
    "answered": 5,
    "failed": {},
    "input_tokens": 113,
    "output_tokens": 48,
    "cost_usd": "0.000763",  # 130 + 175 + 160 + 183 (182.5 rounded up) + 115 micro-dollars
    "unpriced": 0,
    "finish_reasons": {"stop": 3, "tool_calls": 2},
}


def test_a_slower_candidate_agrees_on_everything_and_its_latency_shows(
    history: Logged, candidates: tuple[AnsweringUpstream, AnsweringUpstream], tmp_path: Path
) -> None:
    backup, _ = candidates
    state = tmp_path / "backup.jsonl"
    said = replay(
        history, state, "--from", "chat", "--to", "backup/small", "--judge", "judge", "--parallel", "2"
    )
    assert "5 replayed now; 5 of the plan done" in said
    assert backup.chat_requests == 5 and backup.most_at_once <= 2
    report = report_of(state)
    assert (report["planned"], report["replayed"], report["missing"], report["compared"]) == (5, 5, 0, 5)
    assert {k: report["baseline"][k] for k in BASELINE_SIDE} == BASELINE_SIDE
    candidate = report["candidate"]
    assert {k: candidate[k] for k in BASELINE_SIDE} == {
        **BASELINE_SIDE,
        "cost_usd": "0.000305",  # 52 + 70 + 64 + 73 + 46 micro-dollars at backup's price
    }
    # every answer waited SLOW seconds at the upstream before its first byte
    assert min(candidate["latency_ms"]["values"]) >= SLOW * 1000
    assert min(candidate["ttft_ms"]["values"]) >= SLOW * 1000
    assert candidate["latency_ms"]["count"] == candidate["ttft_ms"]["count"] == 5
    assert report["baseline"]["ttft_ms"]["count"] == 0  # the request log keeps no time to first token
    assert report["agreement"] == {
        "finish_reason": _rate(5, 5),
        "same_tools": _rate(2, 2),
        "tool_arguments_valid": _rate(2, 2),
        "tool_arguments_equal": _rate(2, 2),
        "json_valid": _rate(1, 1),
        "baseline_json_valid": _rate(1, 1),
    }
    assert report["similarity"]["count"] == 3 and report["similarity"]["mean"] == 1.0
    # the judge scored the three pairs of texts 8 of 10: the only disagreement left
    assert report["judge"] == {"model": "judge", "count": 3, "mean": 0.8}
    texts = sorted(history.ids[p] for p in (CAPITAL, ADA, HELLO))
    assert [(w["request_id"], w["disagreement"]) for w in report["worst"]] == [(i, 0.2) for i in texts]
    # the rehearsal's spend: under `rehearsal`, one entry per request at backup's price and one per
    # judgement at the judge's (10 + 5 tokens: 15 micro-dollars); no customer's
    spent = _rehearsal_ledger(history.data)
    assert sorted((e["provider"], e["cost_micros"]) for e in spent) == sorted(
        [("backup", c) for c in (52, 70, 64, 73, 46)] + [("other", 15)] * 3
    )
    assert {(e["alias"], e["team_id"], e["customer_price_micros"]) for e in spent} == {
        ("rehearsal", None, None)
    }
    by_key = cli(
        "spend", "report", "-c", str(history.config), "--by", "key", "--since", "1d", "--format", "csv"
    )
    assert "rehearsal,8,0,143,0,63,0,0,0,0,0.000350,0.000000,0,0" in by_key.splitlines()
    # nor is it the providers' traffic when the gateway weighs an exit
    gateway = history.gateway()
    try:
        exit_report = httpx.get(
            gateway.root_url + "/admin/exit-report", headers={"authorization": f"Bearer {MASTER_KEY}"}
        ).json()
    finally:
        gateway.stop()
    assert [(p["provider"], p["requests"]) for p in exit_report["providers"]] == [("primary", 5)]


def test_a_candidate_that_answers_otherwise_is_caught_request_by_request(
    history: Logged, candidates: tuple[AnsweringUpstream, AnsweringUpstream], tmp_path: Path
) -> None:
    state = tmp_path / "other.jsonl"
    replay(history, state, "--from", "primary", "--to", "other/mini")  # a provider's traffic
    report = report_of(state)
    ids = history.ids
    candidate = report["candidate"]
    assert candidate["input_tokens"] == 113 and candidate["output_tokens"] == 45
    assert candidate["cost_usd"] == "0.000147"  # 24 + 43 + 32 + 25 (24.5 rounded up) + 23
    assert candidate["finish_reasons"] == {"length": 1, "stop": 2, "tool_calls": 2}
    assert report["agreement"] == {
        "finish_reason": _rate(4, 5),  # "Say hello." stopped for length
        "same_tools": _rate(2, 2),
        "tool_arguments_valid": _rate(1, 2),  # get_weather's "unit" is outside its schema
        "tool_arguments_equal": _rate(1, 2),  # get_time's arguments are equal as JSON
        "json_valid": _rate(0, 1),
        "baseline_json_valid": _rate(1, 1),
    }
    capital = round(similarity(PRIMARY[CAPITAL].text or "", OTHER[CAPITAL].text or ""), 4)
    ada = round(similarity(PRIMARY[ADA].text or "", OTHER[ADA].text or ""), 4)
    assert 0.5 < capital < 1
    assert report["similarity"]["count"] == 3
    assert report["similarity"]["min"] == min(capital, ada)
    assert report["similarity"]["mean"] == round((capital + ada + 1.0) / 3, 4)
    expected = {
        ids[ADA]: round(1.0 + 1 - ada, 4),  # invalid against the schema, and other words
        ids[WEATHER_Q]: 1.0,  # arguments invalid (0.5) and not equal (0.5)
        ids[HELLO]: 0.5,  # another finish reason
        ids[CAPITAL]: round(1 - capital, 4),
    }
    worst = sorted(expected.items(), key=lambda item: (-item[1], item[0]))
    assert [(w["request_id"], w["disagreement"]) for w in report["worst"]] == worst
    weather = next(r for r in report["requests"] if r["request_id"] == ids[WEATHER_Q])
    assert weather["comparison"]["tool_calls"] == {
        "same_tools": True,
        "arguments_valid": False,
        "arguments_equal": False,
    }
    assert (weather["baseline"]["cost_micros"], weather["candidate"]["cost_micros"]) == (175, 43)
    assert [r["request_id"] for r in report["requests"]] == [
        ids[p] for p in (CAPITAL, WEATHER_Q, TIME_Q, ADA, HELLO)
    ]
    reasons = {w["request_id"]: w["reasons"] for w in report["worst"]}
    assert reasons[ids[WEATHER_Q]] == [
        "other tool arguments",
        "tool arguments invalid against the tool's schema",
    ]
    assert reasons[ids[ADA]][0] == "answer not valid against the requested JSON schema"
    assert reasons[ids[HELLO]] == ["finished length (was stop)"]

    table = cli("rehearse", "report", "--state", str(state))
    assert "tool arguments valid" in table and "50.0% (1/2)" in table
    page = tmp_path / "report.html"
    cli("rehearse", "report", "--state", str(state), "--format", "html", "-o", str(page))
    html = page.read_text()
    assert html.count("<svg") == 4  # latency, time to first token, cost, agreement
    assert "src=" not in html and "<script" not in html and "<link" not in html  # nothing to fetch
    assert ids[ADA] in html and "get_weather(" in html


def test_a_killed_replay_resumes_without_replaying_or_losing_a_request(
    tmp_path: Path, candidates: tuple[AnsweringUpstream, AnsweringUpstream]
) -> None:
    backup, _ = candidates
    stalling = AnsweringUpstream(replies=PRIMARY, hold_from=3).start()  # answers two, holds the third
    history = Logged(tmp_path, stalling, candidates[1])
    state = tmp_path / "resume.jsonl"
    command = [
        sys.executable, "-c", "from turnout.cli.main import main; main()",
        "rehearse", "replay", "-c", str(history.config), "--from", "chat", "--to", "backup/small",
        "--since", "1h", "--rate", "100/s", "--parallel", "1", "--state", str(state), "--quiet",
    ]  # fmt: skip
    try:
        errors = tmp_path / "replay.stderr"
        with (
            errors.open("wb") as stderr,
            subprocess.Popen(command, env={**os.environ, **ENV}, stderr=stderr) as process,
        ):
            try:
                assert stalling.held.wait(60), errors.read_text()
                assert len(state.read_bytes().splitlines()) == 1 + 2  # the plan and two results
                process.send_signal(signal.SIGKILL)
            finally:
                process.wait(30)
        assert process.returncode == -signal.SIGKILL
        assert len(_rehearsal_ledger(history.data)) == 2  # the one held was never answered
        stalling.release()
        said = replay(history, state, "--from", "chat", "--to", "backup/small")
        assert "3 replayed now; 5 of the plan done" in said
        assert stalling.chat_requests == 3 + 3  # the one in flight at the kill was asked again, once
        lines = [orjson.loads(line) for line in state.read_bytes().splitlines()]
        assert sorted(r["request_id"] for r in lines[1:]) == sorted(history.ids.values())
        assert len(_rehearsal_ledger(history.data)) == 5
        report = report_of(state)
        assert report["replayed"] == 5 and report["agreement"]["same_tools"] == _rate(2, 2)
        assert backup.chat_requests == 0
    finally:
        history.stop()
        stalling.stop()


def test_a_failing_candidate_and_mistaken_invocations_are_told_plainly(tmp_path: Path) -> None:
    failing = Upstream(mode="500").start()
    other = AnsweringUpstream(replies=OTHER).start()
    history = Logged(tmp_path, failing, other)  # type: ignore[arg-type]
    try:
        state = tmp_path / "failing.jsonl"
        shown = cli(
            "rehearse", "replay", "-c", str(history.config), "--from", "chat", "--to", "backup/small",
            "--since", "1h", "--rate", "100/s", "--state", str(state),
        )  # fmt: skip
        assert "replaying: 100%" in shown and "5/5" in shown  # the progress bar (on stderr)
        report = report_of(state)
        assert report["candidate"]["answered"] == 0 and report["compared"] == 0
        assert report["candidate"]["failed"] == {"upstream_server_error": 5}
        assert [w["disagreement"] for w in report["worst"]] == [4.0] * 5
        assert report["worst"][0]["reasons"] == ["the candidate failed (upstream_server_error)"]
        spent = _rehearsal_ledger(history.data)
        assert [(e["status"], e["cost_micros"], e["reason"]) for e in spent] == [
            (502, 0, "upstream_server_error")
        ] * 5

        def refused(*args: str) -> str:
            result = CliRunner().invoke(
                main, ["rehearse", "replay", "-c", str(history.config), *args], env=ENV
            )
            assert result.exit_code != 0
            return result.output

        unknown = refused("--from", "chat", "--to", "nowhere/x", "--state", str(tmp_path / "x.jsonl"))
        configured = "backup/small, other/judge, other/mini, primary/gpt-4o"
        assert f"no deployment named 'nowhere/x' (configured: {configured})" in unknown
        assert "--rate" in refused("--from", "chat", "--to", "backup/small", "--rate", "0/s")
        other_plan = refused("--from", "chat", "--to", "other/mini", "--state", str(state))
        assert "replays chat -> backup/small; name another --state" in other_plan
        assert not (tmp_path / "x.jsonl").exists()
        nothing = refused("--from", "gpt-5", "--to", "backup/small", "--state", str(tmp_path / "y.jsonl"))
        assert "the request log holds no answered chat request for 'gpt-5' in the period" in nothing
        assert not (tmp_path / "y.jsonl").exists()
        assert state.stat().st_mode & 0o777 == 0o600  # it quotes answers: its owner's only
    finally:
        history.stop()
        failing.stop()
        other.stop()


def test_without_the_rehearse_extra_the_commands_say_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A gateway installed without `turnout[rehearse]` answers a rehearsal command with the
    package to install, not an import traceback."""
    import importlib.util

    found = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "wordllama" else found(name, *a)
    )
    state = tmp_path / "s.jsonl"
    state.write_text("")
    result = CliRunner().invoke(main, ["rehearse", "report", "--state", str(state)])
    assert result.exit_code == 1, result.output
    assert "needs wordllama: pip install 'turnout[rehearse]'" in result.output
    assert "Traceback" not in result.output
