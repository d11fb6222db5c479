"""`POST /v1/rerank` and `POST /v1/moderations` over real HTTP: turnout in front of a server on
127.0.0.1 speaking each provider's documented wire format — Cohere's v2 rerank, the Bedrock Agent
Runtime's `Rerank` (SigV4 signed, checked with botocore), an OpenAI-compatible (vLLM/Jina) `/rerank`
and OpenAI's moderations (through the official SDK). Each answer is checked, with what reached the
provider and the ledger row it left (search units, cost); budgets and rate limits refuse them as
they refuse chat; rerankers and moderation models serve nothing else; bad input gets a 400 in
OpenAI's error shape."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cohere
import httpx
import openai
import pytest
from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from prometheus_client.parser import text_string_to_metric_families

from turnout.config.loader import ConfigError

from support.databases import ledger_rows
from support.gateway import MASTER_KEY, UPSTREAM_KEY, Gateway, settings_for
from support.spec import validate_openai
from support.upstream import Recorded, Upstream

KEY_ID = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
REGION = "us-east-1"
ENV = {"UPSTREAM_KEY": UPSTREAM_KEY, "AWS_SECRET": SECRET}
QUERY = "What is the capital of the United States?"
DOCUMENTS: list[Any] = [
    "Carson City is the capital city of the American state of Nevada.",
    {"text": "Washington, D.C. is the capital of the United States.", "id": "dc"},
    "Capital punishment has existed in the United States since before it was a country.",
]
TEXTS = [d if isinstance(d, str) else d["text"] for d in DOCUMENTS]


def doc(upstream: Upstream, data: Path, **routing: Any) -> dict[str, Any]:
    return {
        "storage": {"data_dir": str(data)},
        "routing": {"retries": {"attempts": 1}, **routing},
        "providers": {
            "co": {"type": "cohere", "base_url": upstream.root_url + "/v2", "api_key": "env:UPSTREAM_KEY"},
            "br": {
                "type": "bedrock",
                "base_url": upstream.root_url,
                "aws": {"region": REGION, "access_key_id": KEY_ID, "secret_access_key": "env:AWS_SECRET"},
            },
            "vl": {"type": "vllm", "base_url": upstream.base_url, "api_key": "env:UPSTREAM_KEY"},
            "oa": {"type": "openai", "base_url": upstream.base_url, "api_key": "env:UPSTREAM_KEY"},
        },
        "models": {
            "rerank": {"provider": "co", "model": "rerank-v3.5", "supports": {"rerank": True}},
            "rerank-bedrock": {"provider": "br", "model": "amazon.rerank-v1:0", "supports": {"rerank": True}},
            "rerank-local": {
                "provider": "vl",
                "model": "BAAI/bge-reranker-v2-m3",
                "supports": {"rerank": True},
                "price": {"search_units": "0.50"},
            },
            "moderation": {
                "provider": "oa",
                "model": "omni-moderation-latest",
                "supports": {"moderation": True},
            },
            "chat": {"provider": "oa", "model": "gpt-4o-mini"},
            "rerank-any": {
                "attempts": 2,
                "targets": [
                    {"provider": "co", "model": "rerank-v3.5", "supports": {"rerank": True}},
                    {"provider": "br", "model": "amazon.rerank-v1:0", "supports": {"rerank": True}},
                ],
            },
            "rerank-mixed": {  # Bedrock and vLLM first, Cohere last
                "attempts": 3,
                "targets": [
                    {"provider": "br", "model": "amazon.rerank-v1:0", "supports": {"rerank": True}},
                    {"provider": "vl", "model": "BAAI/bge-reranker-v2-m3", "supports": {"rerank": True}},
                    {"provider": "co", "model": "rerank-v3.5", "supports": {"rerank": True}},
                ],
            },
            "rerank-no-cohere": {
                "attempts": 2,
                "targets": [
                    {"provider": "br", "model": "amazon.rerank-v1:0", "supports": {"rerank": True}},
                    {"provider": "vl", "model": "BAAI/bge-reranker-v2-m3", "supports": {"rerank": True}},
                ],
            },
            "mixed": {
                "targets": [
                    {"provider": "co", "model": "rerank-v3.5", "supports": {"rerank": True}},
                    {"provider": "oa", "model": "gpt-4o-mini"},
                ]
            },
        },
    }


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def gateway(upstream: Upstream, start_gateway: Callable[..., Gateway], data: Path) -> Gateway:
    return start_gateway(doc(upstream, data, moderation_model="moderation"), ENV)


def rerank(gateway: Gateway, body: dict[str, Any], key: str = MASTER_KEY) -> httpx.Response:
    return httpx.post(
        gateway.base_url + "/rerank", json=body, headers={"authorization": f"Bearer {key}"}, timeout=20
    )


# --------------------------------------------------------------------------- the fake providers


def scores(query: str, texts: list[str]) -> list[tuple[int, float]]:
    """A stand-in relevance: the share of the query's words in each text, best first."""
    words = set(re.findall(r"\w+", query.lower()))
    scored = [(i, len(words & set(re.findall(r"\w+", t.lower()))) / len(words)) for i, t in enumerate(texts)]
    return sorted(scored, key=lambda pair: -pair[1])


