"""Errors as OpenAI's SDK expects them: `{"error": {"message", "type", "param", "code"}}` with the status
that makes the official `openai` SDK raise the right exception, for bad input, bad keys, oversized
bodies and every way an upstream can fail; and never a key, an upstream's credentials complaint or a
traceback in what the client receives."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest

from support.gateway import MASTER_KEY, UPSTREAM_KEY, Gateway, openai_doc
from support.spec import validate_openai
from support.upstream import Upstream, fixture_json

USER = [{"role": "user", "content": "Hello!"}]
AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}
ENV = {"UPSTREAM_KEY": UPSTREAM_KEY}
# What an upstream says when it rejects a key: a real key's prefix, and one of our own secrets.
LEAKY_MESSAGE = (
    "Incorrect API key provided: sk-proj-abc123def456ghi789jkl012. "
    f"You sent 'Authorization: Bearer {UPSTREAM_KEY}'."
)


def assert_nothing_leaked(response: Any) -> None:
    """No key of ours (nor the client's) and no traceback in the body or the headers."""
    body = response.content.decode("utf-8", "replace")
    headers = "\n".join(f"{name}: {value}" for name, value in response.headers.items())
    for secret in (UPSTREAM_KEY, MASTER_KEY):
        assert secret not in body, f"a key leaked into the body: {body[:500]}"
        assert secret not in headers, f"a key leaked into the headers: {headers}"
    assert "Traceback" not in body and 'File "' not in body, body[:500]


def api_error(response: Any, status: int) -> dict[str, Any]:
    """Check an OpenAI-format error answer (an httpx response or an SDK exception's); return `error`."""
    assert response.status_code == status, f"{response.status_code}: {response.content[:500]!r}"
    assert response.headers["content-type"].startswith("application/json")
    document = json.loads(response.content)
    validate_openai("ErrorResponse", document)
    assert document["error"]["message"], "an error must say what went wrong"
    assert_nothing_leaked(response)
    return document["error"]


def sdk_error(exc: openai.APIStatusError, status: int) -> dict[str, Any]:
    error = api_error(exc.response, status)
    # the SDK read the same fields the body carries
    assert (exc.code, exc.param, exc.type) == (error["code"], error["param"], error["type"])
    return error


@pytest.fixture
def http(gateway: Gateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.base_url, timeout=20) as c:
        yield c


def sdk_for(gateway: Gateway, api_key: str = MASTER_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url, api_key=api_key, max_retries=0, timeout=20)


# --------------------------------------------------------------------------- bad requests


def test_malformed_json_is_a_400(http: httpx.Client, upstream: Upstream) -> None:
    response = http.post(
        "/chat/completions",
        content=b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"',
        headers={**AUTH, "Content-Type": "application/json"},
    )
    error = api_error(response, 400)
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "invalid_json"
    assert "JSON" in error["message"]
    assert upstream.requests == []


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"messages": "Hello!"}, "messages"),  # wrong type
        ({"messages": []}, "messages"),  # empty
        ({"messages": [{"role": "user", "content": 42}]}, "messages[0].content"),  # wrong type, nested
        ({"messages": [{"role": "user"}]}, "messages[0].content"),  # missing, nested
        ({"messages": USER, "temperature": 3}, "temperature"),  # out of range
        ({"messages": USER, "temperature": "hot"}, "temperature"),  # wrong type
        ({"messages": USER, "n": 0}, "n"),  # out of range
        ({"messages": USER, "top_p": -0.1}, "top_p"),
        ({"messages": USER, "max_tokens": 0}, "max_tokens"),
        ({"messages": USER, "stream": "yes"}, "stream"),
    ],
)
def test_invalid_values_are_a_400_naming_the_param(
    client: openai.OpenAI, upstream: Upstream, fields: dict[str, Any], param: str
) -> None:
    # The SDK sends whatever it is given; a user's bug reaches turnout exactly like this.
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="gpt-4o", **fields)
    error = sdk_error(caught.value, 400)
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"
    assert param in error["message"]
    assert upstream.requests == [], "an invalid request was sent to the upstream"


