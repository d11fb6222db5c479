"""Batches through turnout (`/v1/files`, `/v1/batches`): a batch file uploaded with a turnout key,
its model alias replaced by the deployment's model and sent with the provider's credential, the
batch created on the deployment that holds the file with its most reserved in the key's budget,
read back through turnout until it completes, and its usage accounted once at batch prices."""

from __future__ import annotations

import asyncio
import concurrent.futures
import http.client
import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from turnout.spend.ledger_store import LedgerStore
from turnout.storage.database import Database

from support.batch_upstream import COMPLETION_TOKENS, PROMPT_TOKENS, BatchUpstream
from support.databases import (
    PG_HOST,
    PG_USER,
    create_postgres_database,
    drop_postgres_database,
    ledger_rows,
)
from support.gateway import MASTER_KEY, UPSTREAM_KEY, Gateway, settings_for

# per 1M tokens: standard 2.00 / 8.00 USD, batch 1.00 / 4.00 USD (1 and 4 micro-dollars a token)
PRICE = {"input": "2.00", "output": "8.00", "service_tiers": {"batch": {"input": "1.00", "output": "4.00"}}}
LINES = 3


@pytest.fixture
def provider() -> Iterator[BatchUpstream]:
    server = BatchUpstream(UPSTREAM_KEY).start()
    yield server
    server.stop()


def _doc(provider: BatchUpstream) -> dict[str, Any]:
    return {
        "providers": {"oa": {"type": "openai", "base_url": provider.base_url, "api_key": "env:UPSTREAM_KEY"}},
        "models": {"cheap": {"provider": "oa", "model": "gpt-4o-mini-2024-07-18", "price": PRICE}},
    }


@pytest.fixture
def gateway(provider: BatchUpstream, start_gateway: Callable[..., Gateway]) -> Gateway:
    return start_gateway(_doc(provider), {"UPSTREAM_KEY": UPSTREAM_KEY})


def _admin(gateway: Gateway, path: str, **body: Any) -> dict[str, Any]:
    answer = httpx.post(
        gateway.root_url + path, json=body, headers={"authorization": f"Bearer {MASTER_KEY}"}, timeout=10
    )
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def _key(gateway: Gateway, **fields: Any) -> str:
    return str(_admin(gateway, "/admin/keys", name="batcher", **fields)["key"])


def _sdk(gateway: Gateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url, api_key=key, max_retries=0, timeout=30)


def _jsonl(lines: int = LINES, model: str = "cheap", max_tokens: int = 100) -> bytes:
    rows = [
        {
            "custom_id": f"task-{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {
                "model": model,
                "messages": [{"role": "user", "content": f"Say {i}"}],
                "max_tokens": max_tokens,
            },
        }
        for i in range(lines)
    ]
    return ("\n".join(json.dumps(r) for r in rows) + "\n").encode()


def _upload_and_create(client: openai.OpenAI, content: bytes | None = None) -> str:
    uploaded = client.files.create(file=("tasks.jsonl", io.BytesIO(content or _jsonl())), purpose="batch")
    batch = client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    assert batch.status == "validating"
    return batch.id


def _batch_rows(data_dir: Path) -> list[dict[str, Any]]:
    return [r for r in ledger_rows(data_dir) if r["api"] == "batch"]


BATCH_COST = LINES * (PROMPT_TOKENS * 1 + COMPLETION_TOKENS * 4)  # micro-dollars, at batch rates


