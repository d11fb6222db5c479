"""Bounded before authenticated: every route checks the key before it reads a byte of the body (a
stranger's upload is refused at once, and its connection closed instead of read to the end), and
admin bodies are small."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.gateway import MASTER_KEY, Gateway, settings_for

DECLARED = 32 * 1024 * 1024  # what the stranger says it will send
SENT = 256 * 1024  # what it sends before it waits for an answer


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    doc = {"providers": {"fake": {"type": "fake"}}, "models": {"chat": {"provider": "fake", "model": "m"}}}
    gateway = Gateway(settings_for(doc, tmp_path / "data")).start()
    yield gateway
    gateway.stop()


def upload_without_the_rest(gateway: Gateway, method: str, path: str, key: str | None) -> bytes:
    """Send the headers of a 32 MiB upload and its first 256 KiB, then read what the gateway says
    without sending more (a gateway that waits for the rest never answers: the read times out)."""
    assert gateway.server is not None
    with socket.create_connection(("127.0.0.1", gateway.server.port), timeout=10) as sock:
        head = f"{method} {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        if key is not None:
            head += f"authorization: Bearer {key}\r\n"
        head += f"content-length: {DECLARED}\r\n\r\n"
        sock.sendall(head.encode() + b"{" + b" " * (SENT - 1))
        return answer_head(sock)


def answer_head(sock: socket.socket) -> bytes:
    """What the gateway answers, read up to the end of its head (or until it closes)."""
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = sock.recv(65536)
        if not chunk:
            break
        answer += chunk
    return answer


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/admin/teams"),
        ("POST", "/admin/keys"),
        ("POST", "/admin/budgets"),
        ("POST", "/admin/presets"),
        ("POST", "/admin/plans"),
        ("PATCH", "/admin/users/user_x"),
        ("POST", "/v1/chat/completions"),
        ("POST", "/v1/messages"),
        ("POST", "/v1/responses"),
        ("POST", "/v1/embeddings"),
        ("POST", "/no/such/route"),
    ],
)
def test_a_stranger_is_refused_before_the_body_is_read(gateway: Gateway, method: str, path: str) -> None:
    answer = upload_without_the_rest(gateway, method, path, key=None)
    status = answer.split(b" ", 2)[1]
    assert status in (b"401", b"404"), answer[:200]
    assert b"connection: close" in answer.lower()  # the rest of the upload is never read


def test_an_admin_body_is_small(gateway: Gateway) -> None:
    answer = upload_without_the_rest(gateway, "POST", "/admin/teams", key=MASTER_KEY)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    with httpx.Client(base_url=gateway.root_url, timeout=20) as http:
        big = http.post(
            "/admin/teams",
            headers={"authorization": f"Bearer {MASTER_KEY}"},
            json={"name": "x", "metadata": {"blob": "x" * (2 * 1024 * 1024)}},
        )
        assert big.status_code == 413 and big.json()["error"]["type"] == "invalid_request_error"
        fine = http.post(
            "/admin/teams", headers={"authorization": f"Bearer {MASTER_KEY}"}, json={"name": "x"}
        )
        assert fine.status_code == 200


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/admin/teams"])
def test_a_stranger_asking_to_send_its_body_is_refused_without_being_invited_to(
    gateway: Gateway, path: str
) -> None:
    """A client that waits for `100 Continue` before its body gets the 401 alone: the gateway
    never asks a stranger for its upload."""
    assert gateway.server is not None
    with socket.create_connection(("127.0.0.1", gateway.server.port), timeout=10) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            "expect: 100-continue\r\ncontent-length: 60000\r\n\r\n".encode()
        )
        answer = answer_head(sock)
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    assert b"connection: close" in answer.lower()