def test_a_missing_required_field_is_a_400_naming_it(http: httpx.Client, upstream: Upstream) -> None:
    response = http.post("/chat/completions", json={"model": "gpt-4o"}, headers=AUTH)
    error = api_error(response, 400)
    assert error["param"] == "messages"
    assert error["code"] == "missing_required_parameter"
    response = http.post("/chat/completions", json={"messages": USER}, headers=AUTH)
    assert api_error(response, 400)["param"] == "model"
    assert upstream.requests == []


def test_a_body_that_is_not_an_object_is_a_400(http: httpx.Client) -> None:
    response = http.post("/chat/completions", json=["gpt-4o", USER], headers=AUTH)
    assert api_error(response, 400)["type"] == "invalid_request_error"


# --------------------------------------------------------------------------- keys and models


def test_missing_key_is_a_401(http: httpx.Client, upstream: Upstream) -> None:
    # The SDK refuses to send a request without a key; curl and plain HTTP clients do not.
    response = http.post("/chat/completions", json={"model": "gpt-4o", "messages": USER})
    error = api_error(response, 401)
    assert error["type"] == "invalid_request_error"
    assert response.headers["www-authenticate"].lower().startswith("bearer")
    assert upstream.requests == []


def test_wrong_key_is_a_401_that_does_not_echo_it(gateway: Gateway, upstream: Upstream) -> None:
    wrong = "sk-wrong-key-0123456789abcdef"
    with sdk_for(gateway, wrong) as c, pytest.raises(openai.AuthenticationError) as caught:
        c.chat.completions.create(model="gpt-4o", messages=USER)
    error = sdk_error(caught.value, 401)
    assert error["code"] == "invalid_api_key"
    assert wrong not in caught.value.response.text
    assert upstream.requests == []


def test_unknown_model_is_a_404(client: openai.OpenAI, upstream: Upstream) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-9-ultra", messages=USER)
    error = sdk_error(caught.value, 404)
    assert error["code"] == "model_not_found"
    assert error["param"] == "model"
    assert "gpt-9-ultra" in error["message"]
    assert upstream.requests == []


def test_unknown_path_is_a_404(client: openai.OpenAI, http: httpx.Client) -> None:
    # An SDK call to an endpoint turnout does not serve fails like OpenAI's own 404 would.
    with pytest.raises(openai.NotFoundError) as caught:
        client.fine_tuning.jobs.list()
    assert sdk_error(caught.value, 404)["code"] == "not_found"
    response = http.get("/no/such/thing", headers=AUTH)
    assert api_error(response, 404)["code"] == "not_found"


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [("GET", "/chat/completions", "POST"), ("DELETE", "/models", "GET"), ("PUT", "/embeddings", "POST")],
)
def test_wrong_method_is_a_405_with_allow(http: httpx.Client, method: str, path: str, allowed: str) -> None:
    response = http.request(method, path, headers=AUTH)
    error = api_error(response, 405)
    assert error["code"] == "method_not_allowed"
    assert allowed in [m.strip() for m in response.headers["allow"].split(",")]


# --------------------------------------------------------------------------- oversized bodies

LIMIT = 64 * 1024


@pytest.fixture
def small_gateway(upstream: Upstream, start_gateway: Callable[..., Gateway]) -> Gateway:
    return start_gateway({**openai_doc(upstream), "server": {"max_request_bytes": "64KiB"}}, ENV)


def _connect(gateway: Gateway) -> socket.socket:
    assert gateway.server is not None
    return socket.create_connection(("127.0.0.1", gateway.server.port), timeout=10)


def _head(gateway: Gateway, framing: str) -> bytes:
    assert gateway.server is not None
    return (
        "POST /v1/chat/completions HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{gateway.server.port}\r\n"
        f"Authorization: Bearer {MASTER_KEY}\r\n"
        "Content-Type: application/json\r\n"
        f"{framing}\r\n"
        "\r\n"
    ).encode()