def test_a_batch_runs_through_turnout_and_is_accounted_once_at_batch_prices(
    gateway: Gateway, provider: BatchUpstream, tmp_path: Path
) -> None:
    key = _key(gateway)
    with _sdk(gateway, key) as client:
        uploaded = client.files.create(file=("tasks.jsonl", io.BytesIO(_jsonl())), purpose="batch")
        (sent,) = provider.requests
        assert (sent.method, sent.path) == ("POST", "/v1/files")
        assert sent.headers["Authorization"] == f"Bearer {UPSTREAM_KEY}"  # the provider's, never the client's
        assert key.encode() not in sent.body and key not in str(sent.headers)
        stored = provider.files[uploaded.id][1].decode().splitlines()
        assert [json.loads(line)["body"]["model"] for line in stored] == ["gpt-4o-mini-2024-07-18"] * LINES
        assert client.files.retrieve(uploaded.id).purpose == "batch"
        assert [f.id for f in client.files.list()] == [uploaded.id]

        batch = client.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        assert client.batches.retrieve(batch.id).status == "validating"
        provider.finish(batch.id)
        done = client.batches.retrieve(batch.id)
        assert done.status == "completed" and done.output_file_id is not None
        output = client.files.content(done.output_file_id).text.splitlines()
        assert [json.loads(line)["custom_id"] for line in output] == ["task-0", "task-1", "task-2"]
        assert [b.id for b in client.batches.list()] == [batch.id]
        listed = [f.id for f in client.files.list()]  # the output file joined its owner's files
        assert listed == [done.output_file_id, uploaded.id]
        assert [f.id for f in client.files.list(purpose="batch")] == [uploaded.id]
        client.batches.retrieve(batch.id)  # read again: accounted already
    _poll(gateway).result(30)  # the periodic round finds it accounted already
    gateway.stop()
    (row,) = _batch_rows(tmp_path / "data0")
    assert (row["alias"], row["provider"], row["model"], row["service_tier"]) == (
        "cheap",
        "oa",
        "gpt-4o-mini-2024-07-18",
        "batch",
    )
    assert (row["input_tokens"], row["output_tokens"]) == (LINES * PROMPT_TOKENS, LINES * COMPLETION_TOKENS)
    assert row["cost_micros"] == BATCH_COST  # half the standard rates


def test_a_batch_over_the_keys_budget_is_refused_before_the_provider_hears_of_it(
    gateway: Gateway, provider: BatchUpstream
) -> None:
    # three lines of up to 1000 output tokens at 4 micro-dollars each: 12,000 micro-dollars at most
    key = _key(gateway, max_budget="0.01")
    with _sdk(gateway, key) as client:
        uploaded = client.files.create(
            file=("big.jsonl", io.BytesIO(_jsonl(max_tokens=1000))), purpose="batch"
        )
        with pytest.raises(openai.RateLimitError) as refused:
            client.batches.create(
                input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
            )
    assert refused.value.code == "insufficient_quota"
    assert "budget" in refused.value.message
    assert [s.path for s in provider.requests] == ["/v1/files"]


def test_another_team_cannot_see_read_or_cancel_a_batch_or_its_files(
    gateway: Gateway, provider: BatchUpstream
) -> None:
    red = _admin(gateway, "/admin/teams", name="red")["id"]
    blue = _admin(gateway, "/admin/teams", name="blue")["id"]
    owner, teammate, other = (
        _key(gateway, team_id=red),
        _key(gateway, team_id=red),
        _key(gateway, team_id=blue),
    )
    with _sdk(gateway, owner) as client:
        batch_id = _upload_and_create(client)
        file_id = client.batches.retrieve(batch_id).input_file_id
    with _sdk(gateway, teammate) as client:
        assert client.batches.retrieve(batch_id).id == batch_id  # the owner's team sees it
    with _sdk(gateway, other) as client:
        with pytest.raises(openai.NotFoundError):
            client.batches.retrieve(batch_id)
        with pytest.raises(openai.NotFoundError):
            client.batches.cancel(batch_id)
        with pytest.raises(openai.NotFoundError):
            client.files.retrieve(file_id)
        with pytest.raises(openai.NotFoundError):
            client.files.content(file_id)
        with pytest.raises(openai.NotFoundError):
            client.files.delete(file_id)
        with pytest.raises(openai.NotFoundError):
            client.batches.create(
                input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
            )
        assert list(client.batches.list()) == []
        assert list(client.files.list()) == []
    assert provider.batches[batch_id]["status"] == "validating"  # never cancelled
    assert file_id in provider.files


