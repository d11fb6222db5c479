"""The request log: a key or team with it switched on has each request and its answer (a stream
assembled into one completion) kept under the ledger's request id, redacted and cut to size;
anyone else's traffic is not kept; entries are browsed, searched, read and exported as JSON Lines
through the admin API, a team's admin seeing their own team's only; old entries are deleted a
bounded batch at a time; the queue in front of the database never grows past its cap. The store's
queries run on SQLite and PostgreSQL alike (their text search and batched deletes differ)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
from collections.abc import AsyncIterator, Awaitable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import anthropic
import httpx
import openai
import pytest
import sqlalchemy as sa

from turnout.config.loader import ConfigError
from turnout.domain.principal import Principal
from turnout.request_logs.capture import Captured
from turnout.request_logs.retention import RequestLogRetention
from turnout.request_logs.scrub import Scrubber
from turnout.request_logs.store import Filters, RequestLogStore
from turnout.request_logs.writer import RequestLogWriter
from turnout.storage.database import Database
from turnout.storage.paging import Paging
from turnout.storage.tables import request_logs

from support.databases import ledger_rows, opened_database
from support.gateway import MASTER_KEY, UPSTREAM_KEY, Gateway, openai_doc, settings_for
from support.upstream import Upstream

T = TypeVar("T")
SSN_RULE = r"\b\d{3}-\d{2}-\d{4}\b"
ENTRY_CAP = 2048
ANSWER = "Hello! How can I assist you today?"  # the upstream's fixtures, streamed or not


class Org:
    """A gateway whose upstream answers from the fixtures, and the people calling it: a logged key,
    an unlogged one, the team `red` (logged as a team) with an admin and a member, the team `blue`
    with a logged key and an admin."""

    def __init__(self, gateway: Gateway, data_dir: Path, upstream: Upstream) -> None:
        self.gateway = gateway
        self.upstream = upstream
        self.data_dir = data_dir
        self.http = httpx.Client(base_url=gateway.root_url, timeout=20)
        self.red = self.admin("POST", "/admin/teams", json={"name": "red"})["id"]
        self.blue = self.admin("POST", "/admin/teams", json={"name": "blue"})["id"]
        self.logged_id, self.logged = self.key("logged")
        self.unlogged_id, self.unlogged = self.key("unlogged")
        self.red_member_id, self.red_member = self.key("red-member", team=self.red)
        self.red_quiet_id, self.red_quiet = self.key("red-quiet", team=self.red)
        _, self.red_admin = self.key("red-admin", team=self.red, role="admin")
        self.blue_key_id, self.blue_key = self.key("blue-key", team=self.blue)
        _, self.blue_admin = self.key("blue-admin", team=self.blue, role="admin")
        self.admin("PUT", f"/admin/keys/{self.logged_id}/request-log", json={"enabled": True})
        self.admin("PUT", f"/admin/teams/{self.red}/request-log", json={"enabled": True})
        self.admin("PUT", f"/admin/keys/{self.red_quiet_id}/request-log", json={"enabled": False})
        self.admin("PUT", f"/admin/keys/{self.blue_key_id}/request-log", json={"enabled": True})

    def admin(self, method: str, path: str, key: str = MASTER_KEY, **kwargs: Any) -> Any:
        answer = self.http.request(method, path, headers={"authorization": f"Bearer {key}"}, **kwargs)
        assert answer.status_code == 200, (method, path, answer.text)
        return answer.json()

    def status(self, method: str, path: str, key: str, **kwargs: Any) -> httpx.Response:
        return self.http.request(method, path, headers={"authorization": f"Bearer {key}"}, **kwargs)

    def key(self, name: str, team: str | None = None, role: str = "member") -> tuple[str, str]:
        issued = self.admin("POST", "/admin/keys", json={"name": name, "team_id": team, "role": role})
        return issued["id"], issued["key"]

    def client(self, key: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.gateway.base_url, api_key=key, max_retries=0, timeout=20)

    def chat(self, key: str, content: str, stream: bool = False) -> tuple[str, str]:
        """(the request id the client was given, the answer's text as the client read it)"""
        messages: Any = [{"role": "user", "content": content}]
        with self.client(key) as client:
            if not stream:
                raw = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=messages)
                return raw.headers["x-request-id"], raw.parse().choices[0].message.content or ""
            with client.chat.completions.with_streaming_response.create(
                model="gpt-4o", messages=messages, stream=True, stream_options={"include_usage": True}
            ) as response:
                text = "".join(
                    chunk.choices[0].delta.content or ""
                    for chunk in response.parse()
                    if chunk.choices and chunk.choices[0].delta
                )
                return response.headers["x-request-id"], text

    def entry(self, request_id: str, key: str = MASTER_KEY) -> Any:
        return self.admin("GET", f"/admin/request-logs/{request_id}", key)

    def listed(self, key: str = MASTER_KEY, **query: Any) -> list[dict[str, Any]]:
        return list(self.admin("GET", "/admin/request-logs", key, params=query)["data"])

    def on_loop(self, work: Awaitable[T]) -> T:
        """Run a coroutine on the gateway's own event loop (its services live there)."""
        assert self.gateway.loop is not None
        return asyncio.run_coroutine_threadsafe(work, self.gateway.loop).result(20)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def org(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Org]:
    upstream = Upstream().start()
    data = Path(tmp_path_factory.mktemp("request-logs"))
    doc = {
        **openai_doc(upstream),
        "request_logs": {"redact": [SSN_RULE], "max_entry_bytes": ENTRY_CAP, "retention_days": 30},
    }
    gateway = Gateway(settings_for(doc, data, {"UPSTREAM_KEY": UPSTREAM_KEY})).start()
    org = Org(gateway, data, upstream)
    yield org
    org.http.close()
    gateway.stop()
    upstream.stop()