def cohere_v2(upstream: Upstream) -> None:
    """Cohere's `POST /v2/rerank` answer: results best first, the search units billed in `meta`."""

    async def action(request: web.Request) -> web.StreamResponse:
        body = json.loads(await request.read())
        ranked = scores(body["query"], body["documents"])[: body.get("top_n")]
        return web.json_response(
            {
                "id": "07734bd2-2473-4f07-94e1-0d9f0e6843cf",
                "results": [{"index": i, "relevance_score": s} for i, s in ranked],
                "meta": {"api_version": {"version": "2"}, "billed_units": {"search_units": 1}},
            }
        )

    upstream.then(action)


def bedrock_agent_runtime(upstream: Upstream) -> None:
    """The Agent Runtime's `Rerank` answer: `results` with camel-cased `relevanceScore`."""

    async def action(request: web.Request) -> web.StreamResponse:
        body = json.loads(await request.read())
        texts = [s["inlineDocumentSource"]["textDocument"]["text"] for s in body["sources"]]
        wanted = body["rerankingConfiguration"]["bedrockRerankingConfiguration"]["numberOfResults"]
        ranked = scores(body["queries"][0]["textQuery"]["text"], texts)[:wanted]
        return web.json_response(
            {"results": [{"index": i, "relevanceScore": s} for i, s in ranked]},
            headers={"x-amzn-RequestId": "5f1c9c1e-7d0a-4c8f-9f0e-3c5a1d2b4e6f"},
        )

    upstream.then(action)


def openai_compatible(upstream: Upstream) -> None:
    """vLLM's (Jina's) `POST /v1/rerank` answer: `usage.total_tokens`, documents echoed."""

    async def action(request: web.Request) -> web.StreamResponse:
        body = json.loads(await request.read())
        ranked = scores(body["query"], body["documents"])[: body.get("top_n")]
        return web.json_response(
            {
                "id": "rerank-8f2b5c",
                "model": body["model"],
                "usage": {"total_tokens": 42},
                "results": [
                    {"index": i, "document": {"text": body["documents"][i]}, "relevance_score": s}
                    for i, s in ranked
                ],
            }
        )

    upstream.then(action)


def assert_signed(upstream: Upstream, recorded: Recorded) -> None:
    """A valid SigV4 signature (service `bedrock`), recomputed with botocore from what arrived."""
    match = re.fullmatch(
        r"AWS4-HMAC-SHA256 Credential=(?P<key>[A-Z0-9]+)/(?P<date>\d{8})/(?P<region>[a-z0-9-]+)/bedrock/"
        r"aws4_request, SignedHeaders=(?P<signed>[a-z0-9;-]+), Signature=(?P<signature>[0-9a-f]{64})",
        recorded.headers["authorization"],
    )
    assert match is not None and (match["key"], match["region"]) == (KEY_ID, REGION)
    signed = match["signed"].split(";")
    request = AWSRequest(
        method=recorded.method,
        url=upstream.root_url + recorded.raw_path,
        data=recorded.body,
        headers={name: recorded.headers[name] for name in signed},
    )
    request.context["timestamp"] = recorded.headers["x-amz-date"]
    auth = SigV4Auth(Credentials(KEY_ID, SECRET), "bedrock", REGION)
    canonical = auth.canonical_request(request)
    assert match["signature"] == auth.signature(auth.string_to_sign(request, canonical), request)


def row_of(data: Path, request_id: str) -> dict[str, Any]:
    [row] = [r for r in ledger_rows(data) if r["request_id"] == request_id]
    return row


# --------------------------------------------------------------------------- rerank