class RawResponse:
    """An HTTP/1.1 response read off a socket by hand (with the attributes `api_error` reads), and
    whether the server then closed the connection."""

    def __init__(self, sock: socket.socket) -> None:
        with sock.makefile("rb") as reader:
            status_line = reader.readline()
            assert status_line.startswith(b"HTTP/1.1 "), status_line
            self.status_code = int(status_line.split()[1])
            self.headers: dict[str, str] = {}
            while (line := reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                self.headers[name.strip().lower()] = value.strip()
            if "content-length" in self.headers:
                self.content = reader.read(int(self.headers["content-length"]))
            else:
                assert self.headers.get("transfer-encoding") == "chunked", self.headers
                parts = []
                while size := int(reader.readline().split(b";")[0], 16):
                    parts.append(reader.read(size))
                    reader.readline()
                reader.readline()
                self.content = b"".join(parts)
            # Blocks until the server closes the connection; the socket's timeout ends a wait in vain.
            try:
                self.closed_after = reader.read() == b""
            except ConnectionResetError:
                self.closed_after = True


def test_announced_huge_body_is_refused_before_it_is_sent(small_gateway: Gateway, upstream: Upstream) -> None:
    with _connect(small_gateway) as sock:
        sock.sendall(_head(small_gateway, "Content-Length: 10000000000") + b'{"model": "gpt-4o", ')
        # Nothing more is sent: a gateway that waited for the 10 GB would never answer.
        response = RawResponse(sock)
        error = api_error(response, 413)
        assert error["code"] == "request_too_large"
        assert str(LIMIT) in error["message"]
        assert response.closed_after, "the gateway kept the connection open to read the rest"
    assert upstream.requests == []


def test_chunked_body_growing_past_the_limit_is_refused(small_gateway: Gateway, upstream: Upstream) -> None:
    chunk = b"a" * 16384
    with _connect(small_gateway) as sock:
        sock.sendall(_head(small_gateway, "Transfer-Encoding: chunked"))
        for _ in range(LIMIT // len(chunk) + 1):  # just past the limit, and never the final 0-chunk
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        response = RawResponse(sock)
        assert api_error(response, 413)["code"] == "request_too_large"
        assert response.closed_after
    assert upstream.requests == []


def test_body_under_the_limit_still_works(small_gateway: Gateway) -> None:
    with sdk_for(small_gateway) as c:
        completion = c.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "a" * (LIMIT // 2)}]
        )
    assert completion.choices[0].message.content


# --------------------------------------------------------------------------- upstream 4xx


@pytest.mark.parametrize(
    ("fixture", "status", "exception"),
    [
        ("error_400_context_length.json", 400, openai.BadRequestError),
        ("error_400_invalid_value.json", 400, openai.BadRequestError),
        ("error_404_model.json", 404, openai.NotFoundError),
    ],
)
def test_upstream_4xx_passes_through_faithfully(
    client: openai.OpenAI, upstream: Upstream, fixture: str, status: int, exception: type[Exception]
) -> None:
    upstream.reply_fixture(fixture, status=status)
    with pytest.raises(exception) as caught:
        client.chat.completions.create(model="gpt-4o", messages=USER)
    assert isinstance(caught.value, openai.APIStatusError)
    error = sdk_error(caught.value, status)
    assert error == fixture_json(fixture)["error"]


def test_upstream_422_passes_through_faithfully(client: openai.OpenAI, upstream: Upstream) -> None:
    body = {
        "error": {
            "message": "Invalid schema for function 'get_weather': 'object' is not valid under any schema.",
            "type": "invalid_request_error",
            "param": "tools[0].function.parameters",
            "code": "invalid_function_parameters",
        }
    }
    upstream.reply_json(body, status=422)
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        client.chat.completions.create(model="gpt-4o", messages=USER)
    assert sdk_error(caught.value, 422) == body["error"]


def test_upstream_429_keeps_retry_after(client: openai.OpenAI, upstream: Upstream) -> None:
    upstream.reply_fixture("error_429_rate_limit.json", status=429, headers={"Retry-After": "20"})
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="gpt-4o", messages=USER)
    error = sdk_error(caught.value, 429)
    assert error == fixture_json("error_429_rate_limit.json")["error"]
    assert caught.value.response.headers["retry-after"] == "20"


def test_key_like_strings_in_an_upstream_4xx_are_redacted(client: openai.OpenAI, upstream: Upstream) -> None:
    upstream.reply_json(
        {"error": {"message": LEAKY_MESSAGE, "type": "invalid_request_error", "param": None, "code": None}},
        status=400,
    )
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="gpt-4o", messages=USER)
    error = sdk_error(caught.value, 400)
    assert "Incorrect API key provided" in error["message"]  # the rest of the message is kept
    assert "sk-proj-abc123def456ghi789jkl012" not in caught.value.response.text
    assert "abc123def456ghi789" not in caught.value.response.text


