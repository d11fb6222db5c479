"""Cost of the checks every request body passes before it is parsed into a request (turnout's
limits for JSON and the steering-field check), on the realistic request and on a long conversation
whose brackets exceed the depth bound, so that its depth is measured.

Run: python bench/choices/body_checks.py
"""

from __future__ import annotations

import timeit
from pathlib import Path
from typing import Any

import orjson

from turnout.domain.json_body import loads
from turnout.domain.steering_fields import refuse_steering_fields

BODY = (Path(__file__).resolve().parents[1] / "bodies" / "chat_10msg_2tools.json").read_bytes()
N = 100_000


def checked(raw: bytes) -> Any:
    body = loads(raw)
    refuse_steering_fields(body)
    return body


def main() -> None:
    doc = orjson.loads(BODY)
    part = [{"type": "text", "text": "hello there " * 5}]
    long_raw = orjson.dumps({**doc, "messages": [{"role": "user", "content": part} for _ in range(100)]})
    for name, raw in (("realistic request", BODY), ("100-message conversation", long_raw)):
        base = min(timeit.repeat(lambda raw=raw: orjson.loads(raw), number=N, repeat=5)) / N
        now = min(timeit.repeat(lambda raw=raw: checked(raw), number=N, repeat=5)) / N
        brackets = raw.count(b"[") + raw.count(b"{")
        print(
            f"{name}: {len(raw)} bytes, {brackets} brackets: orjson.loads {base * 1e6:.2f} us, "
            f"with the checks {now * 1e6:.2f} us (+{(now - base) * 1e6:.2f} us)"
        )
    steering = min(timeit.repeat(lambda: refuse_steering_fields(doc), number=N, repeat=5)) / N
    print(f"steering-field check alone: {steering * 1e9:.0f} ns")


if __name__ == "__main__":
    main()
