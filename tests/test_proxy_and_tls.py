"""Providers behind TLS with a private CA, and reached through an egress HTTP proxy (CONNECT for
https, absolute-form for http), configured or taken from HTTPS_PROXY / HTTP_PROXY / NO_PROXY."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import trustme

from turnout.config.loader import ConfigError
from turnout.config.proxies import bypasses
from turnout.providers.config_loader import build_settings

from support.gateway import MASTER_KEY, UPSTREAM_KEY, Gateway
from support.proxy import ForwardProxy
from support.upstream import Upstream

PROXY_USER, PROXY_PASSWORD = "proxy-user", "proxy-pass-8c1f3a"
USER = [{"role": "user", "content": "Hello!"}]


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture
def https_upstream(ca: trustme.CA) -> Iterator[Upstream]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    server = Upstream(ssl_context=context).start()
    yield server
    server.stop()


@pytest.fixture
def proxy() -> Iterator[ForwardProxy]:
    server = ForwardProxy(credentials=(PROXY_USER, PROXY_PASSWORD)).start()
    yield server
    server.stop()


@pytest.fixture
def open_proxy() -> Iterator[ForwardProxy]:
    server = ForwardProxy().start()
    yield server
    server.stop()


def _doc(base_url: str, **provider: Any) -> dict[str, Any]:
    return {
        "providers": {
            "up": {
                "type": "openai_compatible",
                "base_url": base_url,
                "api_key": "env:UPSTREAM_KEY",
                **provider,
            }
        },
        "models": {"gpt-4o": {"provider": "up", "model": "gpt-4o-2024-08-06"}},
    }


def _chat(gateway: Gateway, stream: bool = False) -> str:
    with openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=20) as client:
        if stream:
            chunks = client.chat.completions.create(model="gpt-4o", messages=USER, stream=True)
            return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        return client.chat.completions.create(model="gpt-4o", messages=USER).choices[0].message.content or ""


def test_an_https_provider_with_its_own_ca(
    https_upstream: Upstream, ca_file: Path, start_gateway: Callable[..., Gateway]
) -> None:
    gateway = start_gateway(
        _doc(https_upstream.base_url, tls_ca_file=str(ca_file)), {"UPSTREAM_KEY": UPSTREAM_KEY}
    )
    assert _chat(gateway) == "Hello! How can I assist you today?"
    assert _chat(gateway, stream=True) == "Hello! How can I assist you today?"
    assert https_upstream.requests[0].headers["authorization"] == f"Bearer {UPSTREAM_KEY}"


def test_an_untrusted_certificate_is_refused(
    https_upstream: Upstream, start_gateway: Callable[..., Gateway]
) -> None:
    gateway = start_gateway(_doc(https_upstream.base_url), {"UPSTREAM_KEY": UPSTREAM_KEY})
    with pytest.raises(openai.InternalServerError) as caught:
        _chat(gateway)
    assert caught.value.status_code == 502
    assert caught.value.code == "upstream_connection_error"
    assert "certificate" in caught.value.message
    assert https_upstream.requests == []


def test_https_through_a_connect_proxy_with_credentials(
    https_upstream: Upstream, ca_file: Path, proxy: ForwardProxy, start_gateway: Callable[..., Gateway]
) -> None:
    url = f"http://{PROXY_USER}:{PROXY_PASSWORD}@127.0.0.1:{proxy.port}"
    doc = _doc(https_upstream.base_url, tls_ca_file=str(ca_file), proxy="env:EGRESS_PROXY")
    gateway = start_gateway(doc, {"UPSTREAM_KEY": UPSTREAM_KEY, "EGRESS_PROXY": url})
    assert _chat(gateway) == "Hello! How can I assist you today?"
    assert _chat(gateway, stream=True) == "Hello! How can I assist you today?"
    assert proxy.asked[0].method == "CONNECT"
    assert proxy.asked[0].target == f"localhost:{https_upstream.port}"
    assert proxy.asked[0].authorization is not None
    assert proxy.asked[0].authorization.startswith("Basic ")
    assert all("proxy-authorization" not in r.headers for r in https_upstream.requests)  # inside the tunnel
    assert PROXY_PASSWORD not in repr(gateway.settings)


def test_wrong_proxy_credentials_are_a_502_that_leaks_nothing(
    https_upstream: Upstream, ca_file: Path, proxy: ForwardProxy, start_gateway: Callable[..., Gateway]
) -> None:
    url = f"http://{PROXY_USER}:not-the-password-77@127.0.0.1:{proxy.port}"
    doc = _doc(https_upstream.base_url, tls_ca_file=str(ca_file), proxy="env:EGRESS_PROXY")
    gateway = start_gateway(doc, {"UPSTREAM_KEY": UPSTREAM_KEY, "EGRESS_PROXY": url})
    with openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0) as client:
        raw = client.chat.completions.with_raw_response
        with pytest.raises(openai.InternalServerError) as caught:
            raw.create(model="gpt-4o", messages=USER)
    assert caught.value.status_code == 502
    assert "proxy credentials" in caught.value.message
    body = caught.value.response.text
    assert "not-the-password-77" not in body
    assert PROXY_USER not in body
    assert https_upstream.requests == []


def test_plain_http_through_a_forward_proxy(
    upstream: Upstream, open_proxy: ForwardProxy, start_gateway: Callable[..., Gateway]
) -> None:
    gateway = start_gateway(_doc(upstream.base_url, proxy=open_proxy.url), {"UPSTREAM_KEY": UPSTREAM_KEY})
    assert _chat(gateway) == "Hello! How can I assist you today?"
    assert open_proxy.asked[0].method == "POST"
    assert open_proxy.asked[0].target == f"{upstream.root_url}/v1/chat/completions"
    assert upstream.requests[0].path == "/v1/chat/completions"


def test_the_environment_chooses_the_proxy_unless_told_otherwise(tmp_path: Path) -> None:
    def proxy_of(base_url: str, environ: dict[str, str], **provider: Any) -> Any:
        doc = {
            **_doc(base_url, **provider),
            "storage": {"data_dir": str(tmp_path)},
            "spend": {"unknown_prices": "record"},
        }
        return build_settings(doc, {"UPSTREAM_KEY": "k", **environ}, source="test").providers["up"].proxy

    env = {"HTTPS_PROXY": "http://egress.corp:3128", "HTTP_PROXY": "http://plain.corp:8080"}
    found = proxy_of("https://api.example.com/v1", env)
    assert (found.host, found.port, found.authorization) == ("egress.corp", 3128, None)
    assert proxy_of("http://vllm.internal:8000/v1", env).host == "plain.corp"
    assert proxy_of("https://api.example.com/v1", {**env, "NO_PROXY": "localhost,.example.com"}) is None
    assert proxy_of("https://api.example.com/v1", env, proxy="none") is None
    assert proxy_of("https://api.example.com/v1", {}) is None
    with_credentials = proxy_of(
        "https://api.example.com/v1", {"HTTPS_PROXY": "http://u:p%40ss@egress.corp:3128"}
    )
    assert with_credentials.authorization.reveal() == "Basic dTpwQHNz"  # base64("u:p@ss")
    assert "p@ss" not in repr(with_credentials)


@pytest.mark.parametrize(
    ("provider", "message"),
    [
        ({"proxy": "http://user:secret-pw@egress.corp:3128"}, "providers.up.proxy: holds credentials"),
        ({"proxy": "https://egress.corp:3128"}, "providers.up.proxy: must be an http:// proxy URL"),
        ({"tls_ca_file": "/nonexistent/ca.pem"}, "providers.up.tls_ca_file: no such file"),
    ],
)
def test_proxy_and_tls_mistakes_name_their_path(
    provider: dict[str, str], message: str, tmp_path: Path
) -> None:
    doc = {**_doc("https://api.example.com/v1", **provider), "storage": {"data_dir": str(tmp_path)}}
    with pytest.raises(ConfigError) as caught:
        build_settings(doc, {"UPSTREAM_KEY": "k"}, source="test")
    assert any(p.startswith(message) for p in caught.value.problems), caught.value.problems
    assert "secret-pw" not in str(caught.value)


@pytest.mark.parametrize(
    ("host", "no_proxy", "bypassed"),
    [
        ("api.openai.com", "*", True),
        ("api.openai.com", "openai.com", True),
        ("api.openai.com", ".openai.com", True),
        ("openai.com", ".openai.com", True),
        ("api.openai.com", "ai.com", False),
        ("api.openai.com", "openai.com:443", True),
        ("10.1.2.3", "10.0.0.0/8", True),
        ("11.1.2.3", "10.0.0.0/8", False),
        ("localhost", "example.com, localhost", True),
        ("api.groq.com", "", False),
    ],
)
def test_no_proxy_matching(host: str, no_proxy: str, bypassed: bool) -> None:
    assert bypasses(host, no_proxy) is bypassed