def test_cohere_ranks_the_documents_and_the_search_unit_is_billed(
    upstream: Upstream, gateway: Gateway, data: Path
) -> None:
    cohere_v2(upstream)
    answer = rerank(
        gateway,
        {"model": "rerank", "query": QUERY, "documents": DOCUMENTS, "top_n": 2, "return_documents": True},
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [r["index"] for r in body["results"]] == [1, 0]
    assert body["results"][0]["document"] == DOCUMENTS[1]  # the client's own object, handed back
    assert body["results"][1]["document"] == {"text": DOCUMENTS[0]}
    assert body["results"][0]["relevance_score"] > body["results"][1]["relevance_score"]
    assert body["meta"] == {"billed_units": {"search_units": 1}}
    assert body["id"] == "07734bd2-2473-4f07-94e1-0d9f0e6843cf"
    assert answer.headers["x-turnout-deployment"] == "co/rerank-v3.5"

    sent = upstream.requests[-1]
    assert (sent.method, sent.path) == ("POST", "/v2/rerank")
    assert sent.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    texts = [DOCUMENTS[0], DOCUMENTS[1]["text"], DOCUMENTS[2]]
    assert sent.json == {"model": "rerank-v3.5", "query": QUERY, "documents": texts, "top_n": 2}

    metrics = httpx.get(gateway.root_url + "/metrics", headers={"authorization": f"Bearer {MASTER_KEY}"})
    searched = [
        (sample.labels, sample.value)
        for family in text_string_to_metric_families(metrics.text)
        for sample in family.samples
        if sample.name == "turnout_search_units_total"
    ]
    assert ({"alias": "rerank", "deployment": "co/rerank-v3.5", "provider": "co"}, 1.0) in searched

    request_id = answer.headers["x-request-id"]
    gateway.stop()
    row = row_of(data, request_id)
    assert (row["api"], row["alias"], row["model"], row["status"]) == ("rerank", "rerank", "rerank-v3.5", 200)
    assert (row["search_units"], row["estimated"]) == (1, False)
    assert row["cost_micros"] == 2000  # $2.00 per 1,000 search units (the shipped price table)


def test_bedrock_reranks_signed_and_counts_a_search_unit_per_hundred_documents(
    upstream: Upstream, gateway: Gateway, data: Path
) -> None:
    bedrock_agent_runtime(upstream)
    documents = [f"Document {i} about nothing much." for i in range(149)] + [QUERY]
    answer = rerank(gateway, {"model": "rerank-bedrock", "query": QUERY, "documents": documents, "top_n": 3})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["results"][0]["index"] == 149 and len(body["results"]) == 3
    assert "document" not in body["results"][0]  # not asked for
    assert body["meta"] == {"billed_units": {"search_units": 2}}
    assert body["id"] == "5f1c9c1e-7d0a-4c8f-9f0e-3c5a1d2b4e6f"

    sent = upstream.requests[-1]
    assert (sent.method, sent.path) == ("POST", "/rerank")
    assert_signed(upstream, sent)
    assert sent.json["queries"] == [{"type": "TEXT", "textQuery": {"text": QUERY}}]
    assert sent.json["sources"][0] == {
        "type": "INLINE",
        "inlineDocumentSource": {"type": "TEXT", "textDocument": {"text": documents[0]}},
    }
    assert len(sent.json["sources"]) == 150
    assert sent.json["rerankingConfiguration"] == {
        "type": "BEDROCK_RERANKING_MODEL",
        "bedrockRerankingConfiguration": {
            "numberOfResults": 3,
            "modelConfiguration": {
                "modelArn": f"arn:aws:bedrock:{REGION}::foundation-model/amazon.rerank-v1:0"
            },
        },
    }

    request_id = answer.headers["x-request-id"]
    gateway.stop()
    row = row_of(data, request_id)
    assert (row["api"], row["search_units"], row["estimated"]) == ("rerank", 2, True)  # Bedrock reports none
    assert row["cost_micros"] == 2000  # 2 x $1.00 per 1,000


def test_an_openai_compatible_reranker_records_its_tokens_and_configured_price(
    upstream: Upstream, gateway: Gateway, data: Path
) -> None:
    openai_compatible(upstream)
    answer = rerank(gateway, {"model": "rerank-local", "query": QUERY, "documents": DOCUMENTS})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [r["index"] for r in body["results"]] == [1, 0, 2]
    assert body["usage"] == {"search_units": 1, "total_tokens": 42}

    sent = upstream.requests[-1]
    assert (sent.method, sent.path) == ("POST", "/v1/rerank")
    assert sent.json["model"] == "BAAI/bge-reranker-v2-m3" and sent.json["top_n"] == 3
    assert sent.json["return_documents"] is False

    request_id = answer.headers["x-request-id"]
    gateway.stop()
    row = row_of(data, request_id)
    assert (row["input_tokens"], row["search_units"], row["cost_micros"]) == (42, 1, 500)


def test_a_failing_reranker_fails_over_to_the_next_and_both_attempts_are_recorded(
    upstream: Upstream, gateway: Gateway, data: Path
) -> None:
    upstream.reply_json({"message": "internal server error"}, status=500)  # Cohere's error shape
    bedrock_agent_runtime(upstream)
    answer = rerank(gateway, {"model": "rerank-any", "query": QUERY, "documents": DOCUMENTS})
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-turnout-deployment"] == "br/amazon.rerank-v1:0"
    assert [r.path for r in upstream.requests] == ["/v2/rerank", "/rerank"]
    request_id = answer.headers["x-request-id"]
    gateway.stop()
    rows = [r for r in ledger_rows(data) if r["request_id"] == request_id]
    assert [(r["attempt"], r["provider"], r["status"], r["search_units"]) for r in rows] == [
        (1, "co", 502, 0),  # an upstream failure, as turnout records it
        (2, "br", 200, 1),
    ]


def test_search_units_are_in_the_spend_api_by_team_model_and_day_and_survive_a_restart(
    upstream: Upstream, start_gateway: Callable[..., Gateway], data: Path
) -> None:
    """The reranks of two teams' keys: `GET /admin/spend` sums their search units exactly per team,
    model and day, from the running totals, and a restarted gateway reads the same."""
    gateway = start_gateway(doc(upstream, data), ENV)
    admin = {"authorization": f"Bearer {MASTER_KEY}"}

    def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        answer = httpx.post(gateway.root_url + path, json=body, headers=admin, timeout=20)
        assert answer.status_code == 200, answer.text
        return answer.json()  # type: ignore[no-any-return]

    red, blue = post("/admin/teams", {"name": "red"})["id"], post("/admin/teams", {"name": "blue"})["id"]
    red_key = post("/admin/keys", {"name": "r", "role": "member", "team_id": red})["key"]
    blue_key = post("/admin/keys", {"name": "b", "role": "member", "team_id": blue})["key"]
    many = [f"Document {i} about nothing much." for i in range(150)]  # Bedrock: 2 search units
    for key, model, documents, reply in [
        (red_key, "rerank", DOCUMENTS, cohere_v2),  # Cohere bills 1 search unit each
        (red_key, "rerank", DOCUMENTS, cohere_v2),
        (red_key, "rerank-bedrock", many, bedrock_agent_runtime),
        (blue_key, "rerank", DOCUMENTS, cohere_v2),
    ]:
        reply(upstream)
        answer = rerank(gateway, {"model": model, "query": QUERY, "documents": documents}, key)
        assert answer.status_code == 200, answer.text
    # whole days: read from the running totals alone (no edge summed from the ledger's rows)
    today = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    span = (today - dt.timedelta(days=1), today + dt.timedelta(days=1))
    query = {
        "group_by": "team,model",
        "interval": "day",
        **dict(zip(("since", "until"), (repr(t.timestamp()) for t in span), strict=True)),
    }
    want = {
        (red, "rerank-v3.5"): (2, 4000),  # $2.00 per 1,000 search units
        (red, "amazon.rerank-v1:0"): (2, 2000),  # $1.00 per 1,000
        (blue, "rerank-v3.5"): (1, 2000),
    }

    def spend() -> tuple[dict[tuple[str, str], tuple[int, int]], dict[str, Any]]:
        answer = httpx.get(gateway.root_url + "/admin/spend", params=query, headers=admin, timeout=20)
        assert answer.status_code == 200, answer.text
        report = answer.json()
        got = {
            (i["group"]["team"], i["group"]["model"]): (i["search_units"], i["cost_micros"])
            for i in report["data"]
        }
        return got, report["totals"]

    assert gateway.loop is not None
    asyncio.run_coroutine_threadsafe(gateway.services.spend.flush(), gateway.loop).result(10)
    got, totals = spend()
    assert got == want and totals["search_units"] == 5
    gateway.stop()
    gateway = start_gateway(doc(upstream, data), ENV)
    got, totals = spend()
    assert got == want and totals["search_units"] == 5

    from click.testing import CliRunner

    from turnout.cli.main import main

    args = [
        "spend",
        "report",
        "--url",
        gateway.root_url,
        "--key",
        MASTER_KEY,
        "--by",
        "team",
        "--format",
        "csv",
    ]
    result = CliRunner().invoke(main, [*args, "--since", "1d"])
    assert result.exit_code == 0, result.output
    lines = list(csv.DictReader(result.output.splitlines()))
    assert {line["team"]: line["search units"] for line in lines} == {red: "4", blue: "1", "total": "5"}


def test_the_cohere_sdk_reranks_through_v2_and_gets_cohere_errors(
    upstream: Upstream, gateway: Gateway, data: Path
) -> None:
    """The official Cohere SDK (`ClientV2.rerank`, `POST /v2/rerank`) pointed at turnout: its
    answer in Cohere's v2 shape, billed and recorded as `/v1/rerank` is; refusals in Cohere's
    error shape, raised as the SDK's own errors."""
    cohere_v2(upstream)
    bedrock_agent_runtime(upstream)
    with httpx.Client(timeout=20) as http:  # (the SDK's own client would be left open)
        ranked(cohere.ClientV2(api_key=MASTER_KEY, base_url=gateway.root_url, httpx_client=http), upstream)
        with pytest.raises(cohere.errors.UnauthorizedError) as refused:
            cohere.ClientV2(
                api_key="sk-turnout-not-a-key", base_url=gateway.root_url, httpx_client=http
            ).rerank(model="rerank", query=QUERY, documents=TEXTS)
    assert "sk-turnout-not-a-key" not in str(refused.value.body)
    assert len(upstream.requests) == 2
    with httpx.Client(timeout=20) as http:  # a method the route does not take: Cohere's shape too
        for path in ("/v2/rerank", "/v2/rerank/"):
            wrong = http.get(gateway.root_url + path, headers={"authorization": f"Bearer {MASTER_KEY}"})
            assert wrong.status_code == 405 and set(wrong.json()) == {"id", "message"}, wrong.text
    gateway.stop()
    rows = [r for r in ledger_rows(data) if r["api"] == "rerank"]
    assert [(r["model"], r["search_units"], r["status"]) for r in rows] == [
        ("rerank-v3.5", 1, 200),
        ("amazon.rerank-v1:0", 1, 200),
    ]


def ranked(client: cohere.ClientV2, upstream: Upstream) -> None:
    """Two reranks through the SDK (Cohere, then Bedrock) and one refused (`priority`)."""
    answer = client.rerank(model="rerank", query=QUERY, documents=TEXTS, top_n=2, max_tokens_per_doc=512)
    assert [r.index for r in answer.results] == [1, 0]
    assert answer.results[0].relevance_score > answer.results[1].relevance_score
    assert answer.id == "07734bd2-2473-4f07-94e1-0d9f0e6843cf"
    assert answer.meta is not None and answer.meta.billed_units is not None
    assert answer.meta.billed_units.search_units == 1
    sent = upstream.requests[-1]
    assert (sent.path, sent.json["max_tokens_per_doc"]) == ("/v2/rerank", 512)
    assert sent.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"  # turnout's key, not the client's

    bedrock = client.with_raw_response.rerank(model="rerank-bedrock", query=QUERY, documents=TEXTS)
    assert bedrock.data.meta.billed_units.search_units == 1  # type: ignore[union-attr]
    assert set(bedrock.response.json()) == {"id", "results", "meta"}  # Cohere's v2 answer, no more

    with pytest.raises(cohere.errors.BadRequestError) as bad:
        client.rerank(model="rerank", query=QUERY, documents=TEXTS, priority=1)
    assert isinstance(bad.value.body, dict) and "priority" in bad.value.body["message"]
    assert set(bad.value.body) == {"id", "message"}


def test_a_ranking_of_documents_never_sent_is_a_bad_gateway(upstream: Upstream, gateway: Gateway) -> None:
    upstream.reply_json({"id": "x", "results": [{"index": 7, "relevance_score": 0.5}], "meta": {}})
    answer = rerank(gateway, {"model": "rerank", "query": QUERY, "documents": DOCUMENTS})
    assert answer.status_code == 502
    error = answer.json()["error"]
    assert error["code"] == "bad_upstream_response" and "not sent" in error["message"]


def test_cohere_alone_is_given_a_document_token_limit(upstream: Upstream, gateway: Gateway) -> None:
    cohere_v2(upstream)
    body = {"query": QUERY, "documents": DOCUMENTS, "max_tokens_per_doc": 512}
    assert rerank(gateway, {"model": "rerank", **body}).status_code == 200
    assert upstream.requests[-1].json["max_tokens_per_doc"] == 512
    refused = rerank(gateway, {"model": "rerank-local", **body})
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "max_tokens_per_doc"
    assert len(upstream.requests) == 1


def test_a_document_token_limit_skips_the_rerankers_that_cannot_take_it(
    upstream: Upstream, gateway: Gateway, data: Path
) -> None:
    """In an alias whose first rerankers are Bedrock's and vLLM's and last Cohere's, a request with
    `max_tokens_per_doc` goes straight to Cohere (one attempt, no 400); one without it to the first.
    An alias with no Cohere reranker refuses it with a 400 naming it, reaching no provider."""
    cohere_v2(upstream)
    bedrock_agent_runtime(upstream)
    body = {"query": QUERY, "documents": DOCUMENTS, "max_tokens_per_doc": 256}
    limited = rerank(gateway, {"model": "rerank-mixed", **body})
    assert limited.status_code == 200, limited.text
    assert limited.headers["x-turnout-deployment"] == "co/rerank-v3.5"
    assert [r.path for r in upstream.requests] == ["/v2/rerank"]
    assert upstream.requests[0].json["max_tokens_per_doc"] == 256
    unlimited = rerank(gateway, {"model": "rerank-mixed", "query": QUERY, "documents": DOCUMENTS})
    assert unlimited.status_code == 200, unlimited.text
    assert unlimited.headers["x-turnout-deployment"] == "br/amazon.rerank-v1:0"

    for model in ("rerank-no-cohere", "rerank-bedrock"):
        refused = rerank(gateway, {"model": model, **body})
        assert refused.status_code == 400, refused.text
        error = refused.json()["error"]
        assert error["param"] == "max_tokens_per_doc" and "Cohere" in error["message"]
    assert len(upstream.requests) == 2
    request_id = limited.headers["x-request-id"]
    gateway.stop()
    assert [(r["provider"], r["status"]) for r in ledger_rows(data) if r["request_id"] == request_id] == [
        ("co", 200)
    ]


def test_a_budget_reserves_the_searches_and_refuses_what_it_cannot_pay(
    upstream: Upstream, gateway: Gateway, data: Path
) -> None:
    key = httpx.post(
        gateway.root_url + "/admin/keys",
        headers={"authorization": f"Bearer {MASTER_KEY}"},
        json={"name": "capped", "max_budget": "0.005"},  # 5,000 micro-dollars: a search costs 2,000
        timeout=20,
    ).json()
    cohere_v2(upstream)
    cohere_v2(upstream)
    body = {"model": "rerank", "query": QUERY, "documents": DOCUMENTS}
    assert [rerank(gateway, body, key["key"]).status_code for _ in range(2)] == [200, 200]
    refused = rerank(gateway, body, key["key"])  # 1,000 left: less than the search it reserves
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "insufficient_quota"
    assert len(upstream.requests) == 2  # the refused one never left turnout
    gateway.stop()
    rows = [r for r in ledger_rows(data) if r["key_id"] == key["id"]]
    assert sum(r["cost_micros"] for r in rows) == 4000 and all(r["api"] == "rerank" for r in rows)


def test_a_prepaid_team_without_credit_for_a_search_is_refused(upstream: Upstream, gateway: Gateway) -> None:
    with httpx.Client(base_url=gateway.root_url, headers={"authorization": f"Bearer {MASTER_KEY}"}) as admin:
        team = admin.post("/admin/teams", json={"name": "prepaid"}).json()["id"]
        assert admin.post(f"/admin/teams/{team}/billing", json={"prepaid": True}).status_code == 200
        key = admin.post("/admin/keys", json={"name": "p", "team_id": team}).json()["key"]
        assert admin.post(f"/admin/teams/{team}/credits", json={"amount": "0.003"}).status_code == 200
    cohere_v2(upstream)
    body = {"model": "rerank", "query": QUERY, "documents": DOCUMENTS}
    assert rerank(gateway, body, key).status_code == 200  # 3,000 micro-dollars: one search of 2,000
    refused = rerank(gateway, body, key)  # 1,000 left: the next search is not held
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "insufficient_quota"
    assert len(upstream.requests) == 1


def test_a_key_rpm_refuses_the_next_rerank(upstream: Upstream, gateway: Gateway) -> None:
    key = httpx.post(
        gateway.root_url + "/admin/keys",
        headers={"authorization": f"Bearer {MASTER_KEY}"},
        json={"name": "slow", "limits": {"rpm": 1}},
        timeout=20,
    ).json()
    cohere_v2(upstream)
    body = {"model": "rerank", "query": QUERY, "documents": DOCUMENTS}
    first = rerank(gateway, body, key["key"])
    assert first.status_code == 200 and first.headers["x-ratelimit-limit-requests"] == "1"
    refused = rerank(gateway, body, key["key"])
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["code"] == "rate_limit_exceeded" and "key rpm" in error["message"]
    assert len(upstream.requests) == 1


def test_rerankers_serve_rerank_only_and_chat_models_no_rerank(upstream: Upstream, gateway: Gateway) -> None:
    with openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0) as client:
        with pytest.raises(openai.BadRequestError) as refused:
            client.chat.completions.create(model="rerank", messages=[{"role": "user", "content": "hi"}])
        assert refused.value.code == "unsupported_feature"
        assert "reranker" in refused.value.message
        # an alias with a reranker and a chat model: chat goes to the chat model only
        upstream.reply_fixture("chat_completion.json")
        raw = client.chat.completions.with_raw_response.create(
            model="mixed", messages=[{"role": "user", "content": "hi"}]
        )
        assert raw.headers["x-turnout-deployment"] == "oa/gpt-4o-mini"
    assert upstream.requests[-1].path == "/v1/chat/completions"
    cohere_v2(upstream)
    assert rerank(gateway, {"model": "mixed", "query": QUERY, "documents": DOCUMENTS}).status_code == 200
    assert upstream.requests[-1].path == "/v2/rerank"
    not_a_reranker = rerank(gateway, {"model": "chat", "query": QUERY, "documents": DOCUMENTS})
    assert not_a_reranker.status_code == 400
    assert not_a_reranker.json()["error"]["code"] == "unsupported_feature"
    assert len(upstream.requests) == 2


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"query": QUERY, "documents": ["a"]}, "model", "missing_required_parameter"),
        ({"model": "rerank", "query": QUERY, "documents": []}, "documents", "empty_array"),
        ({"model": "rerank", "query": QUERY, "documents": ["a"] * 1001}, "documents", "too_many_documents"),
        (
            {"model": "rerank", "query": QUERY, "documents": ["x" * 2_000_000] * 3},
            "documents",
            "documents_too_large",
        ),
        (
            {"model": "rerank", "query": QUERY, "documents": ["a", {"title": "b"}]},
            "documents[1]",
            "invalid_type",
        ),
        ({"model": "rerank", "query": QUERY, "documents": ["a", 3]}, "documents[1]", "invalid_type"),
        ({"model": "rerank", "query": " ", "documents": ["a"]}, "query", "invalid_value"),
        ({"model": "rerank", "query": QUERY, "documents": ["a"], "top_n": 0}, "top_n", None),
        (
            {"model": "rerank", "query": QUERY, "documents": ["a"], "rank_fields": ["t"]},
            "rank_fields",
            "unknown_parameter",
        ),
    ],
    ids=[
        "no-model",
        "no-documents",
        "too-many",
        "too-large",
        "object-without-text",
        "number",
        "blank-query",
        "top_n",
        "unknown-field",
    ],
)
def test_bad_rerank_requests_get_a_clear_400(
    upstream: Upstream, gateway: Gateway, body: dict[str, Any], param: str, code: str | None
) -> None:
    answer = rerank(gateway, body)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param
    if code is not None:
        assert error["code"] == code
    assert upstream.requests == []