@pytest.mark.parametrize(("upstream_status", "status"), [(429, 429), (503, 503)])
def test_an_absurd_upstream_retry_after_does_not_break_the_error(
    client: openai.OpenAI, upstream: Upstream, upstream_status: int, status: int
) -> None:
    huge = "1" + "0" * 400  # 1*DIGIT, as RFC 9110 allows; larger than any float
    upstream.reply_fixture("error_429_rate_limit.json", status=upstream_status, headers={"Retry-After": huge})
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="gpt-4o", messages=USER)
    sdk_error(caught.value, status)


def test_the_providers_own_key_is_never_echoed_whatever_its_shape(
    upstream: Upstream, start_gateway: Callable[..., Gateway]
) -> None:
    azure_style_key = "0123456789abcdef0123456789abcdef"  # 32 hex digits, as Azure OpenAI keys are
    gateway = start_gateway(openai_doc(upstream), {"UPSTREAM_KEY": azure_style_key})
    message = f"Invalid subscription key {azure_style_key} for this resource."
    upstream.reply_json(
        {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}},
        status=400,
    )
    with sdk_for(gateway) as c, pytest.raises(openai.BadRequestError) as caught:
        c.chat.completions.create(model="gpt-4o", messages=USER)
    sdk_error(caught.value, 400)
    assert upstream.requests[-1].headers["authorization"] == f"Bearer {azure_style_key}"  # it was sent
    assert azure_style_key not in caught.value.response.text


@pytest.mark.parametrize("status", [401, 403])
def test_upstream_rejecting_our_credentials_is_a_502_not_the_clients_401(
    client: openai.OpenAI, upstream: Upstream, status: int
) -> None:
    upstream.reply_json(
        {"error": {"message": LEAKY_MESSAGE, "type": "invalid_request_error", "param": None, "code": "x"}},
        status=status,
    )
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="gpt-4o", messages=USER)
    error = sdk_error(caught.value, 502)
    assert error["code"] == "upstream_auth_error"
    text = caught.value.response.text
    assert "Incorrect API key" not in text and "sk-proj" not in text
    assert "www-authenticate" not in caught.value.response.headers
    assert upstream.requests[-1].headers["authorization"] == f"Bearer {UPSTREAM_KEY}"  # it was sent


# --------------------------------------------------------------------------- upstream failures


@pytest.mark.parametrize(
    ("upstream_status", "status", "code"),
    [
        (500, 502, "upstream_server_error"),
        (502, 502, "upstream_server_error"),
        (504, 502, "upstream_server_error"),
        (503, 503, "upstream_unavailable"),
        (529, 503, "upstream_unavailable"),
    ],
)
def test_upstream_5xx(
    client: openai.OpenAI, upstream: Upstream, upstream_status: int, status: int, code: str
) -> None:
    upstream.reply_json(
        {"error": {"message": f"Overloaded. {LEAKY_MESSAGE}", "type": "server_error", "param": None}},
        status=upstream_status,
    )
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="gpt-4o", messages=USER)
    error = sdk_error(caught.value, status)
    assert error["code"] == code
    assert "sk-proj" not in caught.value.response.text


def test_upstream_5xx_retry_after_reaches_the_client(client: openai.OpenAI, upstream: Upstream) -> None:
    upstream.reply_fixture("error_503_overloaded.json", status=503, headers={"Retry-After": "30"})
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="gpt-4o", messages=USER)
    sdk_error(caught.value, 503)
    assert caught.value.response.headers["retry-after"] == "30"


def _hang_is_a_504(upstream: Upstream, gateway: Gateway) -> None:
    upstream.hang()
    with sdk_for(gateway) as c, pytest.raises(openai.InternalServerError) as caught:
        c.chat.completions.create(model="gpt-4o", messages=USER)
    error = sdk_error(caught.value, 504)
    assert error["code"] == "upstream_timeout"
    assert error["type"] == "timeout_error"


def test_upstream_hang_is_a_504(upstream: Upstream, start_gateway: Callable[..., Gateway]) -> None:
    timeouts = {"connect": "1s", "first_byte": "300ms", "total": "2s"}
    _hang_is_a_504(upstream, start_gateway(openai_doc(upstream, timeouts=timeouts), ENV))