# ---------------------------------------------------------------------- what is logged


def test_a_logged_keys_chat_is_kept_with_its_request_answer_and_ledger_request_id(org: Org) -> None:
    request_id, text = org.chat(org.logged, "What is a railway turnout?")
    entry = org.entry(request_id)
    assert entry["request_id"] == request_id
    assert entry["key_id"] == org.logged_id
    assert entry["model"] == "gpt-4o" and entry["served_model"] == "gpt-4o-2024-08-06"
    assert (entry["status"], entry["stream"], entry["truncated"]) == (200, False, False)
    assert entry["request"]["messages"] == [{"role": "user", "content": "What is a railway turnout?"}]
    assert entry["response"]["choices"][0]["message"]["content"] == text == ANSWER
    org.on_loop(org.gateway.services.spend.flush())  # the ledger's journal, into the database
    assert request_id in {row["request_id"] for row in ledger_rows(org.data_dir)}


def test_a_streamed_answer_is_kept_assembled_into_one_completion(org: Org) -> None:
    request_id, text = org.chat(org.logged, "Stream me the answer", stream=True)
    entry = org.entry(request_id)
    assert (entry["status"], entry["stream"]) == (200, True)
    assert entry["request"]["stream"] is True
    answer = entry["response"]
    assert answer["object"] == "chat.completion"
    assert answer["choices"][0]["message"] == {"role": "assistant", "content": text}
    assert text == ANSWER
    assert answer["choices"][0]["finish_reason"] == "stop"
    assert answer["usage"] == {"prompt_tokens": 19, "completion_tokens": 10, "total_tokens": 29}
    org.on_loop(org.gateway.services.spend.flush())
    assert request_id in {row["request_id"] for row in ledger_rows(org.data_dir)}


def test_a_streamed_tool_call_is_kept_with_its_arguments_assembled(org: Org) -> None:
    org.upstream.reply_sse("chat_stream_tools.sse")
    tools: Any = [
        {
            "type": "function",
            "function": {
                "name": "get_current_weather",
                "parameters": {"type": "object", "properties": {"location": {"type": "string"}}},
            },
        }
    ]
    messages: Any = [{"role": "user", "content": "Weather in Boston?"}]
    with org.client(org.logged) as client:
        arguments = ""
        with client.chat.completions.with_streaming_response.create(
            model="gpt-4o", messages=messages, tools=tools, stream=True
        ) as response:
            request_id = response.headers["x-request-id"]
            for chunk in response.parse():
                for call in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
                    arguments += (call.function.arguments or "") if call.function else ""
    kept = org.entry(request_id)["response"]["choices"][0]
    assert kept["finish_reason"] == "tool_calls"
    assert kept["message"]["tool_calls"] == [
        {
            "id": "call_abc123",
            "type": "function",
            "function": {"name": "get_current_weather", "arguments": arguments},
        }
    ]
    assert json.loads(arguments) == {"location": "Boston, MA"}
    assert org.entry(request_id)["request"]["tools"] == tools


