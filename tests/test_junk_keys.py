"""A key that cannot be a turnout key (wrong prefix, wrong length, a character a generated key never
has) is refused 401 without asking the database about it; a key of the right shape that this
instance does not know is still looked up (it may have been issued on another instance). The
statements are watched at the gateway's own database engine."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
import sqlalchemy as sa

from support.gateway import MASTER_KEY, Gateway

VALID_TAIL = secrets.token_urlsafe(32)  # 43 characters, as a generated key has
JUNK = [
    pytest.param("sk-proj-" + VALID_TAIL, id="another-vendors-prefix"),
    pytest.param("sk-turnout" + VALID_TAIL, id="prefix-without-its-dash"),
    pytest.param("SK-TURNOUT-" + VALID_TAIL, id="prefix-in-capitals"),
    pytest.param("sk-turnout-" + VALID_TAIL[:-1], id="one-character-short"),
    pytest.param("sk-turnout-" + VALID_TAIL + "A", id="one-character-long"),
    pytest.param("sk-turnout-" + VALID_TAIL[:-1] + "=", id="base64-padding"),
    pytest.param("sk-turnout-" + VALID_TAIL[:-1] + "+", id="not-url-safe"),
    pytest.param("sk-turnout-" + VALID_TAIL[:-1] + "\u00e9", id="not-ascii"),
    pytest.param("x" * 500, id="long-junk"),
    pytest.param("Bearer", id="a-word"),
]


class KeyLookups:
    """Every statement the gateway's engine runs that carries a given key's hash as a parameter."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.engine = gateway.services.database.engine.sync_engine
        self.parameters: list[Any] = []
        self._lock = threading.Lock()
        sa.event.listen(self.engine, "before_cursor_execute", self._seen)

    def _seen(self, conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        with self._lock:
            self.parameters.append(parameters)

    def of(self, key: str) -> int:
        key_hash = self.gateway.services.keys.hash(key)
        with self._lock:
            return sum(1 for p in self.parameters if key_hash in _values(p))

    def close(self) -> None:
        sa.event.remove(self.engine, "before_cursor_execute", self._seen)


def _values(parameters: Any) -> list[Any]:
    if isinstance(parameters, dict):
        return list(parameters.values())
    if isinstance(parameters, list | tuple):
        return [v for p in parameters for v in (_values(p) if isinstance(p, list | tuple | dict) else [p])]
    return [parameters]


@pytest.fixture
def lookups(gateway: Gateway) -> Iterator[KeyLookups]:
    watcher = KeyLookups(gateway)
    yield watcher
    watcher.close()


def _chat(gateway: Gateway, key: str) -> openai.AuthenticationError:
    with (
        openai.OpenAI(base_url=gateway.base_url, api_key=key, max_retries=0, timeout=20) as client,
        pytest.raises(openai.AuthenticationError) as refused,
    ):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    return refused.value


def test_a_key_of_the_right_shape_is_looked_up_in_the_store(gateway: Gateway, lookups: KeyLookups) -> None:
    unknown = "sk-turnout-" + secrets.token_urlsafe(32)  # what another instance might have issued
    assert _chat(gateway, unknown).code == "invalid_api_key"
    assert lookups.of(unknown) == 1  # the watcher sees the lookup a real key gets


@pytest.mark.parametrize("junk", JUNK)
def test_a_junk_key_is_refused_without_a_query(gateway: Gateway, lookups: KeyLookups, junk: str) -> None:
    auth = {"authorization": b"Bearer " + junk.encode("latin-1")}  # (the SDK sends ASCII only)
    if junk.isascii():
        refused = _chat(gateway, junk)
        assert refused.status_code == 401 and refused.code == "invalid_api_key"
        error = refused.body
    else:
        chat = httpx.post(f"{gateway.base_url}/chat/completions", headers=auth, json={"model": "gpt-4o"})
        assert chat.status_code == 401
        error = chat.json()["error"]
    assert error == {
        "message": "Incorrect API key provided.",
        "type": "invalid_request_error",
        "param": None,
        "code": "invalid_api_key",
    }
    admin = httpx.get(f"{gateway.root_url}/admin/keys", headers=auth)
    assert admin.status_code == 401 and admin.json()["error"]["code"] == "invalid_api_key"
    assert lookups.of(junk) == 0
    assert junk not in admin.text


def test_the_master_key_and_issued_keys_still_work(gateway: Gateway, lookups: KeyLookups) -> None:
    created = httpx.post(
        f"{gateway.root_url}/admin/keys",
        headers={"authorization": f"Bearer {MASTER_KEY}"},
        json={"name": "shape"},
        timeout=20,
    )
    assert created.status_code == 200, created.text
    for key in (MASTER_KEY, created.json()["key"]):  # the master key need not have the shape
        with openai.OpenAI(base_url=gateway.base_url, api_key=key, max_retries=0, timeout=20) as client:
            assert client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
            ).choices