# --------------------------------------------------------------------------- moderations


def test_moderations_through_the_openai_sdk_are_passed_on_and_recorded_free(
    upstream: Upstream, gateway: Gateway, data: Path
) -> None:
    upstream.reply_fixture("moderation.json")
    upstream.reply_fixture("moderation.json")
    with openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0) as client:
        parts: Any = [
            {"type": "text", "text": "...text to classify goes here..."},
            {"type": "image_url", "image_url": {"url": "https://example.com/image.png"}},
        ]
        raw = client.moderations.with_raw_response.create(model="moderation", input=parts)
        validate_openai("CreateModerationResponse", json.loads(raw.content))
        result = raw.parse()
        assert result.results[0].flagged is True and result.results[0].categories.violence is True
        sent = upstream.requests[-1]
        assert (sent.path, sent.headers["authorization"]) == ("/v1/moderations", f"Bearer {UPSTREAM_KEY}")
        assert sent.json == {"model": "omni-moderation-latest", "input": parts}
        # without a model: the alias the operator configured (routing.moderation_model)
        unnamed = client.moderations.with_raw_response.create(input="I want to kill them.")
        assert unnamed.parse().model == "omni-moderation-latest"
        assert upstream.requests[-1].json == {
            "model": "omni-moderation-latest",
            "input": "I want to kill them.",
        }
    request_id = unnamed.headers["x-request-id"]
    gateway.stop()
    row = row_of(data, request_id)
    assert (row["api"], row["alias"], row["status"], row["cost_micros"]) == (
        "moderations",
        "moderation",
        200,
        0,
    )