def test_a_stream_the_upstream_broke_is_kept_with_its_failure_and_what_the_client_got(org: Org) -> None:
    org.upstream.reply_sse("chat_stream_usage.sse", cut_after=3)  # "Hello", "!", then gone
    messages: Any = [{"role": "user", "content": "break please"}]
    with (
        org.client(org.logged) as client,
        client.chat.completions.with_streaming_response.create(
            model="gpt-4o", messages=messages, stream=True
        ) as response,
    ):
        request_id = response.headers["x-request-id"]
        with pytest.raises(openai.APIError):
            for _ in response.parse():
                pass
    entry = org.entry(request_id)
    assert (entry["status"], entry["stream"]) == (502, True)
    assert entry["reason"]  # the error's code, as the ledger has it
    assert entry["response"]["choices"][0]["message"]["content"] == "Hello!"


def test_requests_through_the_anthropic_messages_api_are_kept_too(org: Org) -> None:
    with anthropic.Anthropic(base_url=org.gateway.root_url, api_key=org.logged, max_retries=0) as client:
        raw = client.messages.with_raw_response.create(
            model="gpt-4o", max_tokens=64, messages=[{"role": "user", "content": "Bonjour"}]
        )
    entry = org.entry(raw.headers["x-request-id"])
    assert entry["api"] == "messages"
    assert entry["request"]["messages"][-1]["content"] in ("Bonjour", [{"type": "text", "text": "Bonjour"}])
    assert entry["response"]["choices"][0]["message"]["content"] == raw.parse().content[0].text == ANSWER
    with (
        anthropic.Anthropic(base_url=org.gateway.root_url, api_key=org.logged, max_retries=0) as client,
        client.messages.stream(
            model="gpt-4o", max_tokens=64, messages=[{"role": "user", "content": "Bonjour, streamed"}]
        ) as stream,
    ):
        text = "".join(stream.text_stream)
        request_id = stream.response.headers["x-request-id"]
    streamed = org.entry(request_id)
    assert (streamed["api"], streamed["stream"]) == ("messages", True)
    assert streamed["response"]["choices"][0]["message"]["content"] == text == ANSWER


def test_what_is_queued_when_the_gateway_stops_is_written_on_the_way_out(
    upstream: Upstream, tmp_path: Path
) -> None:
    doc = {**openai_doc(upstream), "request_logs": {"log_by_default": True}}
    gateway = Gateway(settings_for(doc, tmp_path, {"UPSTREAM_KEY": UPSTREAM_KEY})).start()
    with openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=20) as client:
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=[{"role": "user", "content": "last words"}]
        )
    gateway.stop()

    async def stored() -> list[dict[str, Any]]:
        database = await Database.open(f"sqlite+aiosqlite:///{tmp_path}/turnout.db")
        try:
            page, _ = await RequestLogStore(database).page(MASTER, Filters(text="last words"), Paging())
            return page
        finally:
            await database.close()

    assert [e["request_id"] for e in asyncio.run(stored())] == [raw.headers["x-request-id"]]


def test_traffic_of_keys_without_the_log_on_is_not_kept(org: Org) -> None:
    unlogged, _ = org.chat(org.unlogged, "not for the log")
    quiet, _ = org.chat(org.red_quiet, "my team logs, I do not")  # the key's own setting wins
    team_logged, _ = org.chat(org.red_member, "my team logs me")
    for request_id in (unlogged, quiet):
        assert org.status("GET", f"/admin/request-logs/{request_id}", MASTER_KEY).status_code == 404
    assert org.listed(key_id=org.unlogged_id) == []
    assert org.listed(key_id=org.red_quiet_id) == []
    assert org.entry(team_logged)["team_id"] == org.red


