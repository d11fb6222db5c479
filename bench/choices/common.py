"""Shared set-up for the candidate proxies: the same work each one does per request."""

import os

import orjson

UPSTREAM = os.environ.get("UPSTREAM", "http://127.0.0.1:9100") + "/v1/chat/completions"
KEY = b"Bearer " + os.environ.get("BENCH_KEY", "sk-bench").encode()


def rewrite(body: bytes) -> tuple[bytes, bool]:
    """Parse the request, point it at the upstream model, serialise it again."""
    data = orjson.loads(body)
    data["model"] = "bench-model"
    return orjson.dumps(data), bool(data.get("stream"))