def test_upstream_hang_is_a_504_with_only_first_byte_and_total_set(
    upstream: Upstream, start_gateway: Callable[..., Gateway]
) -> None:
    timeouts = {"first_byte": "300ms", "total": "2s"}
    _hang_is_a_504(upstream, start_gateway(openai_doc(upstream, timeouts=timeouts), ENV))


def test_connection_refused_is_a_502(start_gateway: Callable[..., Gateway]) -> None:
    # A bound socket that does not listen: connecting to it is refused, and no one else can take the port.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        doc = {
            "providers": {
                "down": {
                    "type": "openai_compatible",
                    "base_url": f"http://127.0.0.1:{port}/v1",
                    "api_key": "env:UPSTREAM_KEY",
                }
            },
            "models": {"gpt-4o": {"provider": "down", "model": "gpt-4o"}},
        }
        gateway = start_gateway(doc, ENV)
        with sdk_for(gateway) as c, pytest.raises(openai.InternalServerError) as caught:
            c.chat.completions.create(model="gpt-4o", messages=USER)
    assert sdk_error(caught.value, 502)["code"] == "upstream_connection_error"


def test_connection_reset_is_a_502(client: openai.OpenAI, upstream: Upstream) -> None:
    upstream.reset()
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="gpt-4o", messages=USER)
    assert sdk_error(caught.value, 502)["code"] == "upstream_connection_error"


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"<html><body>502 Bad Gateway</body></html>", "text/html"),
        (b'{"choices": [{"message": {"content": "Hi"', "application/json"),  # cut short
        (b'{"result": "Hello!"}', "application/json"),  # JSON, but not a chat completion
    ],
)
def test_malformed_200_body_is_a_502(
    client: openai.OpenAI, upstream: Upstream, body: bytes, content_type: str
) -> None:
    upstream.reply_raw(body, content_type=content_type)
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="gpt-4o", messages=USER)
    assert sdk_error(caught.value, 502)["code"] == "bad_upstream_response"
    assert body.decode() not in caught.value.response.text


# --------------------------------------------------------------------------- nothing leaked


def test_no_error_anywhere_leaks_a_key_or_a_traceback(
    gateway: Gateway, upstream: Upstream, http: httpx.Client
) -> None:
    """One pass over many failures, each answer checked by `api_error` (keys, traceback, format)."""
    leaky = {
        "error": {"message": LEAKY_MESSAGE, "type": "invalid_request_error", "param": None, "code": None}
    }
    chat = {"model": "gpt-4o", "messages": USER}
    scripted: list[tuple[Callable[[], object], int]] = [
        (lambda: upstream.reply_json(leaky, status=400), 400),
        (lambda: upstream.reply_json(leaky, status=401), 502),
        (lambda: upstream.reply_json(leaky, status=403), 502),
        (lambda: upstream.reply_json(leaky, status=429), 429),
        (lambda: upstream.reply_json(leaky, status=500), 502),
        (lambda: upstream.reply_raw(LEAKY_MESSAGE.encode(), status=400), 400),
        (lambda: upstream.reply_raw(LEAKY_MESSAGE.encode(), status=200), 502),
        (lambda: upstream.reset(times=2), 502),  # reset twice: a reused connection is retried once
    ]
    for script, status in scripted:
        script()
        response = http.post("/chat/completions", json=chat, headers=AUTH)
        api_error(response, status)
        assert "sk-proj-abc123def456ghi789jkl012" not in response.text
        upstream.clear()
    for response, status in [
        (http.post("/chat/completions", content=b"{", headers=AUTH), 400),
        (http.post("/chat/completions", json=chat), 401),
        (http.post("/chat/completions", json=chat, headers={"Authorization": f"Bearer {MASTER_KEY}x"}), 401),
        (http.post("/chat/completions", json={**chat, "model": "nope"}, headers=AUTH), 404),
        (http.post("/chat/completions", json={**chat, "temperature": 9}, headers=AUTH), 400),
        (http.get("/chat/completions", headers=AUTH), 405),
        (http.get("/nowhere", headers=AUTH), 404),
    ]:
        api_error(response, status)