def test_a_presets_prompt_stays_out_of_the_callers_log(org: Org) -> None:
    secret_prompt = "You are Blue's proprietary assistant; never reveal the Blue method."
    org.admin(
        "POST",
        "/admin/presets",
        org.blue_admin,
        json={"name": "blue-way", "team_id": org.blue, "model": "gpt-4o", "system_prompt": secret_prompt},
    )
    messages: Any = [{"role": "user", "content": "use the preset"}]
    with org.client(org.red_member) as client:
        raw = client.chat.completions.with_raw_response.create(model="preset/blue-way", messages=messages)
    assert org.upstream.requests[-1].json["messages"][0]["content"] == secret_prompt  # it was used
    kept = org.entry(raw.headers["x-request-id"], org.red_admin)
    assert kept["request"] == {"model": "preset/blue-way", "messages": messages}
    assert org.listed(org.red_admin, q="Blue method") == []


def test_settings_are_validated_scoped_and_audited(org: Org) -> None:
    key_path = f"/admin/keys/{org.unlogged_id}/request-log"
    refused = org.status("PUT", key_path, MASTER_KEY, json={"enabled": "yes"})
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "enabled"
    assert org.status("PUT", key_path, MASTER_KEY, json={"on": True}).status_code == 400
    setting = org.admin("GET", key_path)
    assert (setting["enabled"], setting["effective"]) == (None, False)
    # a team's admin sets their own team's keys and team, never another team's
    red_key = f"/admin/keys/{org.red_quiet_id}/request-log"
    assert org.admin("GET", red_key, org.red_admin)["effective"] is False
    assert (
        org.status(
            "PUT", f"/admin/teams/{org.blue}/request-log", org.red_admin, json={"enabled": False}
        ).status_code
        == 404
    )
    assert org.status("PUT", red_key, org.blue_admin, json={"enabled": True}).status_code == 404
    assert org.status("PUT", red_key, org.red_member, json={"enabled": True}).status_code == 403
    cleared = org.admin("PUT", red_key, org.red_admin, json={"enabled": None})
    assert (cleared["enabled"], cleared["effective"]) == (None, True)  # the team's setting now
    org.admin("PUT", red_key, org.red_admin, json={"enabled": False})
    events = org.admin(
        "GET", "/admin/audit", params={"action": "request_log.set", "target_id": org.red_quiet_id}
    )
    assert [(e["before"], e["after"]) for e in events["data"]][:2] == [
        ({"enabled": None}, {"enabled": False}),
        ({"enabled": False}, {"enabled": None}),
    ]


# ---------------------------------------------------------------------- redaction and size


def test_secrets_in_a_prompt_are_redacted_before_they_are_stored(org: Org) -> None:
    prompt = (
        f"my OpenAI key is sk-proj-Zx81QmTT0aa9bcdEfgh, the upstream's is {UPSTREAM_KEY}, "
        "Authorization: Bearer abcdefghijklmnop.qrstuv and my SSN is 078-05-1120"
    )
    request_id, _ = org.chat(org.logged, prompt)
    kept = org.entry(request_id)["request"]["messages"][0]["content"]
    for secret in ("sk-proj-Zx81QmTT0aa9bcdEfgh", UPSTREAM_KEY, "abcdefghijklmnop.qrstuv", "078-05-1120"):
        assert secret not in kept
    assert kept.count("[redacted]") == 4
    assert kept.startswith("my OpenAI key is [redacted]")
    assert org.listed(q="078-05-1120") == []  # nor can it be found


def test_an_entry_past_the_size_cap_is_cut_and_marked(org: Org) -> None:
    request_id, _ = org.chat(org.logged, "long " * 2000)
    entry = org.entry(request_id)
    assert entry["truncated"] is True
    request = entry["request"]
    assert isinstance(request, str)  # cut, it is no longer JSON: the text as kept
    assert '"content":"long long long' in request
    head, marker = request.split("…[truncated by turnout: ")
    assert len(head.encode()) == ENTRY_CAP
    assert marker.endswith(" more bytes]") and int(marker.split(" ")[0]) > 7000
    assert entry["response"]["choices"][0]["message"]["content"] == ANSWER  # the answer fits


# ---------------------------------------------------------------------- reading