def test_a_cancelled_batch_is_cancelled_on_the_provider(gateway: Gateway, provider: BatchUpstream) -> None:
    with _sdk(gateway, _key(gateway)) as client:
        batch_id = _upload_and_create(client)
        assert client.batches.cancel(batch_id).status == "cancelled"
    assert provider.batches[batch_id]["status"] == "cancelled"


def test_a_key_may_batch_only_the_models_it_may_use(gateway: Gateway, provider: BatchUpstream) -> None:
    client = _sdk(gateway, _key(gateway, models=["other"]))
    with client, pytest.raises(openai.NotFoundError) as refused:
        client.files.create(file=("tasks.jsonl", io.BytesIO(_jsonl())), purpose="batch")
    assert refused.value.code == "model_not_found"
    assert provider.requests == []


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"not json\n", "Line 1 of the file is not valid JSON"),
        (_jsonl() + b"[1, 2]\n", "Line 4 of the file is not a JSON object"),
        (_jsonl(model="other"), "does not exist"),
        (_jsonl(1) + _jsonl(1), "Line 2 of the file repeats the custom_id 'task-0'"),
        (_jsonl(1) + _jsonl(2, model="cheap2")[_jsonl(1).__len__() :], "names another model"),
        (_jsonl(1).replace(b'"POST"', b'"GET"'), "needs 'method': 'POST'"),
        (_jsonl(1).replace(b"/v1/chat/completions", b"/v1/audio/speech"), "needs 'url' to be one of"),
        (_jsonl(1).replace(b'"custom_id"', b'"extra": 1, "custom_id"'), "has unknown fields: extra"),
        (
            _jsonl(1).replace(b'"max_tokens": 100', b'"max_tokens": "lots"'),
            "Line 1 of the file has an invalid body",
        ),
        (b"\n\n", "The file holds no request"),
        (
            _jsonl(1).replace(b'"max_tokens"', b'"api_base": "http://x", "max_tokens"'),
            "'api_base' cannot be set",
        ),
        (
            _jsonl(1).rstrip(b"}\n") + b" " * (4 * 1024 * 1024) + b"}}\n",
            "is longer than 4194304 bytes",
        ),
    ],
)
def test_a_bad_batch_file_is_refused_naming_its_line(
    gateway: Gateway, provider: BatchUpstream, content: bytes, says: str
) -> None:
    client = _sdk(gateway, _key(gateway))
    with client, pytest.raises(openai.APIStatusError) as refused:
        client.files.create(file=("tasks.jsonl", io.BytesIO(content)), purpose="batch")
    assert refused.value.status_code in (400, 404), refused.value.message
    assert says in refused.value.message
    assert provider.requests == []


def _post_raw(gateway: Gateway, key: str, body: bytes, content_type: str) -> httpx.Response:
    return httpx.post(
        gateway.base_url + "/files",
        content=body,
        headers={"authorization": f"Bearer {key}", "content-type": content_type},
        timeout=30,
    )


def _form(boundary: str, *parts: tuple[str, str | None, bytes]) -> bytes:
    out = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


