"""The Redis connection packs a command in one hiredis call: byte for byte what redis-py would send,
and redis-py's own error for what Redis cannot take. A script Redis lost (a restart, SCRIPT FLUSH)
is sent again in full."""

from __future__ import annotations

import asyncio
import os
import secrets

import pytest
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.exceptions import DataError

from turnout.spend.shared_counters import SharedCounters
from turnout.storage.redis_client import Script, connect, packing_in_one_call

REDIS_URL = f"redis://{os.environ.get('TURNOUT_TEST_REDIS_HOST', '127.0.0.1')}:6379/11"

COMMANDS = [
    ("EVALSHA", "f" * 40, 2, "turnout:limits:key:1:rpm", b"budget:\xff", 30000, "1 abc 30000", -7, 0.1),
    ("SET", "k", "é", 10**30, 1e20, float("inf"), memoryview(b"ab")),
    ("SET", "k", bytearray(b"cd")),  # hiredis does not take a bytearray: redis-py packs it
    ("CLIENT SETNAME", "turnout"),  # a two-word command name: split, as redis-py does
    (b"CONFIG GET", b"maxmemory"),
    ("GET", "x" * 100_000),
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: str(c[0]))
def test_a_command_is_packed_as_redis_py_packs_it(command: tuple[object, ...]) -> None:
    packing = packing_in_one_call(Connection)()
    assert b"".join(packing.pack_command(*command)) == b"".join(Connection().pack_command(*command))


@pytest.mark.parametrize("value", [True, None, [1]])
def test_what_redis_cannot_take_is_refused_as_redis_py_refuses_it(value: object) -> None:
    with pytest.raises(DataError):
        packing_in_one_call(Connection)().pack_command("SET", "k", value)


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("redis://127.0.0.1:6379/11", Connection),
        ("rediss://127.0.0.1:6379/11", SSLConnection),
        ("unix:///run/redis.sock", UnixDomainSocketConnection),
    ],
)
def test_each_kind_of_url_keeps_its_kind_of_connection(url: str, kind: type) -> None:
    pool = SharedCounters.connect(url).client.connection_pool
    assert issubclass(pool.connection_class, kind)
    assert pool.connection_class is not kind  # and packs in one call


def test_a_script_redis_lost_is_sent_again() -> None:
    key = f"turnout:test:{secrets.token_hex(4)}"

    async def run() -> list[int]:
        client = connect(REDIS_URL)
        counting = Script(client, "return redis.call('INCRBY', KEYS[1], ARGV[1])")
        try:
            first = await counting([key], [2])
            await client.script_flush()  # as a restarted Redis without its scripts
            second = await counting([key], [3])
            return [first, second, int(await client.get(key))]
        finally:
            await client.delete(key)
            await client.aclose()

    assert asyncio.run(run()) == [2, 5, 5]  # run once each: nothing lost, nothing doubled