def test_entries_are_searched_by_text_and_filtered(org: Org) -> None:
    zebra, _ = org.chat(org.logged, "Tell me about the Zebra crossing at 100% speed")
    giraffe, _ = org.chat(org.logged, "Tell me about the giraffe")
    assert [e["request_id"] for e in org.listed(q="zEBRA")] == [zebra]  # any case
    assert [e["request_id"] for e in org.listed(q="100%")] == [zebra]  # % is the character here
    assert org.listed(q="1_0%") == []
    both = org.listed(q="tell me about the", key_id=org.logged_id)
    assert [e["request_id"] for e in both][:2] == [giraffe, zebra]  # newest first
    assert "request" not in both[0]  # a list carries no bodies: GET an entry for them
    assert {e["status"] for e in org.listed(status="2xx")} == {200}
    assert all(e["status"] >= 500 for e in org.listed(status="5xx"))
    assert org.listed(status="5xx", q="giraffe") == [] and org.listed(status="502", q="giraffe") == []
    assert org.listed(model="gpt-4o-2024-08-06", q="giraffe")[0]["request_id"] == giraffe
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    assert org.listed(since=later.isoformat()) == []
    for bad in ({"status": "abc"}, {"since": "yesterday"}, {"limit": 0}, {"q": ""}):
        refused = org.status("GET", "/admin/request-logs", MASTER_KEY, params=bad)
        assert refused.status_code == 400, bad


def test_pages_follow_cursors_without_repeating_or_skipping(org: Org) -> None:
    made = {org.chat(org.logged, f"paging {i}")[0] for i in range(5)}
    seen: list[str] = []
    after: str | None = None
    while True:
        params: dict[str, Any] = {"q": "paging", "limit": 2, **({"after": after} if after else {})}
        page = org.admin("GET", "/admin/request-logs", params=params)
        seen += [e["request_id"] for e in page["data"]]
        after = page["next_cursor"]
        if after is None:
            break
    assert len(seen) == len(set(seen)) == 5 and set(seen) == made


def test_a_team_admin_reads_their_own_teams_entries_only(org: Org) -> None:
    red, _ = org.chat(org.red_member, "a red request")
    blue, _ = org.chat(org.blue_key, "a blue request")
    red_seen = {e["request_id"] for e in org.listed(org.red_admin)}
    assert red in red_seen and blue not in red_seen
    assert {e["team_id"] for e in org.listed(org.red_admin)} == {org.red}
    assert org.listed(org.red_admin, team_id=org.blue) == []
    assert org.entry(red, org.red_admin)["request"]["messages"][0]["content"] == "a red request"
    assert org.status("GET", f"/admin/request-logs/{blue}", org.red_admin).status_code == 404
    assert blue in {e["request_id"] for e in org.listed(org.blue_admin)}
    assert red not in {e["request_id"] for e in org.listed(org.blue_admin)}
    for refused in (org.red_member, org.logged):  # members read no one's prompts
        assert org.status("GET", "/admin/request-logs", refused).status_code == 403
        assert org.status("GET", f"/admin/request-logs/{red}", refused).status_code == 403
    exported = org.status("GET", "/admin/request-logs/export", org.red_admin)
    assert {json.loads(line)["team_id"] for line in exported.text.splitlines()} == {org.red}


def test_the_export_is_json_lines_with_every_matching_entry(org: Org) -> None:
    made = [org.chat(org.logged, f"export me {i}", stream=i % 2 == 1)[0] for i in range(3)]
    answer = org.status("GET", "/admin/request-logs/export", MASTER_KEY, params={"q": "export me"})
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/x-ndjson"
    lines = answer.text.splitlines()
    entries = [json.loads(line) for line in lines]  # every line parses on its own
    assert [e["request_id"] for e in entries] == made[::-1]
    assert all(e["response"]["choices"][0]["message"]["content"] == ANSWER for e in entries)
    assert [e["request"]["messages"][0]["content"] for e in entries] == [f"export me {i}" for i in (2, 1, 0)]
    everything = org.status("GET", "/admin/request-logs/export", MASTER_KEY).text.splitlines()
    assert len(everything) == len({json.loads(line)["request_id"] for line in everything}) > 3
    assert (
        org.status("GET", "/admin/request-logs/export", MASTER_KEY, params={"status": "x"}).status_code == 400
    )


# ---------------------------------------------------------------------- retention


