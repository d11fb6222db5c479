"""`hide_addresses`: what an upstream says keeps its words, loses where upstreams live."""

from __future__ import annotations

import pytest

from turnout.observability.redaction import HIDDEN, hide_addresses, register_internal_hosts

H = HIDDEN


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("not found at http://10.0.3.7:8000/v1 (vllm-gpu-3.corp.internal)", f"not found at {H} ({H})"),
        ("see https://platform.example.com/docs/errors.", f"see {H}."),
        ("peer 192.168.1.20, then 10.0.0.1:80.", f"peer {H}, then {H}."),
        ("connect [fe80::1]:8080 or ::1 or 2001:db8::7 failed", f"connect {H} or {H} or {H} failed"),
        ("redis.default.svc.cluster.local:6379 and db.local", f"{H} and {H}"),
        ("Cannot connect to host vllm-gpu-3:8000 ssl:default", f"Cannot connect to host {H} ssl:default"),
        ("localhost:11434 and plain localhost", f"{H} and plain {H}"),
        # ordinary words, versions, times and model tags are left alone
        (
            "max_tokens must be <= 4096 at 12:30:45, ratio 3:4",
            "max_tokens must be <= 4096 at 12:30:45, ratio 3:4",
        ),
        (
            "llama3:70b, qwen2.5:14b, gpt-4o-2024-08-06, v1.2.3",
            "llama3:70b, qwen2.5:14b, gpt-4o-2024-08-06, v1.2.3",
        ),
        ("version 10.5.1.2.3 of the api", "version 10.5.1.2.3 of the api"),
    ],
)
def test_addresses_are_hidden_and_the_rest_is_kept(text: str, shown: str) -> None:
    assert hide_addresses(text) == shown


def test_the_configured_hosts_are_hidden_by_name() -> None:
    register_internal_hosts("gpu-pool.example.com", "inference")
    assert hide_addresses("gpu-pool.example.com refused") == f"{H} refused"
    assert hide_addresses("eu.gpu-pool.example.com:443 refused") == f"{H} refused"
    # a one-word host is also a word: hidden only where it comes with a port
    assert hide_addresses("inference failed on inference:9000") == f"inference failed on {H}"