@pytest.mark.parametrize(
    ("content_type", "body", "status", "says"),
    [
        ("application/json", b"{}", 415, "multipart/form-data"),
        ("multipart/form-data", b"", 400, "boundary must be 1-70 characters"),
        ("multipart/form-data; boundary=" + "b" * 71, b"", 400, "boundary must be 1-70 characters"),
        ("multipart/form-data; boundary=xx", b"--yy\r\n", 400, "does not contain its boundary"),
        (
            "multipart/form-data; boundary=xx",
            b'--xx\r\nContent-Disposition: form-data; name="a"\r\n\r\nunclosed',
            400,
            "not closed by the boundary",
        ),
        (
            "multipart/form-data; boundary=xx",
            _form("xx", *[("purpose", None, b"batch")] * 9),
            400,
            "more than 8 parts",
        ),
        (
            "multipart/form-data; boundary=xx",
            b"--xx\r\n" + b"X-Long: " + b"a" * 9000 + b"\r\n\r\nv\r\n--xx--",
            400,
            "headers are longer than 8192 bytes",
        ),
        (
            "multipart/form-data; boundary=xx",
            _form("xx", ("purpose", None, b"batch")),
            400,
            "needs a 'file' part",
        ),
        (
            "multipart/form-data; boundary=xx",
            _form("xx", ("purpose", None, b"fine-tune"), ("file", "a.jsonl", _jsonl())),
            400,
            "files for batches only",
        ),
        (
            "multipart/form-data; boundary=xx",
            _form("xx", ("purpose", None, b"batch"), ("file", "a.jsonl", _jsonl()), ("sneaky", None, b"1")),
            400,
            "Unrecognized form field: 'sneaky'",
        ),
    ],
)
def test_a_malformed_upload_is_refused_in_openais_error_shape(
    gateway: Gateway, provider: BatchUpstream, content_type: str, body: bytes, status: int, says: str
) -> None:
    answer = _post_raw(gateway, _key(gateway), body, content_type)
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert says in error["message"] and error["type"] == "invalid_request_error"
    assert provider.requests == []


def test_an_oversize_upload_is_refused_with_413_unread(gateway: Gateway, provider: BatchUpstream) -> None:
    key = _key(gateway)
    connection = http.client.HTTPConnection("127.0.0.1", httpx.URL(gateway.root_url).port, timeout=30)
    try:
        connection.putrequest("POST", "/v1/files")
        connection.putheader("authorization", f"Bearer {key}")
        connection.putheader("content-type", "multipart/form-data; boundary=xx")
        connection.putheader("content-length", str(64 * 1024 * 1024 + 1))  # one byte over the limit
        connection.endheaders(b"--xx\r\n")
        answer = connection.getresponse()
        status, body = answer.status, json.loads(answer.read())
    finally:
        connection.close()
    assert status == 413
    assert body["error"]["code"] == "request_too_large"
    assert provider.requests == []


def _shared_rows(url: str) -> list[dict[str, Any]]:
    async def read() -> list[dict[str, Any]]:
        database = await Database.open(url)
        try:
            return [r for r in await LedgerStore(database).entries() if r["api"] == "batch"]
        finally:
            await database.close()

    return asyncio.run(read())


def _poll(gateway: Gateway) -> concurrent.futures.Future[int]:
    """The batch service's periodic round, run now on the gateway's loop (not waiting a minute)."""
    assert gateway.services.batches is not None and gateway.loop is not None
    return asyncio.run_coroutine_threadsafe(gateway.services.batches.poll(), gateway.loop)


@pytest.fixture(params=["sqlite", "postgres"])
def shared_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database two instances share: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/shared.db"
        return
    name = asyncio.run(create_postgres_database())
    yield f"postgresql+asyncpg://{PG_USER}@{PG_HOST}/{name}"
    asyncio.run(drop_postgres_database(name))


def test_a_finished_batch_is_accounted_once_by_two_instances_and_a_restart(
    provider: BatchUpstream, tmp_path: Path, shared_database: str
) -> None:
    url = shared_database
    doc = {**_doc(provider), "storage": {"database_url": url}}
    environ = {"UPSTREAM_KEY": UPSTREAM_KEY, "TURNOUT_KEY_HASH_SECRET": "shared-secret-of-the-pair"}
    first = Gateway(settings_for(doc, tmp_path / "a", environ)).start()
    second = Gateway(settings_for(doc, tmp_path / "b", environ)).start()
    try:
        key = _key(first)
        with _sdk(first, key) as client:
            batch_id = _upload_and_create(client)
        provider.finish(batch_id)
        polls = [_poll(g) for g in (first, second) for _ in range(3)]  # at once, on both
        with _sdk(second, key) as client:
            assert client.batches.retrieve(batch_id).status == "completed"
        for poll in polls:
            poll.result(30)
    finally:
        second.stop()
        first.stop()
    assert len(_shared_rows(url)) == 1
    restarted = Gateway(settings_for(doc, tmp_path / "a", environ)).start()
    try:
        with _sdk(restarted, key) as client:
            assert client.batches.retrieve(batch_id).status == "completed"
        _poll(restarted).result(30)
    finally:
        restarted.stop()
    (row,) = _shared_rows(url)
    assert row["cost_micros"] == BATCH_COST