def test_retention_deletes_old_entries_a_bounded_batch_at_a_time_as_the_clock_moves(org: Org) -> None:
    kept = [org.chat(org.logged, f"retained {i}")[0] for i in range(3)]
    org.listed()  # (written: a read writes what this instance has queued)
    retention = org.gateway.services.request_log.retention  # type: ignore[union-attr]
    now = dt.datetime.now(dt.UTC)
    moving = [now + dt.timedelta(days=29)]
    retention.clock = lambda: moving[0]
    retention.batch = 2
    assert org.on_loop(retention.prune()) == 0  # 29 days on: within the 30 kept
    assert [org.entry(r)["request_id"] for r in kept] == kept
    moving[0] = now + dt.timedelta(days=31)
    total = len(org.listed(limit=1000))
    rounds = []
    while (deleted := org.on_loop(retention.prune())) > 0:
        rounds.append(deleted)
    assert max(rounds) == 2 and sum(rounds) == total  # two at most a round, until none is left
    assert org.listed() == []
    for request_id in kept:
        assert org.status("GET", f"/admin/request-logs/{request_id}", MASTER_KEY).status_code == 404


# ---------------------------------------------------------------------- configuration


def test_bad_request_log_settings_are_refused_with_their_paths(tmp_path: Path) -> None:
    bad = {
        "request_logs": {
            "redact": ["(unclosed"],
            "retention_days": 0,
            "max_entry_bytes": 10,
            "queue_limit": 0,
        }
    }
    with pytest.raises(ConfigError) as raised:
        settings_for(bad, tmp_path)
    text = str(raised.value)
    for path in ("request_logs.redact[0]", "request_logs.retention_days", "request_logs.max_entry_bytes"):
        assert path in text
    assert "request_logs.queue_limit" in text
    with pytest.raises(ConfigError, match=r"request_logs\.colour"):
        settings_for({"request_logs": {"colour": "red"}}, tmp_path)


def test_log_by_default_logs_every_key_without_a_setting_of_its_own(
    upstream: Upstream, tmp_path: Path
) -> None:
    doc = {**openai_doc(upstream), "request_logs": {"log_by_default": True}}
    gateway = Gateway(settings_for(doc, tmp_path, {"UPSTREAM_KEY": UPSTREAM_KEY})).start()
    try:
        org = Org(gateway, tmp_path, upstream)
        everyone, _ = org.chat(org.unlogged, "logged by default")
        quiet, _ = org.chat(org.red_quiet, "my key says no")
        assert org.entry(everyone)["key_id"] == org.unlogged_id
        assert org.status("GET", f"/admin/request-logs/{quiet}", MASTER_KEY).status_code == 404
        org.http.close()
    finally:
        gateway.stop()


# ---------------------------------------------------------------------- the store, on both databases

BACKENDS = [pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)]
MASTER = Principal(key_id="master", name="master", role="owner", kind="master")
NOW = dt.datetime(2026, 12, 6, 12, tzinfo=dt.UTC)


@pytest.fixture(params=BACKENDS)
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async with opened_database(request.param, tmp_path) as database:
        yield database


def captured(n: int, text: str, at: dt.datetime, team: str | None = None) -> Captured:
    return Captured(
        request_id=f"req-{n}",
        at=at.timestamp(),
        api="chat",
        key_id="key_1",
        team_id=team,
        user_id=None,
        alias="gpt-4o",
        model="gpt-4o-2024-08-06",
        deployment="up/gpt-4o-2024-08-06",
        stream=False,
        status=200 if n % 2 else 502,
        reason=None if n % 2 else "upstream_server_error",
        latency_ms=12,
        request={"model": "gpt-4o", "messages": [{"role": "user", "content": text}]},
        answer=None,
        usage=None,
    )


async def test_the_queue_is_bounded_and_what_it_drops_is_counted(database: Database) -> None:
    writer = RequestLogWriter(database, Scrubber((), 4096), queue_limit=2)
    for n in range(5):
        writer.capture(captured(n, "hello", NOW))
    assert (len(writer.queue), writer.dropped) == (2, 3)
    assert await writer.flush() == 2
    page, _ = await RequestLogStore(database).page(MASTER, Filters(), Paging())
    assert [e["request_id"] for e in page] == ["req-1", "req-0"]


