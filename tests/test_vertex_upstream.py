"""Vertex AI as an upstream: the official `openai` SDK against turnout against a real HTTP server on
127.0.0.1 answering with the Gemini API's shapes at Vertex AI's paths, and a second one playing
Google's OAuth2 token endpoint, which checks each service-account JWT's signature and claims."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import urllib.parse
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai
import pytest
from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from turnout.config.loader import ConfigError
from turnout.providers.config_loader import build_settings

from support.gateway import MASTER_KEY, UPSTREAM_KEY, Gateway, settings_for
from support.spec import validate_openai
from support.upstream import Upstream, fixture_bytes, sse_events

PROJECT = "acme-prod-123"
MODEL = "gemini-2.5-flash"
EMAIL = "turnout@acme-prod-123.iam.gserviceaccount.com"
SCOPE = "https://www.googleapis.com/auth/cloud-platform"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
USER = [{"role": "user", "content": "Explain how AI works"}]


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class TokenEndpoint(Upstream):
    """Google's token endpoint: `POST /token` with a JWT-bearer grant signed by the service
    account's key. Issues `tok-1`, `tok-2`, ... valid for `expires_in` seconds; answers a bad
    signature as Google does (400 invalid_grant)."""

    public_key: Any = None
    expires_in: int = 3600
    claims: list[dict[str, Any]] = field(default_factory=list)

    async def _default(self, request: web.Request, body: bytes) -> web.StreamResponse:
        form = urllib.parse.parse_qs(body.decode())
        if request.path != "/token" or form.get("grant_type") != [JWT_BEARER]:
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        head, payload, signature = form["assertion"][0].split(".")
        try:
            self.public_key.verify(
                _b64url(signature), f"{head}.{payload}".encode(), padding.PKCS1v15(), hashes.SHA256()
            )
        except InvalidSignature:
            return web.json_response(
                {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}, status=400
            )
        assert json.loads(_b64url(head))["alg"] == "RS256"
        self.claims.append(json.loads(_b64url(payload)))
        token = f"tok-{len(self.claims)}"
        return web.json_response(
            {"access_token": token, "expires_in": self.expires_in, "token_type": "Bearer"}
        )


@pytest.fixture(scope="module")
def private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def token_endpoint(private_key: rsa.RSAPrivateKey) -> Iterator[TokenEndpoint]:
    server = TokenEndpoint(public_key=private_key.public_key()).start()
    yield server
    server.stop()


def write_key_file(path: Path, key: rsa.RSAPrivateKey, token_uri: str, **fields: Any) -> Path:
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    info = {
        "type": "service_account",
        "project_id": PROJECT,
        "private_key_id": "0123456789abcdef",
        "private_key": pem,
        "client_email": EMAIL,
        "client_id": "1234567890",
        "token_uri": token_uri,
        **fields,
    }
    path.write_text(json.dumps({k: v for k, v in info.items() if v is not None}))
    return path


@pytest.fixture
def key_file(tmp_path: Path, private_key: rsa.RSAPrivateKey, token_endpoint: TokenEndpoint) -> Path:
    return write_key_file(tmp_path / "sa.json", private_key, f"{token_endpoint.root_url}/token")


def vertex_doc(base_url: str | None, **vertex: Any) -> dict[str, Any]:
    provider: dict[str, Any] = {"type": "vertex", "vertex": vertex}
    if base_url is not None:
        provider["base_url"] = base_url
    return {
        "routing": {
            "retries": {"attempts": 1},
            "breaker": {"consecutive_failures": 10000, "min_requests": 10000},
        },
        "providers": {"vertex": provider},
        "models": {
            "gemini": {"provider": "vertex", "model": MODEL},
            "embed-005": {"provider": "vertex", "model": "text-embedding-005"},
            "embed-gemini": {"provider": "vertex", "model": "gemini-embedding-001"},
            "vertex/*": {"provider": "vertex", "model": "*"},
        },
    }


@pytest.fixture
def gateway(upstream: Upstream, key_file: Path, start_gateway: Callable[..., Gateway]) -> Gateway:
    return start_gateway(vertex_doc(upstream.base_url, credentials_file=str(key_file)))


@pytest.fixture
def client(gateway: Gateway) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=20) as c:
        yield c


def reply(upstream: Upstream, name: str = "generate_content.json", times: int = 1) -> None:
    upstream.reply_json(fixture_bytes(name, "gemini"), times=times)


def models_path(model: str, method: str, location: str = "us-central1") -> str:
    return f"/v1/projects/{PROJECT}/locations/{location}/publishers/google/models/{model}:{method}"


# ----------------------------------------------------------------------------- chat


def test_a_plain_answer_goes_to_the_project_path_with_a_fresh_token(
    upstream: Upstream, token_endpoint: TokenEndpoint, key_file: Path, client: openai.OpenAI
) -> None:
    reply(upstream)
    raw = client.chat.completions.with_raw_response.create(model="gemini", messages=USER, max_tokens=50)
    validate_openai("CreateChatCompletionResponse", json.loads(raw.content))
    completion = raw.parse()
    assert completion.choices[0].message.content == "AI learns patterns from data."
    request = upstream.requests[-1]
    assert request.path == models_path(MODEL, "generateContent")
    assert request.headers["authorization"] == "Bearer tok-1"
    assert "x-goog-api-key" not in request.headers
    assert request.json["generationConfig"] == {"maxOutputTokens": 50}
    # The exchange: a JWT signed with the account's key (checked by the endpoint), for Vertex's scope.
    [claims] = token_endpoint.claims
    assert claims["iss"] == EMAIL and claims["scope"] == SCOPE
    assert claims["aud"] == "https://oauth2.googleapis.com/token"  # google-auth's audience, wherever it posts
    assert claims["exp"] - claims["iat"] == 3600


def test_a_stream(upstream: Upstream, client: openai.OpenAI) -> None:
    upstream.reply_sse(sse_events("stream.sse", "gemini"))
    chunks = list(
        client.chat.completions.create(
            model="gemini", messages=USER, stream=True, stream_options={"include_usage": True}
        )
    )
    for chunk in chunks:
        validate_openai("CreateChatCompletionStreamResponse", chunk.model_dump(exclude_unset=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "AI learns patterns from data."
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 6
    request = upstream.requests[-1]
    assert request.path == models_path(MODEL, "streamGenerateContent") and request.query == {"alt": "sse"}
    assert request.headers["authorization"] == "Bearer tok-1"


def test_one_exchange_serves_many_requests_even_concurrent_ones(
    upstream: Upstream, token_endpoint: TokenEndpoint, client: openai.OpenAI
) -> None:
    reply(upstream, times=11)

    def ask(_: int) -> str | None:
        return client.chat.completions.create(model="gemini", messages=USER).choices[0].message.content

    with ThreadPoolExecutor(8) as pool:  # all before any token exists: one refresh, the rest wait
        assert len(set(pool.map(ask, range(8)))) == 1
    for i in range(3):
        ask(i)
    assert len(token_endpoint.claims) == 1
    assert {r.headers["authorization"] for r in upstream.requests} == {"Bearer tok-1"}
    assert len(upstream.requests) == 11


def test_a_token_close_to_its_expiry_is_replaced(
    upstream: Upstream, token_endpoint: TokenEndpoint, client: openai.OpenAI
) -> None:
    # 300 s is the refresh margin: the first token is already due for replacement when it arrives
    # (the request that asked for it still uses it).
    token_endpoint.expires_in = 300
    reply(upstream, times=3)
    client.chat.completions.create(model="gemini", messages=USER)
    token_endpoint.expires_in = 3600
    client.chat.completions.create(model="gemini", messages=USER)
    client.chat.completions.create(model="gemini", messages=USER)
    assert [r.headers["authorization"] for r in upstream.requests] == [
        "Bearer tok-1",
        "Bearer tok-2",
        "Bearer tok-2",
    ]
    assert len(token_endpoint.claims) == 2


def test_a_token_vertex_refuses_is_replaced_on_the_next_request(
    upstream: Upstream, token_endpoint: TokenEndpoint, client: openai.OpenAI
) -> None:
    upstream.reply_json(
        {
            "error": {
                "code": 401,
                "message": "Request had invalid authentication credentials.",
                "status": "UNAUTHENTICATED",
            }
        },
        401,
    )
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="gemini", messages=USER)
    assert caught.value.status_code == 502
    reply(upstream)
    client.chat.completions.create(model="gemini", messages=USER)
    assert upstream.requests[-1].headers["authorization"] == "Bearer tok-2"


def test_a_refused_service_account_is_an_upstream_auth_error(
    tmp_path: Path, upstream: Upstream, token_endpoint: TokenEndpoint, start_gateway: Callable[..., Gateway]
) -> None:
    # A key the token endpoint does not know: the JWT's signature does not verify.
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_file = write_key_file(tmp_path / "other.json", stranger, f"{token_endpoint.root_url}/token")
    gateway = start_gateway(vertex_doc(upstream.base_url, credentials_file=str(key_file)))
    with openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=20) as client:
        for _ in range(2):  # and the gateway keeps serving
            with pytest.raises(openai.APIStatusError) as caught:
                client.chat.completions.create(model="gemini", messages=USER)
            error = caught.value
            assert error.status_code == 502 and isinstance(error.body, dict)
            assert error.body["code"] == "upstream_auth_error"
            message = error.body["message"]
            assert "invalid_grant" in message and "'vertex'" in message
            assert "PRIVATE KEY" not in message and "eyJ" not in message and "Invalid JWT" not in message
    assert upstream.requests == []
    assert len(token_endpoint.requests) == 2


def test_the_global_location(
    upstream: Upstream, key_file: Path, start_gateway: Callable[..., Gateway]
) -> None:
    settings = settings_for(
        vertex_doc(None, credentials_file=str(key_file), location="global"), key_file.parent
    )
    assert settings.providers["vertex"].base_url == "https://aiplatform.googleapis.com/v1"
    regional = settings_for(
        vertex_doc(None, credentials_file=str(key_file), location="europe-west4"), key_file.parent
    )
    assert regional.providers["vertex"].base_url == "https://europe-west4-aiplatform.googleapis.com/v1"
    gateway = start_gateway(vertex_doc(upstream.base_url, credentials_file=str(key_file), location="global"))
    reply(upstream)
    with openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=20) as client:
        client.chat.completions.create(model="gemini", messages=USER)
    assert upstream.requests[-1].path == models_path(MODEL, "generateContent", "global")


def test_express_mode_sends_the_api_key_to_the_global_publisher_path(
    upstream: Upstream, start_gateway: Callable[..., Gateway], tmp_path: Path
) -> None:
    doc = vertex_doc(upstream.base_url)
    doc["providers"]["vertex"] = {
        "type": "vertex",
        "base_url": upstream.base_url,
        "api_key": "env:UPSTREAM_KEY",
    }
    env = {"UPSTREAM_KEY": UPSTREAM_KEY}
    gateway = start_gateway(doc, env)
    reply(upstream)
    with openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=20) as client:
        client.chat.completions.create(model="gemini", messages=USER)
    request = upstream.requests[-1]
    assert request.path == f"/v1/publishers/google/models/{MODEL}:generateContent"
    assert request.headers["x-goog-api-key"] == UPSTREAM_KEY and "authorization" not in request.headers
    del doc["providers"]["vertex"]["base_url"]
    settings = settings_for(doc, tmp_path, env)
    assert settings.providers["vertex"].base_url == "https://aiplatform.googleapis.com/v1"


# ----------------------------------------------------------------------------- embeddings


def _predict_answer(request: web.Request, body: bytes) -> web.Response:
    """Vertex's `:predict` answer, one vector per instance: [its length, 0.5, 0.25]."""
    instances = json.loads(body)["instances"]
    predictions = [
        {
            "embeddings": {
                "values": [float(len(i["content"])), 0.5, 0.25],
                "statistics": {"truncated": False, "token_count": len(i["content"])},
            }
        }
        for i in instances
    ]
    return web.json_response({"predictions": predictions})