def test_an_azure_deployment_gets_its_own_paths_key_header_and_deployment_name(
    provider: BatchUpstream, start_gateway: Callable[..., Gateway]
) -> None:
    azure = {
        "type": "azure",
        "base_url": f"http://127.0.0.1:{provider.port}",
        "api_key": "env:UPSTREAM_KEY",
        "api_version": "2024-10-21",
    }
    doc = {"providers": {"az": azure}, "models": {"cheap": {"provider": "az", "model": "my-mini-deployment"}}}
    gateway = start_gateway(doc, {"UPSTREAM_KEY": UPSTREAM_KEY})
    with _sdk(gateway, _key(gateway)) as client:
        batch_id = _upload_and_create(client)
        assert client.batches.retrieve(batch_id).endpoint == "/v1/chat/completions"  # as the client named it
    upload, create, read = provider.requests
    assert [(s.method, s.path, s.query) for s in (upload, create, read)] == [
        ("POST", "/openai/files", "api-version=2024-10-21"),
        ("POST", "/openai/batches", "api-version=2024-10-21"),
        ("GET", f"/openai/batches/{batch_id}", "api-version=2024-10-21"),
    ]
    assert upload.headers["api-key"] == UPSTREAM_KEY and "Authorization" not in upload.headers
    (file_id,) = provider.files
    lines = [json.loads(line) for line in provider.files[file_id][1].decode().splitlines()]
    assert {(line["url"], line["body"]["model"]) for line in lines} == {
        ("/chat/completions", "my-mini-deployment")
    }
    assert json.loads(create.body)["endpoint"] == "/chat/completions"


def test_a_batchs_reservation_holds_its_budget_until_it_finishes_then_gives_way_to_its_cost(
    gateway: Gateway, provider: BatchUpstream
) -> None:
    # each batch reserves 3 x (29 prompt tokens at 1 + 100 output tokens at 4) = 1,287 micro-dollars
    # and costs 3 x (10 at 1 + 20 at 4) = 270: one fits in 2,000, two do not while both are reserved
    with _sdk(gateway, _key(gateway, max_budget="0.002")) as client:
        uploaded = client.files.create(file=("tasks.jsonl", io.BytesIO(_jsonl())), purpose="batch")
        asked = {"input_file_id": uploaded.id, "endpoint": "/v1/chat/completions", "completion_window": "24h"}
        first = client.batches.create(**asked)
        with pytest.raises(openai.RateLimitError):
            client.batches.create(**asked)
        provider.finish(first.id)
        assert client.batches.retrieve(first.id).status == "completed"  # accounted: 270 spent
        second = client.batches.create(**asked)
    assert second.id != first.id and len(provider.batches) == 2


def test_a_batch_the_provider_fails_to_create_holds_none_of_the_budget(
    gateway: Gateway, provider: BatchUpstream
) -> None:
    # a batch reserves 1,287 micro-dollars: one fits in 2,000, two do not, so the second creation
    # is accepted only if the failed one gave its reservation back
    with _sdk(gateway, _key(gateway, max_budget="0.002")) as client:
        uploaded = client.files.create(file=("tasks.jsonl", io.BytesIO(_jsonl())), purpose="batch")
        asked = {"input_file_id": uploaded.id, "endpoint": "/v1/chat/completions", "completion_window": "24h"}
        provider.failed_creations = 1
        with pytest.raises(openai.InternalServerError):
            client.batches.create(**asked)
        batch = client.batches.create(**asked)
        assert [b.id for b in client.batches.list()] == [batch.id]  # the failed one was never recorded
    assert list(provider.batches) == [batch.id]