async def test_search_filters_and_retention_behave_alike_on_both_databases(database: Database) -> None:
    writer = RequestLogWriter(database, Scrubber((), 4096), queue_limit=100)
    words = ["Zebra", "ZEBRA crossing", "giraffe", "50% off", "50_ off", "ünïcode ZEBRA"]
    for n, word in enumerate(words):
        writer.capture(captured(n, word, NOW - dt.timedelta(days=n * 10), team="t1" if n < 3 else "t2"))
    await writer.flush()
    store = RequestLogStore(database)

    async def ids(**filters: Any) -> list[str]:
        page, _ = await store.page(MASTER, Filters(**filters), Paging())
        return [e["request_id"] for e in page]

    assert await ids(text="zebra") == ["req-0", "req-1", "req-5"]
    assert await ids(text="50%") == ["req-3"]
    assert await ids(text="ünïcode") == ["req-5"]
    assert await ids(status="5xx") == ["req-0", "req-2", "req-4"]
    assert await ids(status="200", team_id="t1") == ["req-1"]
    assert await ids(since=NOW - dt.timedelta(days=25), until=NOW) == ["req-1", "req-2"]
    team_admin = Principal(key_id="k", name="k", role="admin", team_id="t2")
    assert await ids() == [f"req-{n}" for n in range(6)]
    page, _ = await store.page(team_admin, Filters(), Paging())
    assert [e["request_id"] for e in page] == ["req-3", "req-4", "req-5"]
    moving = [NOW]
    retention = RequestLogRetention(database, days=15, clock=lambda: moving[0], batch=2)
    assert [await retention.prune() for _ in range(3)] == [2, 2, 0]  # older than 15 days: 4 of 6
    assert await ids() == ["req-0", "req-1"]
    moving[0] = NOW + dt.timedelta(days=30)
    assert await retention.prune() == 2
    assert await ids() == []


def test_the_scrubber_redacts_whatever_a_credential_pattern_finds_and_leaves_the_rest() -> None:
    scrubber = Scrubber((re.compile(SSN_RULE),), 1 << 20)
    opaque = "Q" * 20 + "x9" * 12
    document = {
        "messages": [
            {"role": "user", "content": "plain words, nothing secret"},
            {"role": "tool", "content": '{"api_key": "abcd1234xyz", "city": "Oslo"}'},  # JSON in a string
            {"role": "user", "content": f"ssn 078-05-1120 and {opaque}"},
        ],
        "metadata": {"password": "hunter22", "note": "token=abcdef123"},
    }
    text, cut = scrubber.document(document)
    kept = json.loads(text)
    assert not cut
    assert kept["messages"][0]["content"] == "plain words, nothing secret"
    assert json.loads(kept["messages"][1]["content"].replace("[redacted]", "R")) == {
        "api_key": "R",
        "city": "Oslo",
    }
    assert kept["messages"][2]["content"] == "ssn [redacted] and [redacted]"
    assert kept["metadata"] == {"password": "[redacted]", "note": "token=[redacted]"}
    clean = {"model": "gpt-4o", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    assert scrubber.clean(clean) and json.loads(scrubber.document(clean)[0]) == clean


async def test_entries_wait_as_rows_while_the_database_refuses_them_and_are_written_after(
    database: Database,
) -> None:
    writer = RequestLogWriter(database, Scrubber((), 4096), queue_limit=3)
    writer.capture(captured(1, "before the outage", NOW))
    writer.capture(captured(3, "during it", NOW))
    async with database.engine.begin() as conn:  # the table is gone: every insert fails
        await conn.run_sync(lambda sync: request_logs.drop(sync))
    with pytest.raises(sa.exc.DBAPIError):
        await writer.flush()
    assert [type(e) for e in writer.queue] == [dict, dict]  # redacted, cut, waiting
    writer.capture(captured(5, "still down", NOW))
    writer.capture(captured(7, "one too many", NOW))
    assert (len(writer.queue), writer.dropped) == (3, 1)
    async with database.engine.begin() as conn:
        await conn.run_sync(lambda sync: request_logs.create(sync))
    assert await writer.flush() == 3
    page, _ = await RequestLogStore(database).page(MASTER, Filters(), Paging())
    assert sorted(e["request_id"] for e in page) == ["req-1", "req-3", "req-5"]