def script_predict(upstream: Upstream, times: int) -> None:
    async def action(request: web.Request) -> web.StreamResponse:
        return _predict_answer(request, await request.read())

    upstream.then(action, times)


def test_embeddings_use_predict_in_one_batch(upstream: Upstream, client: openai.OpenAI) -> None:
    script_predict(upstream, 1)
    raw = client.embeddings.with_raw_response.create(
        model="embed-005", input=["one", "three"], dimensions=3, encoding_format="float"
    )
    body = json.loads(raw.content)
    validate_openai("CreateEmbeddingResponse", body)
    assert [d["embedding"] for d in body["data"]] == [[3.0, 0.5, 0.25], [5.0, 0.5, 0.25]]
    assert body["usage"] == {"prompt_tokens": 8, "total_tokens": 8}  # Vertex's own counts
    [request] = upstream.requests
    assert request.path == models_path("text-embedding-005", "predict")
    assert request.headers["authorization"] == "Bearer tok-1"
    assert request.json == {
        "instances": [{"content": "one"}, {"content": "three"}],
        "parameters": {"outputDimensionality": 3},
    }


def test_gemini_embedding_takes_one_text_per_call(upstream: Upstream, client: openai.OpenAI) -> None:
    script_predict(upstream, 3)
    result = client.embeddings.create(model="embed-gemini", input=["a", "bb", "ccc"])
    assert [d.embedding[0] for d in result.data] == [1.0, 2.0, 3.0]  # in input order
    assert result.usage.prompt_tokens == 6
    assert sorted(len(r.json["instances"]) for r in upstream.requests) == [1, 1, 1]
    assert {r.path for r in upstream.requests} == {models_path("gemini-embedding-001", "predict")}