def test_a_gateway_stopped_while_it_reads_a_finished_batch_leaves_it_to_the_next_once(
    provider: BatchUpstream, tmp_path: Path
) -> None:
    """The poll reads the batch's output when the gateway stops: nothing is recorded, and the
    gateway started again accounts the batch, once."""
    data = tmp_path / "data"
    environ = {"UPSTREAM_KEY": UPSTREAM_KEY}
    first = Gateway(settings_for(_doc(provider), data, environ)).start()
    try:
        key = _key(first)
        with _sdk(first, key) as client:
            batch_id = _upload_and_create(client)
        provider.finish(batch_id)
        provider.hold_downloads()
        polling = _poll(first)
        assert provider.download_held.wait(30)  # mid-poll: the output is being read
    finally:
        first.stop()
        provider.release_downloads()
    assert polling.cancelled() or polling.done()
    assert _batch_rows(data) == []
    again = Gateway(settings_for(_doc(provider), data, environ)).start()
    try:
        assert _poll(again).result(30) == 1
        assert _poll(again).result(30) == 0  # accounted: nothing left to ask about
    finally:
        again.stop()
    (row,) = _batch_rows(data)
    assert row["cost_micros"] == BATCH_COST


def test_a_batch_file_larger_than_the_request_limit_uploads_within_its_own(
    provider: BatchUpstream, start_gateway: Callable[..., Gateway]
) -> None:
    doc = {**_doc(provider), "server": {"max_request_bytes": "1MiB"}}
    gateway = start_gateway(doc, {"UPSTREAM_KEY": UPSTREAM_KEY})
    content = _jsonl(12000)  # about 2 MiB
    assert len(content) > 1024 * 1024
    with _sdk(gateway, _key(gateway)) as client:
        uploaded = client.files.create(file=("big.jsonl", io.BytesIO(content)), purpose="batch")
    assert len(provider.files[uploaded.id][1].splitlines()) == 12000


def test_creating_a_batch_counts_as_a_request_against_the_keys_rate_limit(
    gateway: Gateway, provider: BatchUpstream
) -> None:
    with _sdk(gateway, _key(gateway, limits={"rpm": 1})) as client:
        uploaded = client.files.create(file=("tasks.jsonl", io.BytesIO(_jsonl())), purpose="batch")
        asked = {"input_file_id": uploaded.id, "endpoint": "/v1/chat/completions", "completion_window": "24h"}
        client.batches.create(**asked)
        with pytest.raises(openai.RateLimitError) as refused:
            client.batches.create(**asked)
    assert refused.value.code == "rate_limit_exceeded"
    assert len(provider.batches) == 1


def test_a_deployment_priced_without_batch_rates_is_charged_its_standard_rates_with_a_warning(
    provider: BatchUpstream,
    start_gateway: Callable[..., Gateway],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    doc = _doc(provider)
    doc["models"]["cheap"]["price"] = {"input": "2.00", "output": "8.00"}  # no service_tiers.batch
    gateway = start_gateway(doc, {"UPSTREAM_KEY": UPSTREAM_KEY})
    with _sdk(gateway, _key(gateway)) as client:
        batch_id = _upload_and_create(client)
        provider.finish(batch_id)
        client.batches.retrieve(batch_id)
    gateway.stop()
    assert "has no batch rates (service_tiers.batch)" in caplog.text
    (row,) = _batch_rows(tmp_path / "data0")
    assert row["cost_micros"] == LINES * (PROMPT_TOKENS * 2 + COMPLETION_TOKENS * 8)
