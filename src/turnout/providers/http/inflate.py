"""A compressed response body decompressed one bounded piece at a time, as it is read.

A few KiB of gzip can stand for hundreds of MiB (a very repetitive stream, or a hostile upstream):
decompressing each network read in full would put all of it in memory before anyone reads it.
"""

from __future__ import annotations

import zlib


class Inflater:
    """Compressed bytes in (`feed`), at most `limit` decompressed bytes out per `take`."""

    __slots__ = ("_decompressor", "_input", "pending")

    def __init__(self, gzip: bool) -> None:
        self._decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS if gzip else zlib.MAX_WBITS)
        self._input = b""
        self.pending = False  # output may be waiting: `take` before reading more from the network

    def feed(self, data: bytes) -> None:
        self._input = self._input + data if self._input else data
        self.pending = True

    def take(self, limit: int) -> bytes:
        """Up to `limit` bytes of output; raises `zlib.error` on a corrupt body."""
        out = self._decompressor.decompress(self._input, limit)
        self._input = self._decompressor.unconsumed_tail
        self.pending = bool(self._input) or len(out) == limit
        return out

    def flush(self) -> bytes:
        """What is left once the whole body was read and taken (a few bytes at most)."""
        return self._decompressor.flush()
