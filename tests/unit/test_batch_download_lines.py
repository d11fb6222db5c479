"""A batch's results read line by line as they arrive: the same lines however the download is cut
into reads, and a line or a download over its bound is the provider's fault (502), not a crash."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from turnout.batches.accounting import download_lines
from turnout.domain.errors import UpstreamProtocolError

TEXT = b'{"a": 1}\n{"b": 2}\r\n\n{"c": "x\\ny"}\n{"d": 4}'


async def _chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def _read(data: bytes, size: int, **bounds: int) -> list[bytes]:
    async def read() -> list[bytes]:
        return [line async for line in download_lines(_chunks(data, size), "p", **bounds)]

    return asyncio.run(read())


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64])
def test_the_lines_are_the_same_however_the_download_is_cut(size: int) -> None:
    assert _read(TEXT, size) == [b'{"a": 1}', b'{"b": 2}\r', b"", b'{"c": "x\\ny"}', b'{"d": 4}']


def test_a_line_over_its_bound_is_the_providers_fault() -> None:
    with pytest.raises(UpstreamProtocolError, match="line over 8 bytes"):
        _read(b'{"short": 1}\n' + b"x" * 20, 4, max_line=8)


def test_a_download_over_its_bound_is_the_providers_fault() -> None:
    with pytest.raises(UpstreamProtocolError, match="over 10 bytes"):
        _read(b"1\n2\n3\n4\n5\n6\n", 2, max_bytes=10)