# ----------------------------------------------------------------------------- models, memory


def test_the_model_list_names_the_aliases_without_asking_vertex(
    upstream: Upstream, token_endpoint: TokenEndpoint, client: openai.OpenAI
) -> None:
    names = {m.id for m in client.models.list()}
    assert {"gemini", "embed-005", "embed-gemini"} <= names
    assert upstream.requests == []
    assert len(token_endpoint.claims) == 1  # the credentials were checked


def test_google_auth_is_loaded_only_for_vertex() -> None:
    code = "import sys, turnout.providers.registry; print('google.auth' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# ----------------------------------------------------------------------------- configuration


def problems(doc: dict[str, Any], environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        build_settings(doc, environ or {}, source="test")
    return caught.value.problems


def provider_doc(**provider: Any) -> dict[str, Any]:
    return {"providers": {"vertex": {"type": "vertex", **provider}}}


def test_config_defaults_come_from_googles_environment_variables(key_file: Path, tmp_path: Path) -> None:
    no_project = write_key_file(
        tmp_path / "np.json", rsa.generate_private_key(65537, 2048), "https://x", project_id=None
    )
    env = {
        "GOOGLE_APPLICATION_CREDENTIALS": str(no_project),
        "GOOGLE_CLOUD_PROJECT": "from-env",
        "GOOGLE_CLOUD_LOCATION": "asia-south1",
    }
    vertex = build_settings(provider_doc(), env, source="test").providers["vertex"]
    assert vertex.vertex is not None
    assert (vertex.vertex.project, vertex.vertex.location, vertex.vertex.credentials_file) == (
        "from-env",
        "asia-south1",
        no_project,
    )
    assert vertex.base_url == "https://asia-south1-aiplatform.googleapis.com/v1"
    # Without GOOGLE_CLOUD_PROJECT, the key file's project; without a location, us-central1.
    vertex = build_settings(
        provider_doc(vertex={"credentials_file": str(key_file)}), {}, source="test"
    ).providers["vertex"]
    assert vertex.vertex is not None and (vertex.vertex.project, vertex.vertex.location) == (
        PROJECT,
        "us-central1",
    )


def test_config_errors_name_their_path(tmp_path: Path, key_file: Path) -> None:
    no_project = write_key_file(
        tmp_path / "np.json", rsa.generate_private_key(65537, 2048), "https://x", project_id=None
    )
    assert problems(provider_doc(vertex={"credentials_file": str(no_project)})) == [
        "providers.vertex.vertex.project: required (or set GOOGLE_CLOUD_PROJECT)"
    ]
    [missing] = problems(provider_doc(vertex={"project": PROJECT}))
    assert missing.startswith("providers.vertex.vertex.credentials_file: required")
    [absent] = problems(
        provider_doc(vertex={"project": PROJECT, "credentials_file": str(tmp_path / "nope.json")})
    )
    assert absent == f"providers.vertex.vertex.credentials_file: no such file: {tmp_path / 'nope.json'}"
    user = tmp_path / "adc.json"
    user.write_text(json.dumps({"type": "authorized_user", "refresh_token": "1//secret-refresh"}))
    [wrong] = problems(
        provider_doc(
            vertex={"credentials_file": str(user)},
        ),
        {"GOOGLE_CLOUD_PROJECT": "p-123456"},
    )
    assert "'authorized_user' credentials" in wrong and "secret" not in wrong
    [location] = problems(provider_doc(vertex={"credentials_file": str(key_file), "location": "US Central"}))
    assert location.startswith("providers.vertex.vertex.location: not a Google Cloud location")
    [typo] = problems(provider_doc(vertex={"projet": PROJECT}))
    assert typo == "providers.vertex.vertex.projet: unknown key (did you mean 'project'?)"
    [both] = problems(provider_doc(api_key="env:K", vertex={"project": PROJECT}), {"K": "key"})
    assert both.startswith("providers.vertex.vertex: not used with api_key")
    [elsewhere] = problems(
        {"providers": {"g": {"type": "gemini", "api_key": "env:K", "vertex": {"project": PROJECT}}}},
        {"K": "k"},
    )
    assert elsewhere == "providers.g.vertex: only Vertex AI providers take this section, not gemini"