def test_a_moderation_without_a_model_is_refused_where_none_is_configured(
    upstream: Upstream, start_gateway: Callable[..., Gateway], data: Path
) -> None:
    gateway = start_gateway(doc(upstream, data), ENV)
    with openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0) as client:
        with pytest.raises(openai.BadRequestError) as refused:
            client.moderations.create(input="hello")
        assert refused.value.code == "missing_required_parameter" and refused.value.param == "model"
        assert "routing.moderation_model" in refused.value.message
        with pytest.raises(openai.BadRequestError) as wrong:
            client.moderations.create(model="chat", input="hello")
        assert wrong.value.code == "unsupported_feature"
        with pytest.raises(openai.BadRequestError) as empty:
            client.moderations.create(model="moderation", input=[])
        assert empty.value.code == "empty_array"
        with pytest.raises(openai.BadRequestError) as odd:
            client.moderations.create(model="moderation", input=[{"type": "audio"}])  # type: ignore[list-item]
        assert odd.value.param == "input[0]"
    assert upstream.requests == []


def test_a_budget_and_a_rate_limit_hold_moderations_too(upstream: Upstream, gateway: Gateway) -> None:
    admin = {"authorization": f"Bearer {MASTER_KEY}"}
    key = httpx.post(
        gateway.root_url + "/admin/keys", headers=admin, json={"name": "m", "limits": {"rpm": 1}}, timeout=20
    ).json()
    upstream.reply_fixture("moderation.json")
    with openai.OpenAI(base_url=gateway.base_url, api_key=key["key"], max_retries=0) as client:
        client.moderations.create(input="hello")
        with pytest.raises(openai.RateLimitError):
            client.moderations.create(input="hello")
    assert len(upstream.requests) == 1
    spent = httpx.post(
        gateway.root_url + "/admin/keys", headers=admin, json={"name": "none", "max_budget": "0"}, timeout=20
    ).json()
    with openai.OpenAI(base_url=gateway.base_url, api_key=spent["key"], max_retries=0) as client:
        with pytest.raises(openai.RateLimitError) as refused:
            client.moderations.create(input="hello")
        assert refused.value.code == "insufficient_quota"
    assert len(upstream.requests) == 1


# --------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("change", "path", "says"),
    [
        (
            {"models": {"bad": {"provider": "an", "model": "claude", "supports": {"rerank": True}}}},
            "models.bad.supports.rerank",
            "no rerank API",
        ),
        (
            {"models": {"bad": {"provider": "co", "model": "x", "supports": {"moderation": True}}}},
            "models.bad.supports.moderation",
            "no moderation API",
        ),
        (
            {"routing": {"moderation_model": "modration"}},
            "routing.moderation_model",
            "did you mean 'moderation'",
        ),
        ({"routing": {"moderation_model": "chat"}}, "routing.moderation_model", "no target with"),
    ],
)
def test_configuration_refuses_what_nothing_could_serve(
    upstream: Upstream, tmp_path: Path, change: dict[str, Any], path: str, says: str
) -> None:
    config = doc(upstream, tmp_path / "data")
    config["providers"]["an"] = {
        "type": "anthropic",
        "base_url": upstream.root_url,
        "api_key": "env:UPSTREAM_KEY",
    }
    for section, values in change.items():
        config[section] = {**config[section], **values}
    with pytest.raises(ConfigError) as refused:
        settings_for(config, tmp_path / "data", ENV)
    assert any(p.startswith(path) and says in p for p in refused.value.problems), refused.value.problems
